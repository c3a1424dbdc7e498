//! Hostile input on the daemon's stream sockets (TCP and Unix), one test per input, each run
//! over both transports against an in-process daemon on real sockets.
//!
//! Every test asserts, for its input: a clear `INVALID`/`UNKNOWN` reply naming the problem; the
//! hostile connection survives (it keeps sending and receiving); what it sent before and after
//! the bad line is delivered (nothing accepted is lost) and nothing of the bad line is; and a
//! bystander pair of services on the same daemon keeps exchanging messages during and after.
#![allow(clippy::unwrap_used)]

#[path = "daemon_util.rs"]
mod util;

use commsd::DaemonHandle;
use util::{start, start_with, Raw, NODE};

#[derive(Debug, Clone, Copy)]
enum Via {
    Tcp,
    Unix,
}

const BOTH: [Via; 2] = [Via::Tcp, Via::Unix];

async fn connect(via: Via, h: &DaemonHandle) -> Raw {
    match via {
        Via::Tcp => Raw::tcp(h).await,
        Via::Unix => Raw::unix(h).await,
    }
}

/// The cast of one test: `hostile` (over `via`), its `victim` (the other transport), and two
/// bystanders that only talk to each other.
struct Cast {
    hostile: Raw,
    victim: Raw,
    by_a: Raw,
    by_b: Raw,
    round: u32,
}

impl Cast {
    async fn new(via: Via, h: &DaemonHandle) -> Self {
        let other = match via {
            Via::Tcp => Via::Unix,
            Via::Unix => Via::Tcp,
        };
        let mut hostile = connect(via, h).await;
        hostile.register("hostile", h).await;
        let mut victim = connect(other, h).await;
        victim.register("victim", h).await;
        let by_a = Raw::tcp_as(h, "by_a").await;
        let by_b = Raw::unix_as(h, "by_b").await;
        Self {
            hostile,
            victim,
            by_a,
            by_b,
            round: 0,
        }
    }

    /// The hostile service sends a good message to the victim, which must get it exactly.
    async fn good_message(&mut self, n: &str) {
        let line = format!("victim/PING n={n}");
        self.relayed(&line, &line).await;
    }

    /// The hostile service sends `line`; the victim must get exactly `delivered`, stamped as
    /// coming from the hostile service.
    async fn relayed(&mut self, line: &str, delivered: &str) {
        self.hostile.send(line).await;
        self.victim
            .expect(&format!("<{NODE}:hostile {delivered}"))
            .await;
    }

    /// The bystanders exchange one message each way.
    async fn bystanders_talk(&mut self) {
        self.round += 1;
        let r = self.round;
        self.by_a.send(&format!("by_b/CHAT r={r}")).await;
        self.by_b
            .expect(&format!("<{NODE}:by_a by_b/CHAT r={r}"))
            .await;
        self.by_b.send(&format!("by_a/CHAT r={r}")).await;
        self.by_a
            .expect(&format!("<{NODE}:by_b by_a/CHAT r={r}"))
            .await;
    }

    /// The hostile connection still works: a daemon round trip, then a delivered message;
    /// the victim got nothing else in between, and the bystanders still talk.
    async fn all_well(&mut self) {
        self.hostile.send("ALIVE serial=1").await;
        self.hostile
            .expect_prefix(&format!("{NODE}:hostile/ABSOLUTELY"))
            .await;
        self.good_message("after").await;
        self.bystanders_talk().await;
        self.victim.silent(50).await;
        self.hostile.silent(50).await;
    }

    /// Sends `bad` (raw bytes, `\n` added) between two good messages; returns the reply line.
    async fn bad_line(&mut self, bad: &[u8]) -> String {
        self.good_message("before").await;
        self.hostile.send_raw(bad).await;
        self.hostile.send_raw(b"\n").await;
        self.bystanders_talk().await;
        let reply = self.hostile.line().await;
        self.all_well().await;
        reply
    }
}

/// Asserts `reply` is an `INVALID` to `hostile` whose reason contains `why`.
fn assert_invalid(reply: &str, why: &str) {
    assert!(
        reply.starts_with(&format!("{NODE}:hostile/INVALID ")),
        "not an INVALID reply: {reply:?}"
    );
    let reason = reply.split("reason=").nth(1).unwrap_or_default();
    assert!(reason.contains(why), "reason {reason:?} lacks {why:?}");
}

