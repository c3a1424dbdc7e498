//! Bad configuration files and bad command lines, against the real binaries (`commsd`,
//! `server`, `agent`, `commsctl`).
//!
//! Every case must end the process quickly with a one-line error that names the problem:
//! exit code 2 and clap's usage error for a bad command line, a non-zero code (1; `commsctl`
//! uses 2 for every error) for a bad configuration, and never a panic or a backtrace, even with
//! `RUST_BACKTRACE=1` set.
#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use comms_tests::binary;

/// The package of each binary.
fn package(bin: &str) -> &'static str {
    match bin {
        "commsd" => "commsd",
        "server" | "commsctl" => "server",
        "agent" => "agent",
        other => panic!("unknown binary {other}"),
    }
}

/// Runs `bin args` (at most 30 s) and returns (exit code, stderr).
fn run(bin: &str, args: &[OsString], dir: &Path) -> (i32, String) {
    let mut child = Command::new(binary(package(bin), bin))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .env("NO_COLOR", "1")
        .env_remove("COMMS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} {args:?} still running after 30 s (the bad input was accepted)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

fn check(bin: &str, args: &[OsString], dir: &Path, code: i32, expect: &[&str]) {
    let (got, err) = run(bin, args, dir);
    assert_eq!(got, code, "{bin} {args:?}: exit code; stderr:\n{err}");
    for e in expect {
        assert!(
            err.contains(e),
            "{bin} {args:?}: stderr lacks {e:?}:\n{err}"
        );
    }
    for never in [
        "panicked",
        "Stack backtrace",
        "stack backtrace",
        "RUST_BACKTRACE",
    ] {
        assert!(
            !err.contains(never),
            "{bin} {args:?}: {never:?} in stderr:\n{err}"
        );
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Not UTF-8.
fn bad_utf8() -> OsString {
    std::ffi::OsStr::from_bytes(b"ab\xffcd").to_owned()
}

/// The shared-config hostile set: (file name, contents, what the error must say).
fn shared_config_cases() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    let mut big = b"[transport]\nurl = \"memory:\"\n# ".to_vec();
    big.resize(10 << 20, b'x');
    big.push(b'\n');
    vec![
        (
            "malformed.toml",
            b"[transport\nurl=".to_vec(),
            vec!["invalid TOML", "line 1"],
        ),
        (
            "wrong_type.toml",
            b"[transport]\nurl = 5\n".to_vec(),
            vec![
                "invalid type: integer `5`, expected a string",
                "transport.url",
            ],
        ),
        (
            "scheme.toml",
            b"[transport]\nurl = \"nats://x\"\n".to_vec(),
            vec!["unsupported URL scheme `nats`", "accepted schemes"],
        ),
        (
            "unknown_key.toml",
            b"[transport]\nurl = \"memory:\"\nbogus = 1\n".to_vec(),
            vec!["unknown field `bogus`"],
        ),
        (
            "unknown_section.toml",
            b"[transport]\nurl = \"memory:\"\n[agnet]\nname = \"x\"\n".to_vec(),
            vec!["unknown section or key `agnet`"],
        ),
        ("ten_mib.toml", big, vec!["larger than 1048576 bytes"]),
        (
            "nul.toml",
            b"[transport]\nurl = \"mem\0ory:\"\n".to_vec(),
            vec!["invalid TOML", "line 2"],
        ),
        (
            "not_utf8.toml",
            b"[transport]\nurl = \"\xff\"\n".to_vec(),
            vec!["not UTF-8 (invalid byte at offset 19)"],
        ),
        (
            "too_large_int.toml",
            b"[transport]\nurl = \"memory:\"\n[server]\nrecent = 99999999999999999999\n".to_vec(),
            vec!["invalid TOML"],
        ),
    ]
}

#[test]
fn bad_shared_config_files_are_refused_by_every_binary() {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents, expect) in shared_config_cases() {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        for (bin, code, extra) in [
            ("server", 1, &[][..]),
            ("agent", 1, &[][..]),
            ("commsctl", 2, &["agents"][..]),
        ] {
            let mut args = vec![OsString::from("--config"), path.clone().into()];
            args.extend(os(extra));
            check(bin, &args, dir.path(), code, &expect);
        }
    }
    // Reading /dev/zero as a config stops at the size limit instead of eating memory.
    for bin in ["server", "agent"] {
        check(
            bin,
            &os(&["--config", "/dev/zero"]),
            dir.path(),
            1,
            &["larger than 1048576 bytes"],
        );
    }
    check(
        "server",
        &os(&["--config", "/nonexistent/x.toml"]),
        dir.path(),
        1,
        &["cannot read /nonexistent/x.toml"],
    );
}

/// Values of the right type but out of range are refused before anything starts (they used to
/// panic later: a semaphore over its limit, a clock overflow at the first dispatch).
#[test]
fn out_of_range_section_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "agent",
            "[agent]\nmax_tasks = 9223372036854775807\n",
            "max_tasks = 9223372036854775807 is over the maximum 65536",
        ),
        (
            "agent",
            "[agent]\nttl_secs = 9223372036854775807\n",
            "ttl_secs = 9223372036854775807 is over the maximum 86400",
        ),
        (
            "agent",
            "[agent]\nmax_tasks = \"four\"\n",
            "[agent]: invalid type: string \"four\", expected usize",
        ),
        (
            "agent",
            "[agent]\nbogus = 1\n",
            "[agent]: unknown field `bogus`",
        ),
        (
            "server",
            "[server]\ndeadline_grace_secs = 9223372036854775807\n",
            "deadline_grace_secs = 9223372036854775807 is over the maximum 86400",
        ),
        (
            "server",
            "[server]\nmax_running = 9223372036854775807\n",
            "max_running = 9223372036854775807 is over the maximum 1000000",
        ),
        (
            "server",
            "[server]\nrecent = -1\n",
            "[server]: invalid value: integer `-1`, expected usize",
        ),
    ];
    for (i, (bin, section, expect)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        let state = dir.path().join(format!("state{i}"));
        std::fs::write(
            &path,
            format!("[transport]\nurl = \"memory://h{i}\"\n{section}",),
        )
        .unwrap();
        let mut args = vec![OsString::from("--config"), path.into()];
        if *bin == "agent" {
            args.extend([OsString::from("--state-dir"), state.into()]);
        }
        check(bin, &args, dir.path(), 1, &[expect]);
    }
}

