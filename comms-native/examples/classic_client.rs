//! The event dispatcher's classic demonstration, client side, over `commsd`.
//!
//! ```text
//! cargo run -p comms-native --example classic_client -- cd:///run/communicator/communicatord.sock
//! ```
//!
//! Registers as `classic_client` with a permanent [`Client`] (it waits for the daemon if it
//! is not up yet, and the server greets it whenever the server comes up). It answers `HI`
//! with `DAD`, `CLIMB` with `TOP`, `WHO` with `MOM`, and quits when it hears `BYE`.

use std::time::Duration;

use cd_wire::WireMessage;
use comms_native::client::{Client, ClientConfig};

const ME: &str = "classic_client";
const PEER: &str = "classic_server";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("COMMS_URL").ok())
        .unwrap_or_else(|| "cd:///run/communicator/communicatord.sock".into());
    let cfg = ClientConfig::from_url(&url, ME)?.with_commands(["HI", "CLIMB", "WHO", "BYE"]);
    let (client, mut incoming) = Client::connect(cfg);
    while let Some(msg) = incoming.recv().await {
        println!("client: received {}", msg.command);
        let answer = match msg.command.as_str() {
            "HI" => "DAD",
            "CLIMB" => "TOP",
            "WHO" => "MOM",
            "BYE" => break,
            _ => continue,
        };
        println!("client: says {answer}");
        if let Err(e) = client
            .send(WireMessage::new(answer).with_service(PEER))
            .await
        {
            eprintln!("client: {answer} not sent: {e}");
        }
    }
    client.close(Duration::from_secs(5)).await?;
    println!("client: quits");
    Ok(())
}
