//! The Debian packages and their systemd units (docs/PACKAGING.md), checked without installing
//! anything, and README.md's "Install as a service" block with them (the README tour hands
//! that block to this test):
//! - the block's `cargo build` and `cargo deb` lines run as written (the builds are no-ops
//!   after `./scripts/test`'s one release build); `commsd` is packaged the same way;
//! - each package (`dpkg-deb`): exactly the expected files, their modes and owner, the control
//!   fields, the conffiles, the maintainer scripts (the service user, the systemd snippets,
//!   what a purge removes), stripped binaries;
//! - the packages extracted together into one tree, laid out as installed: the units pass
//!   `systemd-analyze verify` (every warning fails) and keep their `systemd-analyze security`
//!   exposure; each unit's `ExecStart=` names a packaged binary, its packaged config and its
//!   `StateDirectory=`; `systemd-sysusers` creates the user from the sysusers.d files; each
//!   binary runs (`--help`); each packaged config passes the binaries' own loaders;
//! - the services run from that tree with their units' `ExecStart=` and `Environment=` (only
//!   the state directories and the port moved): the agent finds the server's fleet key as the
//!   units arrange it, and the README's `commsctl` line lists it;
//! - the block's other lines against the packages: the `.deb` files it installs, the unit it
//!   enables, the `cargo install` line `./scripts/test` runs.
//!
//! Tools: cargo-deb, dpkg-deb, systemd-analyze, systemd-sysusers, readelf (`./scripts/test`
//! installs the missing ones); a missing tool fails the test, it never skips. One test, as the
//! packages are built once and `cargo deb` writes its output in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use comms_tests::readme::{sh_blocks, user_env, Block};
use comms_tests::workspace_root;

/// The README section this test checks.
const SECTION: &str = "Install as a service";

/// One package: its cargo package, Debian name, binaries (the first is the unit's), config,
/// whether it is started on install, and the highest `systemd-analyze security` exposure its
/// unit may have.
#[derive(Debug)]
struct Package {
    cargo: &'static str,
    deb: &'static str,
    bins: &'static [&'static str],
    config: &'static str,
    started: bool,
    exposure: f64,
}

impl Package {
    fn unit(&self) -> String {
        format!("{}.service", self.deb)
    }
}

const PACKAGES: [Package; 3] = [
    Package {
        cargo: "server",
        deb: "comms-server",
        bins: &["server", "commsctl"],
        config: "server.toml",
        started: true,
        exposure: 2.0,
    },
    // The agent runs arbitrary commands: its sandbox is looser (see its unit).
    Package {
        cargo: "agent",
        deb: "comms-agent",
        bins: &["agent"],
        config: "agent.toml",
        started: false,
        exposure: 4.0,
    },
    Package {
        cargo: "commsd",
        deb: "comms-commsd",
        bins: &["commsd"],
        config: "commsd.toml",
        started: false,
        exposure: 2.0,
    },
];

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_path_buf()
}

/// A program on `PATH` (or in cargo's bin directory), or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (./scripts/test installs it)"))
}

/// Runs `cmd`; its stdout, or a failure with everything it printed.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `cargo ARGS` in the workspace, as a user runs it: the test's cargo, the user's environment
/// (not what cargo and nextest set for a test), this target directory.
fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        // Where `cargo install` puts cargo-deb, as `./scripts/test` sets it.
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
        path = std::env::join_paths(dirs).expect("PATH");
    }
    run(Command::new(cargo)
        .args(args)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| user_env(k)))
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(workspace_root()))
}

/// The block of README.md's "Install as a service" section.
fn readme_block() -> Block {
    let text = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let blocks: Vec<Block> = sh_blocks(&text)
        .expect("README's sh blocks")
        .into_iter()
        .filter(|b| b.section == SECTION)
        .collect();
    assert_eq!(blocks.len(), 1, "README has one sh block in \"{SECTION}\"");
    let block = blocks.into_iter().next().expect("the block");
    let reason = block.not_run().expect("the block is marked not run");
    assert!(
        reason.contains("tests/tests/packages.rs"),
        "the marker names this test: {reason}"
    );
    block
}

fn words(line: &str) -> Vec<&str> {
    line.split(" #")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

/// The value after `flag` in `words`.
fn flag_value<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    words.windows(2).find(|w| w[0] == flag).map(|w| w[1])
}