#[test]
fn bad_commsd_config_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = b"[daemon]\n# ".to_vec();
    big.resize(10 << 20, b'x');
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed", b"[daemon\n".to_vec(), "unclosed table"),
        (
            "wrong_type",
            b"[daemon]\nmax_line = \"big\"\n".to_vec(),
            "invalid type: string \"big\", expected usize",
        ),
        (
            "unknown_key",
            b"[daemon]\nbogus = 1\n".to_vec(),
            "unknown field `bogus`",
        ),
        (
            "unknown_section",
            b"[deamon]\nname = \"x\"\n".to_vec(),
            "unknown field `deamon`",
        ),
        (
            "bad_addr",
            b"[daemon]\ntcp = \"localhost\"\n".to_vec(),
            "[daemon] tcp = \"localhost\" is not an ip:port",
        ),
        ("ten_mib", big, "larger than 1048576 bytes"),
        (
            "nul",
            b"[daemon]\nname = \"a\0b\"\n".to_vec(),
            "invalid basic string",
        ),
        (
            "not_utf8",
            b"[daemon]\nname = \"\xc3\"\n".to_vec(),
            "not UTF-8",
        ),
        (
            "bad_name",
            b"[daemon]\nname = \"bad-name\"\n".to_vec(),
            "invalid node name \"bad-name\"",
        ),
        (
            "zero_line",
            b"[daemon]\nmax_line = 0\n".to_vec(),
            "max_line must be > 0",
        ),
        (
            "huge_ttl",
            b"[daemon]\ncache_ttl_secs = 18446744073709551615\n".to_vec(),
            "cache ttl = 18446744073709551615 s is over the maximum 86400 s",
        ),
        (
            "huge_datagram",
            b"[daemon]\nudp_max_datagram = 99999999999\n".to_vec(),
            "udp_max_datagram = 99999999999 is over the largest UDP payload 65507",
        ),
        (
            "huge_queue",
            b"[daemon]\noutbound_queue = 18446744073709551615\n".to_vec(),
            "outbound_queue = 18446744073709551615 is over the maximum",
        ),
        (
            "huge_grace",
            b"[daemon]\nshutdown_grace_ms = 18446744073709551615\n".to_vec(),
            "shutdown_grace = 18446744073709551 s is over the maximum 86400 s",
        ),
    ];
    let sock = dir.path().join("never.sock");
    for (name, contents, expect) in cases {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, contents).unwrap();
        let mut args = os(&["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--unix"]);
        args.push(sock.clone().into());
        args.extend([OsString::from("--config"), path.into()]);
        check("commsd", &args, dir.path(), 1, &["commsd: error:", expect]);
        assert!(!sock.exists(), "{name}: commsd bound its socket");
    }
}

