//! No Docker engine runs here, so the compose file is checked statically: its services, that
//! every command of our image names one of our binaries with flags that binary accepts, that
//! the environment only uses keys our binaries read, and that every default URL parses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;

use comms::TransportUrl;
use comms_tests::binary;
use comms_tests::workspace_root;
use yaml_rust2::{Yaml, YamlLoader};

/// Resolve `<<` merge keys (YAML 1.1 merge, which compose supports) one level deep.
fn merged(service: &Yaml) -> yaml_rust2::yaml::Hash {
    let mut out = yaml_rust2::yaml::Hash::new();
    let map = service.as_hash().expect("service is a mapping");
    if let Some(base) = map.get(&Yaml::from_str("<<")).and_then(Yaml::as_hash) {
        out.extend(base.clone());
    }
    for (k, v) in map {
        if k.as_str() != Some("<<") {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn package_of(bin: &str) -> &'static str {
    match bin {
        "commsd" => "commsd",
        "agent" => "agent",
        "server" | "commsctl" => "server",
        other => panic!("`{other}` is not one of our binaries"),
    }
}

fn default_of(value: &str) -> &str {
    // ${NAME:-default} → default; anything else as is.
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.split_once(":-"))
        .map_or(value, |(_, d)| d)
}

#[test]
fn compose_matches_our_binaries_and_config() {
    let text = std::fs::read_to_string(workspace_root().join("docker/compose.yaml"))
        .expect("docker/compose.yaml");
    let doc = &YamlLoader::load_from_str(&text).expect("valid YAML")[0];
    let services = doc["services"].as_hash().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["agent", "commsd", "kafka", "rabbitmq", "server"])
    );

    let known_env = BTreeSet::from(["COMMS_URL", "RUST_LOG"]);
    let mut ours = 0;
    for (name, service) in services {
        let service = merged(service);
        let image = service
            .get(&Yaml::from_str("image"))
            .and_then(Yaml::as_str)
            .unwrap_or("");
        if image != "comms:latest" {
            continue;
        }
        ours += 1;
        let command: Vec<&str> = service[&Yaml::from_str("command")]
            .as_vec()
            .expect("command list")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let help = Command::new(binary(package_of(command[0]), command[0]))
            .arg("--help")
            .output()
            .expect("--help");
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in command.iter().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(flag),
                "{name:?}: `{} --help` has no {flag}",
                command[0]
            );
        }
        if let Some(env) = service
            .get(&Yaml::from_str("environment"))
            .and_then(Yaml::as_hash)
        {
            for (key, value) in env {
                let key = key.as_str().expect("env key");
                assert!(
                    known_env.contains(key) || help.contains(&format!("[env: {key}")),
                    "{name:?}: unknown environment key {key}"
                );
                if key == "COMMS_URL" {
                    let url = default_of(value.as_str().expect("env value"));
                    TransportUrl::parse(url).unwrap_or_else(|e| panic!("{name:?}: {e}"));
                }
            }
        }
    }
    assert_eq!(ours, 3, "commsd, server and agent run our image");

    let dockerfile = std::fs::read_to_string(workspace_root().join("docker/Dockerfile"))
        .expect("docker/Dockerfile");
    for bin in ["commsd", "server", "agent", "commsctl"] {
        assert!(
            dockerfile.contains(&format!("/src/target/release/{bin}")),
            "Dockerfile does not ship {bin}"
        );
    }
}
