//! The event dispatcher's classic demonstration, server side, over `commsd`.
//!
//! ```text
//! cargo run -p comms-native --example classic_server -- cd:///run/communicator/communicatord.sock
//! ```
//!
//! Registers as `classic_server` with a permanent [`Client`]. When `classic_client` comes up
//! (a `STATUS status=up` from the daemon, or the answer to our `SERVICE_STATUS` when the client
//! was there first) it says `HI`; then it answers `DAD` with `CLIMB`, `TOP` with `WHO`, `MOM`
//! with `BYE`. `QUIT` (from anyone) stops it cleanly: UNREGISTER, exit 0. The URL comes from
//! the first argument, else `COMMS_URL`, else the stock Unix socket.

use std::time::Duration;

use cd_wire::WireMessage;
use comms_native::client::{Client, ClientConfig};

const ME: &str = "classic_server";
const PEER: &str = "classic_client";

fn to_peer(command: &str) -> WireMessage {
    WireMessage::new(command).with_service(PEER)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("COMMS_URL").ok())
        .unwrap_or_else(|| "cd:///run/communicator/communicatord.sock".into());
    let cfg =
        ClientConfig::from_url(&url, ME)?.with_commands(["DAD", "TOP", "MOM", "QUIT", "STATUS"]);
    let (client, mut incoming) = Client::connect(cfg);
    let mut state = client.watch();
    let mut greeted = false;
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                if state.borrow_and_update().is_connected() {
                    println!("server: registered");
                    greeted = false;
                    // The client may be there first: ask the daemon.
                    let ask = WireMessage::new("SERVICE_STATUS").with_param("service", PEER);
                    if let Err(e) = client.send(ask).await {
                        eprintln!("server: SERVICE_STATUS not sent: {e}");
                    }
                }
            }
            msg = incoming.recv() => {
                let Some(msg) = msg else { break };
                println!("server: received {}", msg.command);
                let reply = match msg.command.as_str() {
                    "STATUS" if msg.param("service") == Some(PEER) => {
                        match msg.param("status") {
                            Some("up") if !greeted => { greeted = true; Some("HI") }
                            Some("down") => { greeted = false; None }
                            _ => None,
                        }
                    }
                    "DAD" => Some("CLIMB"),
                    "TOP" => Some("WHO"),
                    "MOM" => Some("BYE"),
                    "QUIT" => break,
                    _ => None,
                };
                if let Some(command) = reply {
                    println!("server: says {command}");
                    if let Err(e) = client.send(to_peer(command)).await {
                        eprintln!("server: {command} not sent: {e}");
                    }
                }
            }
        }
    }
    client.close(Duration::from_secs(5)).await?;
    println!("server: stopped");
    Ok(())
}