#[test]
fn bad_command_lines_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let usage = "Usage:";
    let cases: Vec<(&str, Vec<OsString>, Vec<&str>)> = vec![
        (
            "commsd",
            os(&["--bogus"]),
            vec!["unexpected argument '--bogus'", usage],
        ),
        (
            "commsd",
            os(&["--tcp", "notanaddr"]),
            vec!["invalid value 'notanaddr' for '--tcp <ADDR>'"],
        ),
        (
            "commsd",
            os(&["--max-line", "-5"]),
            vec!["unexpected argument '-5'"],
        ),
        (
            "commsd",
            os(&["--max-line", "99999999999999999999999"]),
            vec!["invalid value"],
        ),
        (
            "commsd",
            os(&["--unix", "/x", "--no-unix"]),
            vec!["cannot be used with"],
        ),
        (
            "commsd",
            vec!["--name".into(), bad_utf8()],
            vec!["invalid UTF-8"],
        ),
        (
            "server",
            os(&["--bogus"]),
            vec!["unexpected argument '--bogus'", usage],
        ),
        (
            "server",
            vec!["--url".into(), bad_utf8()],
            vec!["invalid UTF-8"],
        ),
        (
            "server",
            os(&["--no-embed=yes"]),
            vec!["unexpected value 'yes'"],
        ),
        (
            "agent",
            os(&["--bogus"]),
            vec!["unexpected argument '--bogus'", usage],
        ),
        (
            "agent",
            os(&["--label", "novalue"]),
            vec!["`novalue` is not key=value"],
        ),
        (
            "agent",
            vec!["--name".into(), bad_utf8()],
            vec!["invalid UTF-8"],
        ),
        (
            "agent",
            os(&["--config"]),
            vec!["a value is required for '--config <CONFIG>'"],
        ),
        ("commsctl", os(&[]), vec![usage]),
        (
            "commsctl",
            os(&["frobnicate"]),
            vec!["unrecognized subcommand 'frobnicate'"],
        ),
        (
            "commsctl",
            os(&["run", "--all"]),
            vec!["required arguments were not provided"],
        ),
        (
            "commsctl",
            os(&["--wait", "soon", "agents"]),
            vec!["invalid value 'soon' for '--wait <SECS>'"],
        ),
        (
            "commsctl",
            os(&["run", "--all", "--group", "g", "--", "true"]),
            vec!["cannot be used with"],
        ),
        (
            "commsctl",
            vec!["send".into(), bad_utf8()],
            vec!["invalid UTF-8"],
        ),
    ];
    for (bin, args, expect) in cases {
        check(bin, &args, dir.path(), 2, &expect);
    }
    // Well-typed but wrong values are runtime errors (exit 1), named, without a backtrace.
    check(
        "commsd",
        &os(&["--name", "bad-name", "--no-unix", "--no-tcp", "--no-udp"]),
        dir.path(),
        1,
        &["invalid node name \"bad-name\""],
    );
    check(
        "server",
        &os(&["--url", "nats://x"]),
        dir.path(),
        1,
        &["unsupported URL scheme `nats`"],
    );
    check(
        "agent",
        &os(&["--url", "cd:relative"]),
        dir.path(),
        1,
        &["expected cd:///absolute/socket/path"],
    );
}