/// Runs the block's cargo lines; packages what it does not with the same `cargo deb` flags.
/// The `.deb` file of each package.
fn build(block: &Block) -> BTreeMap<&'static str, PathBuf> {
    let mut debs = BTreeMap::new();
    let mut deb_flags: Option<Vec<String>> = None;
    for line in block.commands() {
        let w = words(line);
        if w.first() != Some(&"cargo") {
            continue;
        }
        match w.get(1) {
            Some(&"install") => {
                assert_eq!(w, ["cargo", "install", "cargo-deb", "--locked"], "`{line}`");
                let script = std::fs::read_to_string(workspace_root().join("scripts/test"))
                    .expect("scripts/test");
                assert!(
                    script.contains(line.trim()),
                    "./scripts/test installs cargo-deb as the README says (`{line}`)"
                );
                tool("cargo-deb");
            }
            Some(&"build") => {
                eprintln!("README: {line}");
                cargo(&w[1..]);
            }
            Some(&"deb") => {
                eprintln!("README: {line}");
                let package = flag_value(&w, "-p").unwrap_or_else(|| panic!("`{line}`: no -p"));
                let p = PACKAGES
                    .iter()
                    .find(|p| p.cargo == package)
                    .unwrap_or_else(|| panic!("`{line}`: {package} has no Debian package"));
                let flags: Vec<String> = w[2..]
                    .iter()
                    .zip(std::iter::once(&"").chain(&w[2..]))
                    .filter(|(word, before)| **word != "-p" && **before != "-p")
                    .map(|(word, _)| word.to_string())
                    .collect();
                assert!(
                    flags.iter().any(|f| f == "--no-build"),
                    "`{line}` reuses the release build (--no-build)"
                );
                match &deb_flags {
                    Some(f) => assert_eq!(f, &flags, "every `cargo deb` line has the same flags"),
                    None => deb_flags = Some(flags),
                }
                debs.insert(p.cargo, deb_path(&cargo(&w[1..]), p));
            }
            _ => panic!("this test has no check for `{line}`"),
        }
    }
    let flags = deb_flags.expect("the README makes packages with `cargo deb`");
    let rest: Vec<&Package> = PACKAGES
        .iter()
        .filter(|p| !debs.contains_key(p.cargo))
        .collect();
    for p in rest {
        eprintln!("packaging {} as the README packages the others", p.cargo);
        cargo(&["build", "--release", "-p", p.cargo]);
        let mut args = vec!["deb", "-p", p.cargo];
        args.extend(flags.iter().map(String::as_str));
        debs.insert(p.cargo, deb_path(&cargo(&args), p));
    }
    debs
}

/// The `.deb` file `cargo deb` printed (its last line).
fn deb_path(stdout: &str, p: &Package) -> PathBuf {
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    assert!(
        path.is_file() && name.starts_with(&format!("{}_", p.deb)) && name.ends_with(".deb"),
        "cargo deb -p {} printed {stdout:?}",
        p.cargo
    );
    path
}

/// The control fields (`dpkg-deb -f`); a continued field keeps its lines.
fn control_fields(deb: &Path) -> BTreeMap<String, String> {
    let text = run(Command::new(tool("dpkg-deb")).arg("-f").arg(deb));
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut last = String::new();
    for line in text.lines() {
        if line.starts_with(' ') {
            let value = fields.get_mut(&last).expect("a continued field");
            value.push('\n');
            value.push_str(line.trim());
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.to_owned();
            fields.insert(last.clone(), v.trim().to_owned());
        }
    }
    fields
}