#[tokio::test]
async fn invalid_utf8_in_head_or_parameters_is_refused_not_forwarded() {
    for via in BOTH {
        let (_d, h) = start().await;
        let mut c = Cast::new(via, &h).await;
        let r = c.bad_line(b"\xff\xfe").await;
        assert_invalid(&r, "invalid UTF-8 at byte 0");
        let r = c.bad_line(b"victim/PI\xc3NG n=1").await;
        assert_invalid(&r, "invalid UTF-8");
        // In the parameters (the router's hot path copies parameter text verbatim).
        let r = c.bad_line(b"victim/PING n=\xff\xfe;m=2").await;
        assert_invalid(&r, "invalid UTF-8 at byte 14");
        let r = c.bad_line(b"victim/PING a=\"x;\xc0\"").await;
        assert_invalid(&r, "invalid UTF-8");
        assert!(h.stats().invalid_lines >= 4, "{via:?}");
        h.shutdown().await;
    }
}

#[tokio::test]
async fn nul_bytes_are_refused_not_forwarded() {
    for via in BOTH {
        let (_d, h) = start().await;
        let mut c = Cast::new(via, &h).await;
        let r = c.bad_line(b"\0").await;
        assert_invalid(&r, "NUL byte at byte 0");
        let r = c.bad_line(b"victim/PI\0NG").await;
        assert_invalid(&r, "NUL byte at byte 9");
        let r = c.bad_line(b"victim/PING n=a\0b").await;
        assert_invalid(&r, "NUL byte at byte 15");
        let r = c.bad_line(b"victim/PING z=\"a;\0\"").await;
        assert_invalid(&r, "NUL byte");
        h.shutdown().await;
    }
}

/// A 10 MiB line is discarded as it streams in (the daemon never buffers it) and refused once
/// its `\n` arrives; the bystanders exchange messages while it streams.
#[tokio::test]
async fn ten_mib_line_is_refused_while_others_keep_talking() {
    const TEN_MIB: usize = 10 * 1024 * 1024;
    for via in BOTH {
        let (_d, h) = start().await;
        let mut c = Cast::new(via, &h).await;
        c.good_message("before").await;
        let mut line = b"victim/BIG x=".to_vec();
        line.resize(TEN_MIB, b'y');
        let mut hostile = c.hostile;
        let writer = tokio::spawn(async move {
            for chunk in line.chunks(256 * 1024) {
                hostile.send_raw(chunk).await;
            }
            hostile.send_raw(b"\n").await;
            hostile
        });
        for _ in 0..5 {
            c.by_a.send("by_b/CHAT during=1").await;
            c.by_b
                .expect(&format!("<{NODE}:by_a by_b/CHAT during=1"))
                .await;
        }
        c.hostile = tokio::time::timeout(std::time::Duration::from_secs(60), writer)
            .await
            .expect("10 MiB written within 60 s")
            .unwrap();
        let r = c.hostile.line().await;
        assert_invalid(&r, &format!("line too long ({TEN_MIB} bytes, max 65536)"));
        c.all_well().await;
        h.shutdown().await;
    }
}

/// Deep nesting within the line limit, and beyond it.
#[tokio::test]
async fn deeply_nested_json_line_is_refused() {
    for via in BOTH {
        let (_d, h) = start_with(|c| c.max_line = 1 << 20).await;
        let mut c = Cast::new(via, &h).await;
        for open in ["[", "{\"a\":"] {
            let mut line =
                String::from("{\"command\":\"PING\",\"service\":\"victim\",\"parameters\":{\"p\":");
            line.push_str(&open.repeat(100_000));
            let r = c.bad_line(line.as_bytes()).await;
            assert_invalid(&r, "recursion limit exceeded");
        }
        let r = c
            .bad_line(b"{\"command\":\"PING\",\"service\":\"victim\",\"parameters\":{\"p\":[1]}}")
            .await;
        assert_invalid(&r, "parameter \"p\" is an array or an object");
        let r = c.bad_line(b"{\"command\":5,\"service\":\"victim\"}").await;
        assert_invalid(&r, "\"command\" is not a string");
        // A well-formed JSON line is still routed.
        c.relayed(
            "{\"command\":\"PING\",\"service\":\"victim\",\"parameters\":{\"n\":7}}",
            "victim/PING n=7",
        )
        .await;
        h.shutdown().await;
    }
}

