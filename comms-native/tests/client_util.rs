//! Helpers for the client tests: a real `commsd` process and a raw stock-service line client
//! (on [`comms_test_support`]'s launcher and line client),
//! and the example binaries. Included by the `client_*` tests with `mod client_util;`
//! (Cargo also builds it alone as an empty test target).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
#![allow(dead_code)]

use comms_core::Connect;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cd_wire::WireMessage;
use comms_core::{Address, Advertisement, Transport};
use comms_native::transport::NativeTransport;
use comms_test_support::{CommsdSpec, LineClient};

pub const WAIT: Duration = Duration::from_secs(10);

/// A native transport on `url`, advertised as `service` of its node with `commands`.
pub async fn bound(url: &str, service: &str, commands: &[&str]) -> NativeTransport {
    let t = NativeTransport::connect_url(url).await.unwrap();
    let ad = Advertisement::new(Address::new(t.node(), service).unwrap(), commands.to_vec());
    t.advertise(&ad).await.unwrap();
    t
}

/// A `commsd` child process ([`comms_test_support::Commsd`]) on a Unix socket only.
#[derive(Debug)]
pub struct Commsd {
    pub socket: PathBuf,
    pub node: String,
    daemon: comms_test_support::Commsd,
}

impl Commsd {
    pub async fn start(socket: &Path, node: &str) -> Commsd {
        let daemon = CommsdSpec::find()
            .expect("the commsd binary")
            .name(node)
            .unix_only(socket)
            .start()
            .await
            .expect("commsd starts");
        Commsd {
            socket: socket.to_path_buf(),
            node: node.to_owned(),
            daemon,
        }
    }

    /// `cd:` URL with fast reconnects.
    pub fn url(&self) -> String {
        format!(
            "cd://{}?node={}&retry=0.05,0.1",
            self.socket.display(),
            self.node
        )
    }

    pub async fn kill(&mut self) {
        self.daemon.kill().await.expect("kill commsd");
    }
}

/// A raw stock Communicator service: plain lines, no comms_ parameters, read as
/// [`WireMessage`]s.
#[derive(Debug)]
pub struct Raw(LineClient);

impl Raw {
    /// REGISTER, answer HELP with COMMANDS, wait for READY.
    pub async fn register(socket: &Path, service: &str, commands: &str) -> Raw {
        let mut raw = Raw(LineClient::unix(socket).await.expect("connect"));
        raw.send(&format!("REGISTER service={service};version=1"))
            .await;
        loop {
            let m = raw.recv().await;
            match m.command.as_str() {
                "HELP" => raw.send(&format!("COMMANDS list={commands}")).await,
                "READY" => return raw,
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.0.send(line).await.expect("write");
    }

    pub async fn recv(&mut self) -> WireMessage {
        let line = self.0.line().await.expect("a line within the wait");
        line.trim_end().parse().expect("a valid line")
    }

    /// The next line whose command is `command` (others skipped).
    pub async fn recv_command(&mut self, command: &str) -> WireMessage {
        loop {
            let m = self.recv().await;
            if m.command == command {
                return m;
            }
        }
    }
}

/// The path of an example binary of this package. Runs `cargo build -p comms-native
/// --examples` once per test process (a no-op when up to date; a filtered
/// `cargo test --test X` does not build examples), in this test binary's target dir/profile.
pub fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let bin = profile.join("examples").join(name);
    BUILT.call_once(|| {
        let target = profile.parent().expect("target dir");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-q", "-p", "comms-native", "--examples"]);
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --examples");
        assert!(status.success(), "building the examples failed");
    });
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}
