//! Every example config in `configs/` parses, and its `[server]` and `[agent]` sections are
//! accepted by the binaries' own types (unknown keys are errors there).

use comms::Config;
use comms_agent::AgentConfig;
use comms_server::ServerConfig;

#[test]
fn example_configs_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        config
            .section::<ServerConfig>("server")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        config
            .section::<AgentConfig>("agent")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen.push(config.url().expect("url").scheme().backend());
    }
    seen.sort_unstable();
    assert_eq!(seen, ["kafka", "native", "rabbitmq"]);
}