#[tokio::test]
async fn unknown_commands_get_unknown_and_bad_commands_invalid() {
    for via in BOTH {
        let (_d, h) = start().await;
        let mut c = Cast::new(via, &h).await;
        let r = c.bad_line(b"FROBNICATE x=1").await;
        assert_eq!(r, format!("{NODE}:hostile/UNKNOWN command=FROBNICATE"));
        let r = c.bad_line(b"communicatord/frobnicate").await;
        assert_eq!(r, format!("{NODE}:hostile/UNKNOWN command=frobnicate"));
        // To a service: an invalid command is refused by the router, never forwarded.
        let r = c.bad_line(b"victim/not-a-command").await;
        assert_invalid(&r, "invalid command");
        h.shutdown().await;
    }
}

/// A service cannot speak as another: its own `<server:service ` prefix is replaced by the
/// daemon's stamp, whoever it claims to be (the daemon itself included).
#[tokio::test]
async fn spoofed_sent_from_prefix_is_replaced_by_the_stamp() {
    for via in BOTH {
        let (_d, h) = start().await;
        let mut c = Cast::new(via, &h).await;
        c.good_message("before").await;
        for spoof in ["<evil:mallory ", "<vm:by_a ", "<vm:communicatord ", "<: "] {
            c.relayed(
                &format!("{spoof}victim/STATUS service=by_a;status=down"),
                "victim/STATUS service=by_a;status=down",
            )
            .await;
        }
        // A spoof in JSON form too.
        c.relayed("{\"sent-from-server\":\"evil\",\"sent-from-service\":\"by_b\",\"service\":\"victim\",\"command\":\"PING\"}", "victim/PING").await;
        c.all_well().await;
        h.shutdown().await;
    }
}

/// Registering a live name is refused; the live service keeps its name and its messages.
#[tokio::test]
async fn register_of_a_live_name_is_refused_and_the_owner_keeps_its_traffic() {
    for via in BOTH {
        let (_d, h) = start().await;
        let mut c = Cast::new(via, &h).await;
        let mut thief = connect(via, &h).await;
        for live in ["victim", "by_a", "hostile"] {
            thief
                .send(&format!("REGISTER service={live};version=1"))
                .await;
            let l = thief
                .expect_prefix(&format!(
                    "<{NODE}:communicatord INVALID command=REGISTER;reason="
                ))
                .await;
            assert!(
                l.contains(&format!("service {live} is already registered")),
                "{l}"
            );
            c.bystanders_talk().await;
        }
        // The thief's connection still works, unregistered: its lines are routed as the
        // stock daemon routes them, stamped without a service (never as the name it wanted).
        thief.send("<vm:victim victim/PING n=stolen").await;
        c.victim
            .expect(&format!("<{NODE}: victim/PING n=stolen"))
            .await;
        // A registered service cannot re-register under a live (or any other) name.
        let r = c.bad_line(b"REGISTER service=victim;version=1").await;
        assert!(r.contains("already registered as hostile"), "{r}");
        c.all_well().await;
        thief.register("thief", &h).await;
        h.shutdown().await;
    }
}

/// STOP and SHUTDOWN from a loopback TCP service are refused by default; the daemon runs on.
#[tokio::test]
async fn stop_and_shutdown_from_tcp_are_refused() {
    let (_d, h) = start().await;
    let mut c = Cast::new(Via::Tcp, &h).await;
    for cmd in [
        "STOP",
        "SHUTDOWN",
        "communicatord/STOP",
        "{\"command\":\"SHUTDOWN\"}",
    ] {
        let r = c.bad_line(cmd.as_bytes()).await;
        assert_invalid(&r, "not allowed on a TCP connection");
        assert!(!h.is_stopping(), "{cmd} stopped the daemon");
    }
    // Unregistered TCP connections are refused too.
    let mut anon = Raw::tcp(&h).await;
    anon.send("SHUTDOWN").await;
    anon.expect_prefix("INVALID command=SHUTDOWN;reason=SHUTDOWN refused: not allowed")
        .await;
    assert!(!h.is_stopping());
    c.all_well().await;
    h.shutdown().await;
}
