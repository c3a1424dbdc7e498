//! The repository stands alone, and its README agrees with the binaries:
//! - every markdown link in README.md and docs/ points to a file of the repository that exists
//!   (no link leaves the repository), and every `*.md` file they name exists;
//! - every `--flag` README.md shows exists: a flag of a `cargo run ... -- ARGS` command in the
//!   `--help` of that binary (and subcommand), a flag in the prose in the `--help` of one of
//!   the workspace's binaries.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use comms_tests::binary;
use comms_tests::readme::sh_blocks;
use comms_tests::workspace_root;

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![workspace_root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text outside fenced code blocks, with inline code spans blanked out.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(part);
            }
            out.push(' ');
        }
        out.push('\n');
    }
    out
}

/// `[text](target)` targets and `<scheme:...>` autolinks.
fn link_targets(prose: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for (i, _) in prose.match_indices("](") {
        let rest = &prose[i + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].trim().to_owned());
        }
    }
    for (i, _) in prose.match_indices('<') {
        let rest = &prose[i + 1..];
        if let Some(end) = rest.find('>') {
            let t = &rest[..end];
            if t.contains("://") || t.starts_with("mailto:") {
                targets.push(t.to_owned());
            }
        }
    }
    targets
}

fn check_file(file: &Path, problems: &mut Vec<String>) {
    let root = workspace_root().canonicalize().expect("root");
    let text = std::fs::read_to_string(file).expect("markdown file");
    let dir = file.parent().expect("a directory");
    let name = file
        .strip_prefix(&root)
        .unwrap_or(file)
        .display()
        .to_string();
    let prose = prose(&text);
    for bare in ["http://", "https://"] {
        if prose.contains(bare) {
            problems.push(format!("{name}: a bare {bare} link outside code"));
        }
    }
    for target in link_targets(&prose) {
        if target.contains(':') {
            problems.push(format!("{name}: link leaves the repository: {target}"));
            continue;
        }
        let path = target.split('#').next().unwrap_or_default();
        if path.is_empty() {
            continue;
        }
        match dir.join(path).canonicalize() {
            Ok(p) if p.starts_with(&root) => {}
            Ok(p) => problems.push(format!(
                "{name}: link outside the repository: {}",
                p.display()
            )),
            Err(_) => problems.push(format!("{name}: link to a missing file: {target}")),
        }
    }
    // Every `*.md` file named anywhere (code spans included) exists.
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c))) {
        let word = word.trim_end_matches('.');
        if !word.ends_with(".md") || word.contains("://") {
            continue;
        }
        let found = [dir.join(word), root.join(word)]
            .iter()
            .any(|p| p.is_file());
        if !found {
            problems.push(format!(
                "{name}: names {word}, which is not in the repository"
            ));
        }
    }
}

#[test]
fn docs_links_stay_in_the_repository_and_resolve() {
    let mut problems = Vec::new();
    for file in markdown_files() {
        check_file(&file, &mut problems);
    }
    for required in ["PROTOCOL.md", "CONFORMANCE.md", "DESIGN.md"] {
        if !workspace_root().join("docs").join(required).is_file() {
            problems.push(format!("docs/{required} is missing"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn docs_checker_catches_bad_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.md");
    std::fs::write(
        &file,
        "see [a](https://example.org), <https://x.org>, [b](missing.md), `GONE.md` and https://y\n",
    )
    .expect("write");
    let mut problems = Vec::new();
    check_file(&file, &mut problems);
    assert!(problems.len() >= 4, "{problems:#?}");
}

fn help(exe: &Path, args: &[&str]) -> String {
    let out = Command::new(exe)
        .args(args)
        .arg("--help")
        .env_remove("COMMS_URL")
        .output()
        .expect("run --help");
    assert!(
        out.status.success(),
        "{} {args:?} --help failed",
        exe.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subcommands a clap `--help` lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

fn flags(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '*'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && w.as_bytes()[2].is_ascii_alphabetic())
        .map(str::to_owned)
        .collect()
}

fn has_flag(help: &str, flag: &str) -> bool {
    match flag.strip_suffix('*') {
        Some(prefix) => help.contains(prefix),
        None => flags(help).contains(flag),
    }
}

#[test]
fn docs_readme_flags_exist_in_help() {
    let exes = [
        ("server", binary("server", "server")),
        ("agent", binary("agent", "agent")),
        ("commsctl", binary("server", "commsctl")),
        ("commsd", binary("commsd", "commsd")),
    ];
    let mut helps: Vec<(String, String)> = Vec::new();
    for (name, exe) in &exes {
        let top = help(exe, &[]);
        for sub in subcommands(&top) {
            helps.push((format!("{name} {sub}"), help(exe, &[&sub])));
        }
        helps.push((name.to_string(), top));
    }
    let help_of = |key: &str| {
        helps
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| panic!("no --help for {key}"))
    };
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let mut problems = Vec::new();
    let mut commands_checked = 0;
    for block in sh_blocks(&readme).expect("sh blocks") {
        for line in block.commands() {
            let line = line.split(" #").next().unwrap_or_default();
            let Some((cargo, args)) = line.split_once(" -- ") else {
                continue;
            };
            if !cargo.trim_start().starts_with("cargo run") {
                continue;
            }
            let words: Vec<&str> = cargo.split_whitespace().collect();
            let after = |flag: &str| words.windows(2).find(|w| w[0] == flag).map(|w| w[1]);
            let bin = after("--bin")
                .or(after("-p"))
                .unwrap_or_default()
                .to_owned();
            // The binary's own args stop at a bare `--` (what follows runs on the agents).
            let own = args.split(" -- ").next().unwrap_or_default();
            let sub = own.split_whitespace().find(|w| !w.starts_with('-'));
            let key = match sub {
                Some(s) if bin == "commsctl" => format!("commsctl {s}"),
                _ => bin.clone(),
            };
            let h = help_of(&key);
            for flag in flags(own) {
                if !has_flag(&h, &flag) {
                    problems.push(format!("`{line}`: `{key} --help` has no {flag}"));
                }
            }
            commands_checked += 1;
        }
    }
    assert!(
        commands_checked >= 8,
        "only {commands_checked} commands checked"
    );
    let cargo_flags = ["--release", "--bin"];
    for flag in flags(&prose_and_spans(&readme)) {
        if cargo_flags.contains(&flag.as_str()) || flag == "--help" {
            continue;
        }
        if !helps.iter().any(|(_, h)| has_flag(h, &flag)) {
            problems.push(format!(
                "README mentions {flag}, which no binary's --help shows"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The README outside fenced blocks, code spans kept.
fn prose_and_spans(text: &str) -> String {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect::<Vec<_>>()
        .join("\n")
}