fn check_control(p: &Package, deb: &Path) {
    let f = control_fields(deb);
    let field = |k: &str| {
        f.get(k)
            .unwrap_or_else(|| panic!("{}: no {k} field", p.deb))
            .as_str()
    };
    let arch = run(Command::new(tool("dpkg")).arg("--print-architecture"));
    assert_eq!(field("Package"), p.deb);
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(field("Architecture"), arch.trim());
    assert_eq!(field("Section"), "net");
    assert_eq!(field("Priority"), "optional");
    let maintainer = field("Maintainer");
    assert!(
        maintainer.contains('<') && maintainer.contains('@'),
        "{}: Maintainer {maintainer:?}",
        p.deb
    );
    let depends = field("Depends");
    for needed in [
        "libc6",
        "systemd | systemd-standalone-sysusers | systemd-sysusers",
    ] {
        assert!(depends.contains(needed), "{}: Depends {depends:?}", p.deb);
    }
    let description = field("Description");
    let mut lines = description.lines();
    let synopsis = lines.next().unwrap_or_default();
    assert!(
        !synopsis.is_empty() && synopsis.len() < 80,
        "{}: the synopsis is one short line: {synopsis:?}",
        p.deb
    );
    let extended: Vec<&str> = lines.collect();
    assert!(
        extended.len() >= 3 && extended.iter().any(|l| l.contains(&p.unit())),
        "{}: the extended description names the unit:\n{description}",
        p.deb
    );
}

/// `dpkg-deb -c`: every file (not directory) with its mode and owner.
fn check_files(p: &Package, deb: &Path) {
    let text = run(Command::new(tool("dpkg-deb")).arg("-c").arg(deb));
    let mut files = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, path) = (cols[0], cols[1], cols[cols.len() - 1]);
        assert!(
            owner == "0/0" || owner == "root/root",
            "{}: {path} belongs to {owner}",
            p.deb
        );
        if !mode.starts_with('d') {
            files.insert(path.trim_start_matches('.').to_owned(), mode.to_owned());
        }
    }
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for bin in p.bins {
        expected.insert(format!("/usr/bin/{bin}"), "-rwxr-xr-x");
    }
    let doc = format!("/usr/share/doc/{}", p.deb);
    for (path, mode) in [
        (format!("/etc/comms/{}", p.config), "-rw-r--r--"),
        (
            format!("/usr/lib/systemd/system/{}", p.unit()),
            "-rw-r--r--",
        ),
        (format!("/usr/lib/sysusers.d/{}.conf", p.deb), "-rw-r--r--"),
        (format!("{doc}/copyright"), "-rw-r--r--"),
        (format!("{doc}/README.md"), "-rw-r--r--"),
        (format!("{doc}/PACKAGING.md"), "-rw-r--r--"),
    ] {
        expected.insert(path, mode);
    }
    let expected: BTreeMap<String, String> = expected
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    assert_eq!(files, expected, "{}: its files and modes", p.deb);
}

/// The control archive: conffiles, maintainer scripts.
fn check_scripts(p: &Package, deb: &Path, dir: &Path) {
    let ctl = dir.join(format!("{}.control", p.deb));
    run(Command::new(tool("dpkg-deb")).arg("-e").arg(deb).arg(&ctl));
    let read = |name: &str| {
        std::fs::read_to_string(ctl.join(name))
            .unwrap_or_else(|e| panic!("{}: control file {name}: {e}", p.deb))
    };
    assert_eq!(
        read("conffiles"),
        format!("/etc/comms/{}\n", p.config),
        "{}: its config is a conffile",
        p.deb
    );
    for script in ["postinst", "prerm", "postrm"] {
        let text = read(script);
        let mode = std::fs::metadata(ctl.join(script))
            .expect("script")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{}: {script} mode", p.deb);
        assert!(
            text.starts_with("#!/bin/sh\n") && !text.contains("#DEBHELPER#"),
            "{}: {script}:\n{text}",
            p.deb
        );
        run(Command::new("sh").arg("-n").arg(ctl.join(script)));
    }
    let postinst = read("postinst");
    assert!(
        postinst
            .lines()
            .any(|l| l.trim_start().starts_with("systemd-sysusers")
                && l.trim_end().ends_with(&format!(" {}.conf", p.deb))),
        "{}: postinst creates the service user:\n{postinst}",
        p.deb
    );
    assert_eq!(
        postinst.contains(&format!("deb-systemd-invoke $_dh_action {}", p.unit())),
        p.started,
        "{}: postinst starts the unit on install: {}\n{postinst}",
        p.deb,
        p.started
    );
    // check_unit holds each unit's StateDirectory to comms/<package name without comms->,
    // what this removes.
    let postrm = read("postrm");
    assert!(
        postrm.contains("rm -rf \"/var/lib/comms/${DPKG_MAINTSCRIPT_PACKAGE#comms-}\""),
        "{}: a purge removes the unit's state:\n{postrm}",
        p.deb
    );
}

