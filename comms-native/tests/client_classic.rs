//! The classic demonstration, run with the real example programs (`classic_server`,
//! `classic_client`) over a real `commsd`, in both start orders; `QUIT` stops the server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod client_util;

use std::process::Stdio;
use std::time::Duration;

use client_util::{example, Commsd, Raw};
use tokio::process::{Child, Command};

fn spawn(name: &str, url: &str) -> Child {
    Command::new(example(name))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn example")
}

async fn finish(child: Child, what: &str) -> String {
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
        .expect("wait");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {:?}\n{text}",
        out.status
    );
    text
}

fn said(out: &str, who: &str) -> Vec<String> {
    let prefix = format!("{who}: says ");
    out.lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

async fn conversation(server_first: bool) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Commsd::start(&dir.path().join("d.sock"), "classic").await;
    let url = daemon.url();
    let (server, client) = if server_first {
        let s = spawn("classic_server", &url);
        tokio::time::sleep(Duration::from_millis(300)).await;
        (s, spawn("classic_client", &url))
    } else {
        let c = spawn("classic_client", &url);
        tokio::time::sleep(Duration::from_millis(300)).await;
        (spawn("classic_server", &url), c)
    };
    let client_out = finish(client, "classic_client").await;
    assert_eq!(
        said(&client_out, "client"),
        ["DAD", "TOP", "MOM"],
        "{client_out}"
    );
    assert!(client_out.contains("client: received BYE"), "{client_out}");
    assert!(
        client_out.trim_end().ends_with("client: quits"),
        "{client_out}"
    );

    // QUIT stops the server cleanly.
    let mut ctl = Raw::register(&daemon.socket, "classic_ctl", "HELP,READY,STOP").await;
    ctl.send("classic_server/QUIT").await;
    let server_out = finish(server, "classic_server").await;
    assert_eq!(
        said(&server_out, "server"),
        ["HI", "CLIMB", "WHO", "BYE"],
        "{server_out}"
    );
    assert!(
        server_out.trim_end().ends_with("server: stopped"),
        "{server_out}"
    );
}

#[tokio::test]
async fn server_first() {
    conversation(true).await;
}

#[tokio::test]
async fn client_first() {
    conversation(false).await;
}
