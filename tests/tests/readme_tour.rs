//! README.md, run as written: every ```` ```sh ```` block in order against real processes
//! (`comms_tests::readme` says exactly what the runner substitutes), on native, RabbitMQ
//! (the README's own RabbitMQ section) and Kafka (the same tour with `COMMS_URL` set to a
//! tansu broker the test starts). The release binaries come from `./scripts/test`'s one
//! release build; `cargo run --release` finds them fresh.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use comms_tests::readme::{sh_blocks, Block, Ran, Tour};
use comms_tests::workspace_root;

/// The broker URL the README's RabbitMQ section exports.
const README_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn blocks() -> Vec<Block> {
    let text = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let blocks = sh_blocks(&text).expect("README's sh blocks");
    assert!(blocks.len() >= 6, "README has {} sh blocks", blocks.len());
    blocks
}

/// The blocks marked "not run" are checked another way. A marker that names a test file
/// (`tests/tests/NAME.rs`) hands the block to that test, which must exist and read the block's
/// section (it names it: "Install as a service" is checked by `tests/tests/packages.rs`
/// against the packages it builds); in any other block each command is a script of the
/// repository that exists and is executable. `./scripts/test` builds the release binaries
/// (which this tour uses) before it runs the tests.
fn check_not_run(blocks: &[Block]) {
    let root = workspace_root();
    let skipped: Vec<&Block> = blocks.iter().filter(|b| b.not_run().is_some()).collect();
    for b in &skipped {
        let reason = b.not_run().unwrap_or_default();
        assert!(!reason.is_empty(), "a not-run marker says why: {b:?}");
        let checker = reason
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || "_./".contains(c))))
            .find(|w| w.starts_with("tests/tests/") && w.ends_with(".rs"));
        if let Some(test) = checker {
            let text = std::fs::read_to_string(root.join(test))
                .unwrap_or_else(|e| panic!("the not-run marker names {test}: {e}"));
            assert!(
                text.contains(&format!("\"{}\"", b.section)),
                "{test} does not read the README section \"{}\" it is said to check",
                b.section
            );
            continue;
        }
        for cmd in b.commands() {
            let program = cmd.split_whitespace().next().unwrap_or_default();
            let path = root.join(program);
            let mode = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("`{cmd}`: {}: {e}", path.display()))
                .permissions()
                .mode();
            assert!(mode & 0o111 != 0, "{} is not executable", path.display());
        }
    }
    let script = std::fs::read_to_string(root.join("scripts/test")).expect("scripts/test");
    let build = script
        .find("cargo build --release")
        .expect("scripts/test builds release binaries");
    let tests = script
        .find("cargo nextest run")
        .expect("scripts/test runs nextest");
    assert!(
        build < tests,
        "scripts/test builds the release binaries before the tests"
    );
}

/// The one release build (a no-op after `./scripts/test`'s), so that the timed tour never
/// compiles.
fn release_build() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // One package at a time, as `cargo run -p` resolves features (as `./scripts/test` builds).
    for package in ["server", "agent"] {
        let status = Command::new(&cargo)
            .args(["build", "--release", "-p", package])
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| comms_tests::readme::user_env(k)))
            .current_dir(workspace_root())
            .status()
            .expect("cargo build");
        assert!(
            status.success(),
            "cargo build --release -p {package} failed"
        );
    }
}

fn new_tour() -> Tour {
    Tour::new(&workspace_root(), Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("a tour directory")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The commands containing `part`; the whole tour (`full`) must have run one, the README's
/// RabbitMQ section runs only `run --all`.
fn find<'a>(ran: &'a [Ran], part: &str, full: bool) -> Vec<&'a Ran> {
    let found: Vec<&Ran> = ran.iter().filter(|r| r.line.contains(part)).collect();
    assert!(!found.is_empty() || !full, "the tour ran no `{part}`");
    found
}