/// A unit file's settings, in order: (section, key, value).
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            settings.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    settings
}

/// What the test reads from a unit.
#[derive(Debug)]
struct Unit {
    exec_start: Vec<String>,
    environment: Vec<(String, String)>,
    state_dir: String,
}

fn check_unit(p: &Package, root: &Path) -> Unit {
    let text = std::fs::read_to_string(root.join("usr/lib/systemd/system").join(p.unit()))
        .expect("the unit");
    let settings = unit_settings(&text);
    let get = |section: &str, key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let one = |section: &str, key: &str| -> String {
        let values = get(section, key);
        assert_eq!(
            values.len(),
            1,
            "{}: [{section}] {key}= {values:?}",
            p.unit()
        );
        values[0].to_owned()
    };
    let leaf = p.deb.strip_prefix("comms-").expect("comms-*");
    for (key, value) in [
        ("Type", "exec".to_owned()),
        ("User", "comms".to_owned()),
        ("Group", "comms".to_owned()),
        ("Restart", "on-failure".to_owned()),
        ("ConfigurationDirectory", "comms".to_owned()),
        ("StateDirectory", format!("comms/{leaf}")),
        ("StateDirectoryMode", "0700".to_owned()),
        ("NoNewPrivileges", "yes".to_owned()),
        ("CapabilityBoundingSet", String::new()),
        ("ProtectSystem", "strict".to_owned()),
        ("ProtectHome", "yes".to_owned()),
        ("PrivateTmp", "yes".to_owned()),
        ("ProtectKernelTunables", "yes".to_owned()),
        ("ProtectKernelModules", "yes".to_owned()),
        ("ProtectControlGroups", "yes".to_owned()),
        ("RestrictSUIDSGID", "yes".to_owned()),
    ] {
        assert_eq!(one("Service", key), value, "{}: {key}=", p.unit());
    }
    let families = one("Service", "RestrictAddressFamilies");
    assert!(
        families.starts_with("AF_INET AF_INET6 AF_UNIX"),
        "{}: RestrictAddressFamilies={families}",
        p.unit()
    );
    assert_eq!(one("Install", "WantedBy"), "multi-user.target");
    let doc = one("Unit", "Documentation");
    let doc_file = doc.strip_prefix("file:").expect("a file: documentation");
    assert!(
        root.join(doc_file.trim_start_matches('/')).is_file(),
        "{}: Documentation={doc} is not in the package",
        p.unit()
    );
    let exec_start: Vec<String> = one("Service", "ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        exec_start.iter().all(|w| !w.contains(['"', '\'', '$'])),
        "{}: ExecStart= without quoting or variables (this test splits it on spaces)",
        p.unit()
    );
    assert_eq!(exec_start[0], format!("/usr/bin/{}", p.bins[0]));
    let exec: Vec<&str> = exec_start.iter().map(String::as_str).collect();
    assert_eq!(
        flag_value(&exec, "--config"),
        Some(format!("/etc/comms/{}", p.config).as_str()),
        "{}: ExecStart= reads the packaged config",
        p.unit()
    );
    let state_flag = if p.cargo == "commsd" {
        "--peer-state-dir"
    } else {
        "--state-dir"
    };
    let state_dir = format!("/var/lib/comms/{leaf}");
    assert_eq!(
        flag_value(&exec, state_flag),
        Some(state_dir.as_str()),
        "{}: ExecStart= keeps the state in its StateDirectory",
        p.unit()
    );
    let environment = get("Service", "Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').expect("Environment=KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Unit {
        exec_start,
        environment,
        state_dir,
    }
}

/// The service user: the sysusers.d line, and what `systemd-sysusers` makes of all of them.
fn check_user(root: &Path) {
    for p in &PACKAGES {
        let text = std::fs::read_to_string(root.join(format!("usr/lib/sysusers.d/{}.conf", p.deb)))
            .expect("sysusers.d file");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(
            lines,
            ["u comms - \"comms messaging services\" /var/lib/comms"],
            "{}: its sysusers.d file",
            p.deb
        );
    }
    let etc = root.join("etc");
    for f in ["passwd", "group"] {
        std::fs::copy(Path::new("/etc").join(f), etc.join(f)).expect("copy /etc");
    }
    for f in ["shadow", "gshadow"] {
        std::fs::write(etc.join(f), "").expect("write");
    }
    let out = Command::new(tool("systemd-sysusers"))
        .arg(format!("--root={}", root.display()))
        .output()
        .expect("systemd-sysusers");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && log.lines().all(|l| l.starts_with("Creating ")),
        "systemd-sysusers on the three files:\n{log}"
    );
    let passwd = std::fs::read_to_string(etc.join("passwd")).expect("passwd");
    let comms = passwd
        .lines()
        .find(|l| l.starts_with("comms:"))
        .unwrap_or_else(|| panic!("no comms user:\n{log}"));
    let fields: Vec<&str> = comms.split(':').collect();
    assert_eq!(fields[5], "/var/lib/comms", "{comms}");
    assert!(fields[6].ends_with("nologin"), "{comms}");
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "a system user: {comms}");
}

/// `systemd-analyze verify` (no warning) and `security` (exposure) on the extracted unit.
fn check_systemd(p: &Package, root: &Path) {
    let analyze = tool("systemd-analyze");
    let unit = root.join("usr/lib/systemd/system").join(p.unit());
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(&unit)
        .output()
        .expect("systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}:\n{said}",
        p.unit()
    );
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(p.unit()));
    let prefix = format!("Overall exposure level for {}: ", p.unit());
    let exposure: f64 = out
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, rest)| rest.to_owned()))
        .and_then(|rest| rest.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no exposure level for {}:\n{out}", p.unit()));
    eprintln!("{}: exposure {exposure}", p.unit());
    assert!(
        exposure <= p.exposure,
        "{}: exposure {exposure} is over {}:\n{out}",
        p.unit(),
        p.exposure
    );
}

/// The packaged configs, through the loaders the binaries use; they leave the state
/// directory to the unit.
fn check_configs(root: &Path) {
    let etc = root.join("etc/comms");
    let read = |name: &str| std::fs::read_to_string(etc.join(name)).expect("config");
    let server = comms::Config::from_toml(&read("server.toml")).expect("server.toml");
    let section: comms_server::ServerConfig = server.section("server").expect("[server]");
    section.validate().expect("[server] in range");
    assert_eq!(
        section.state_dir,
        comms_server::ServerConfig::default().state_dir
    );
    assert_eq!(
        section.key_file, None,
        "the server keeps its key in its state"
    );
    let agent = comms::Config::from_toml(&read("agent.toml")).expect("agent.toml");
    let section: comms_agent::AgentConfig = agent.section("agent").expect("[agent]");
    section.validate().expect("[agent] in range");
    assert_eq!(
        section.state_dir,
        comms_agent::AgentConfig::default().state_dir
    );
    assert_eq!(
        section.key_file, None,
        "on the server's host the agent uses the server's key"
    );
    assert_eq!(server.transport.url, agent.transport.url, "the same fleet");
    commsd::config::load(
        Some(&etc.join("commsd.toml")),
        commsd::config::DaemonSettings::default(),
    )
    .expect("commsd.toml");
}

fn check_binaries(root: &Path) {
    for p in &PACKAGES {
        for bin in p.bins {
            let exe = root.join("usr/bin").join(bin);
            let help = run(Command::new(&exe).arg("--help").env_remove("COMMS_URL"));
            assert!(help.contains("Usage:"), "{bin} --help:\n{help}");
            let sections = run(Command::new(tool("readelf")).args(["-S", "-W"]).arg(&exe));
            assert!(
                !sections.contains(".debug_info"),
                "{bin} is packaged with its debug information (cargo deb --strip)"
            );
        }
    }
}