/// What a user checks: both agents listed, `run --all` output from both, the failing task
/// exits 1 (checked by the runner from the README's `# exit status 1`), sniff decodes lines.
fn check_outputs(ran: &[Ran], backend: &str) {
    let full = backend != "rabbitmq";
    for r in find(ran, "commsctl -- agents", full) {
        for name in ["web1", "web2"] {
            assert!(
                r.stdout.contains(name),
                "{backend}: agents lists no {name}:\n{}",
                r.stdout
            );
        }
        assert!(
            r.stdout.contains("2 agents, 2 up"),
            "{backend}:\n{}",
            r.stdout
        );
    }
    let uname = String::from_utf8(
        Command::new("uname")
            .arg("-s")
            .output()
            .expect("uname")
            .stdout,
    )
    .expect("utf-8");
    for r in find(ran, "run --all -- uname -a", true) {
        for name in ["web1", "web2"] {
            assert!(
                r.stdout
                    .lines()
                    .any(|l| l.contains(name) && l.contains(uname.trim())),
                "{backend}: no uname output from {name}:\n{}",
                r.stdout
            );
        }
    }
    for r in find(ran, "exit 3", full) {
        for name in ["web1", "web2"] {
            assert!(
                r.stdout
                    .lines()
                    .any(|l| l.contains(name) && l.ends_with(": hi")),
                "{backend}: no `hi` from {name}:\n{}",
                r.stdout
            );
        }
    }
    for r in find(ran, " sniff ", full) {
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            20,
            "{backend}: sniff --count 20 printed:\n{}",
            r.stdout
        );
        for l in lines {
            assert!(
                l.contains("web1") && l.contains(" -> "),
                "{backend}: not a decoded line: {l}"
            );
        }
    }
}

#[test]
fn readme_tour_native_then_rabbitmq() {
    let started = Instant::now();
    let blocks = blocks();
    check_not_run(&blocks);
    release_build();
    let mut tour = new_tour();
    tour.set_env("COMMS_URL", &format!("cd://127.0.0.1:{}", free_port()));
    let ns = comms_test_support::unique_name("readme");
    let base = comms_tests::rabbitmq::url();
    let sep = if base.contains('?') { '&' } else { '?' };
    tour.substitute(README_RABBITMQ_URL, &format!("{base}{sep}namespace={ns}"));
    let result = tour.run_blocks(&blocks);
    drop(tour);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(comms_tests::rabbitmq::delete_namespaces(&[ns]))
        .expect("clean up the tour's queues");
    let ran = result.unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        ran.iter().any(|r| r.line.contains("amqp://")),
        "the RabbitMQ section ran"
    );
    let split = ran
        .iter()
        .position(|r| r.line.contains("export COMMS_URL="))
        .expect("the RabbitMQ section");
    check_outputs(&ran[..split], "native");
    check_outputs(&ran[split..], "rabbitmq");
    eprintln!("README tour (native, RabbitMQ): {:.1?}", started.elapsed());
}

#[test]
fn readme_tour_kafka() {
    let started = Instant::now();
    let blocks = blocks();
    let tour_blocks: Vec<Block> = blocks
        .iter()
        .take_while(|b| !b.lines.iter().any(|l| l.starts_with("export COMMS_URL=")))
        .cloned()
        .collect();
    assert!(
        tour_blocks.len() < blocks.len(),
        "the README moves to a broker"
    );
    release_build();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = runtime
        .block_on(comms_tests::kafka::Tansu::start())
        .unwrap_or_else(|e| panic!("the Kafka tour needs a tansu broker: {e:#}"));
    let mut tour = new_tour();
    tour.set_env("COMMS_URL", &broker.url());
    let ran = tour
        .run_blocks(&tour_blocks)
        .unwrap_or_else(|e| panic!("{e:#}\ntansu log:\n{}", broker.log_tail()));
    check_outputs(&ran, "kafka");
    drop(tour);
    drop(broker);
    eprintln!("README tour (Kafka): {:.1?}", started.elapsed());
}