/// A service started from the extracted tree; killed if the test fails.
struct Service {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Runs `argv` (a unit's `ExecStart=`, mapped) with `env` and the user's environment.
    fn start(name: &str, argv: &[String], env: &[(String, String)], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| user_env(k)))
            .envs(env.iter().cloned())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {argv:?}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` says the service is up.
    fn wait(&mut self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self) {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within 60 s:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as systemd stops it: a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        run(Command::new("kill").args(["-TERM", &pid]));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(
                    status.success(),
                    "{} did not stop cleanly on SIGTERM ({status}):\n{}",
                    self.name,
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} ignores SIGTERM:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installed paths to the test's: binaries and configs in the extracted tree, state under
/// `var` (systemd would create the state directories: so does the test).
#[derive(Debug)]
struct Layout {
    root: PathBuf,
    var: PathBuf,
}

impl Layout {
    fn map(&self, word: &str) -> String {
        for (installed, here) in [
            ("/usr/bin/", self.root.join("usr/bin")),
            ("/etc/comms/", self.root.join("etc/comms")),
            ("/var/lib/comms/", self.var.clone()),
        ] {
            if let Some(rest) = word.strip_prefix(installed) {
                return here.join(rest).display().to_string();
            }
            if let Some((k, v)) = word.split_once('=') {
                if v.starts_with(installed) {
                    return format!("{k}={}", self.map(v));
                }
            }
        }
        word.to_owned()
    }

    fn argv(&self, words: &[String]) -> Vec<String> {
        words.iter().map(|w| self.map(w)).collect()
    }

    fn env(&self, unit: &Unit) -> Vec<(String, String)> {
        unit.environment
            .iter()
            .map(|(k, v)| (k.clone(), self.map(v)))
            .collect()
    }

    fn state(&self, unit: &Unit) -> PathBuf {
        let dir = PathBuf::from(self.map(&unit.state_dir));
        std::fs::create_dir_all(&dir).expect("state directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The server and an agent from the extracted tree as their units run them, and the README's
/// `commsctl` line; then commsd from its unit.
fn run_services(layout: &Layout, units: &BTreeMap<&str, Unit>, commsctl_line: &[&str]) {
    let dir = layout.var.parent().expect("the test directory");
    let url = (
        "COMMS_URL".to_owned(),
        format!("cd://127.0.0.1:{}", free_port()),
    );
    let (server_unit, agent_unit) = (&units["server"], &units["agent"]);
    let server_state = layout.state(server_unit);
    layout.state(agent_unit);
    let mut env = layout.env(server_unit);
    env.push(url.clone());
    let mut server = Service::start("server", &layout.argv(&server_unit.exec_start), &env, dir);
    server.wait("\"server up\"", |s| s.log().contains("server up"));
    let key = server_state.join("fleet.key");
    let mode = std::fs::metadata(&key)
        .unwrap_or_else(|e| panic!("the server made no {}: {e}", key.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());

    let mut env = layout.env(agent_unit);
    env.push(url.clone());
    let mut agent = Service::start("agent", &layout.argv(&agent_unit.exec_start), &env, dir);
    agent.wait("\"agent up\"", |s| s.log().contains("agent up"));
    assert!(
        agent.log().contains(&key.display().to_string()),
        "the agent uses the server's key {}:\n{}",
        key.display(),
        agent.log()
    );

    // The README's line, without sudo (the test's user may read the key).
    let mut words: Vec<String> = commsctl_line
        .iter()
        .skip_while(|w| **w == "sudo")
        .map(|w| w.to_string())
        .collect();
    words[0] = format!("/usr/bin/{}", words[0]);
    let argv = layout.argv(&words);
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| user_env(k)))
            .env(&url.0, &url.1)
            .output()
            .expect("commsctl");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && said.contains("1 agents, 1 up") {
            break said;
        }
        assert!(
            Instant::now() < deadline,
            "`{}` never listed the agent:\n{said}\nserver:\n{}\nagent:\n{}",
            commsctl_line.join(" "),
            server.log(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("{}:\n{last}", commsctl_line.join(" "));
    agent.stop();
    server.stop();

    // commsd with its unit's command line; listeners moved to the test's (flags override the
    // config: the socket, free ports) and a ready file.
    let unit = &units["commsd"];
    layout.state(unit);
    let ready = dir.join("commsd.ready");
    let socket = dir.join("commsd.sock");
    let mut argv = layout.argv(&unit.exec_start);
    for (flag, value) in [
        ("--unix", socket.display().to_string()),
        ("--tcp", "127.0.0.1:0".to_owned()),
        ("--udp", "127.0.0.1:0".to_owned()),
        ("--ready-file", ready.display().to_string()),
    ] {
        argv.push(flag.to_owned());
        argv.push(value);
    }
    let mut commsd = Service::start("commsd", &argv, &layout.env(unit), dir);
    commsd.wait("its ready file", |_| ready.is_file());
    let listening = std::fs::read_to_string(&ready).expect("ready file");
    for kind in ["unix", "tcp", "udp"] {
        assert!(
            listening.contains(&format!("listening {kind} ")),
            "{listening}"
        );
    }
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "the socket: owner and group only");
    commsd.stop();
}

/// The block's install lines: what it installs was built, what it enables is in it, what
/// it runs is installed. The `commsctl` line (words).
fn check_install_lines<'a>(
    block: &'a Block,
    debs: &BTreeMap<&str, PathBuf>,
    root: &Path,
) -> Vec<&'a str> {
    let mut installed: Vec<&Package> = Vec::new();
    let mut commsctl = Vec::new();
    for line in block.commands() {
        let w = words(line);
        match w.as_slice() {
            ["cargo", ..] => {}
            ["sudo", "apt", "install", files @ ..] => {
                for file in files {
                    let name = file
                        .strip_prefix("./target/debian/")
                        .unwrap_or_else(|| panic!("`{line}`: {file} is not in ./target/debian"));
                    let (before, after) = name.split_once('*').unwrap_or((name, ""));
                    let p = PACKAGES
                        .iter()
                        .find(|p| {
                            let built = debs[p.cargo].file_name().unwrap().to_string_lossy();
                            built.starts_with(before)
                                && built.ends_with(after)
                                && built.len() >= before.len() + after.len()
                        })
                        .unwrap_or_else(|| panic!("`{line}`: {file} matches no package built"));
                    installed.push(p);
                }
            }
            ["sudo", "systemctl", "enable", "--now", unit] => {
                let p = installed
                    .iter()
                    .find(|p| p.unit() == *unit || p.deb == *unit)
                    .unwrap_or_else(|| panic!("`{line}`: no package installed above has {unit}"));
                assert!(
                    !p.started,
                    "`{line}`: {} is already started on install",
                    p.deb
                );
            }
            ["sudo", program, ..] => {
                assert!(
                    installed.iter().any(|p| p.bins.contains(program)),
                    "`{line}`: {program} is not in a package installed above"
                );
                assert!(root.join("usr/bin").join(program).is_file(), "`{line}`");
                assert_eq!(
                    *program, "commsctl",
                    "this test runs only commsctl: `{line}`"
                );
                commsctl = w.clone();
            }
            _ => panic!("this test has no check for `{line}`"),
        }
    }
    assert!(!installed.is_empty(), "the README installs packages");
    assert!(!commsctl.is_empty(), "the README shows commsctl at work");
    commsctl
}

#[test]
fn debian_packages_hold_working_services() {
    let started = Instant::now();
    let block = readme_block();
    let debs = build(&block);
    eprintln!("packages: {debs:?} ({:.1?})", started.elapsed());
    let dir = tempfile::Builder::new()
        .prefix("packages-")
        .tempdir_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("a temporary directory");
    // Extracted together: the tree as the three packages installed would make it.
    let root = dir.path().join("root");
    for p in &PACKAGES {
        let deb = &debs[p.cargo];
        check_control(p, deb);
        check_files(p, deb);
        check_scripts(p, deb, dir.path());
        run(Command::new(tool("dpkg-deb")).arg("-x").arg(deb).arg(&root));
    }
    check_binaries(&root);
    check_configs(&root);
    let units: BTreeMap<&str, Unit> = PACKAGES
        .iter()
        .map(|p| (p.cargo, check_unit(p, &root)))
        .collect();
    // systemd-analyze resolves the units' dependencies (sysinit.target...) in the tree: the
    // host's units stand in for those an installed system has.
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .find(|d| Path::new(d).join("sysinit.target").exists())
        .expect("the host's systemd units (apt-get install systemd)");
    run(Command::new("cp")
        .args(["-a", "-n", &format!("{host_units}/.")])
        .arg(root.join("usr/lib/systemd/system")));
    for p in &PACKAGES {
        check_systemd(p, &root);
    }
    check_user(&root);
    let commsctl = check_install_lines(&block, &debs, &root);
    let layout = Layout {
        root: root.clone(),
        var: dir.path().join("var/lib/comms"),
    };
    run_services(&layout, &units, &commsctl);
    eprintln!("packages checked in {:.1?}", started.elapsed());
}
