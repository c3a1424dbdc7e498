//! Configuration: one TOML file for every binary, and the transport URL that picks the backend.
//!
//! ```toml
//! [transport]
//! url = "cd:///run/communicator/communicatord.sock"  # or amqp://..., kafka://..., memory://...
//! node = "web01"          # optional: node name for broker backends (default: the hostname)
//! namespace = "prod"      # optional: prefix that keeps deployments apart on a shared broker
//!
//! [rabbitmq]              # per-backend sections, read by that backend
//! prefetch = 64
//! ```
//!
//! The environment variable `COMMS_URL`, when set, replaces `transport.url`. Sections other than
//! `transport` are kept as TOML tables for the backends and binaries that own them.
//!
//! Bad files are refused with an error naming the problem, never half-read: a file over
//! [`MAX_CONFIG_BYTES`], not UTF-8 or not TOML, a key of the wrong type, an unknown key in a
//! section, or an unknown section (one not in [`KNOWN_SECTIONS`]: a typo like `[agnet]` would
//! otherwise be silently ignored) are all errors.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};
use crate::name::validate_name;

/// Environment variable that overrides `transport.url`.
pub const URL_ENV: &str = "COMMS_URL";

/// Largest configuration file read (1 MiB): `--config /dev/zero` or a log file given by mistake
/// is refused, not read into memory.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The sections a configuration file may hold. A binary or backend that reads a new section
/// adds it here.
pub const KNOWN_SECTIONS: &[&str] = &["transport", "rabbitmq", "kafka", "server", "agent"];

/// Reads a whole configuration file of at most [`MAX_CONFIG_BYTES`] as UTF-8. The error names
/// the file and the problem; for the `commsd` config file too.
pub fn read_config_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let cannot = |e: String| Error::Config(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(e.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(cannot(format!(
            "larger than {MAX_CONFIG_BYTES} bytes (not a configuration file?)"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        cannot(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Every scheme a transport URL may use.
pub const ACCEPTED_SCHEMES: &str = "memory:, cd:, cds:, cdu:, amqp:, amqps:, kafka:";

/// The backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `memory://hub?node=n`: the in-process reference transport.
    Memory,
    /// `cd:///path/to.sock` or `cd://host:port`: native daemon, plain.
    Cd,
    /// `cds://host:port`: native daemon over TLS.
    Cds,
    /// `cdu://host:port`: native daemon over UDP, fire-and-forget.
    Cdu,
    /// `amqp://user:pass@host:port/vhost`: RabbitMQ.
    Amqp,
    /// `amqps://...`: RabbitMQ over TLS.
    Amqps,
    /// `kafka://host:port[,host:port...]`: Kafka.
    Kafka,
}

impl Scheme {
    /// The scheme as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Memory => "memory",
            Scheme::Cd => "cd",
            Scheme::Cds => "cds",
            Scheme::Cdu => "cdu",
            Scheme::Amqp => "amqp",
            Scheme::Amqps => "amqps",
            Scheme::Kafka => "kafka",
        }
    }

    /// The backend that serves it (`memory`, `native`, `rabbitmq`, `kafka`).
    pub fn backend(self) -> &'static str {
        match self {
            Scheme::Memory => "memory",
            Scheme::Cd | Scheme::Cds | Scheme::Cdu => "native",
            Scheme::Amqp | Scheme::Amqps => "rabbitmq",
            Scheme::Kafka => "kafka",
        }
    }
}

/// A parsed, checked transport URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportUrl {
    raw: String,
    scheme: Scheme,
    url: Url,
}

impl TransportUrl {
    /// Parse and check a URL. An unknown scheme or a malformed URL is an error that names the
    /// accepted schemes.
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let malformed = |reason: String| Error::MalformedUrl {
            url: raw.to_owned(),
            reason,
            accepted: ACCEPTED_SCHEMES,
        };
        let Some((scheme_text, _)) = raw.split_once(':') else {
            return Err(malformed("no scheme (expected `scheme:...`)".into()));
        };
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "memory" => Scheme::Memory,
            "cd" => Scheme::Cd,
            "cds" => Scheme::Cds,
            "cdu" => Scheme::Cdu,
            "amqp" => Scheme::Amqp,
            "amqps" => Scheme::Amqps,
            "kafka" => Scheme::Kafka,
            other => {
                return Err(Error::UnsupportedScheme {
                    scheme: other.to_owned(),
                    accepted: ACCEPTED_SCHEMES,
                })
            }
        };
        // Kafka lists several bootstrap servers, which a URL authority cannot hold: check the
        // list by hand and give the url crate only the first one.
        let parse_text = if scheme == Scheme::Kafka {
            let servers = kafka_servers(raw).map_err(malformed)?;
            // Keep the path and query (`?node=...`) after the server list.
            let after_authority = raw
                .split_once("://")
                .map(|(_, rest)| rest)
                .and_then(|rest| rest.find(['/', '?']).map(|i| &rest[i..]))
                .unwrap_or("");
            format!("kafka://{}{after_authority}", servers[0])
        } else {
            raw.to_owned()
        };
        let url = Url::parse(&parse_text).map_err(|e| malformed(e.to_string()))?;
        let host = url.host_str().unwrap_or("");
        match scheme {
            Scheme::Memory => {
                if !host.is_empty() {
                    validate_name("memory hub name", host)
                        .map_err(|e| malformed(format!("hub name {}", e.reason)))?;
                }
            }
            Scheme::Cd => {
                if host.is_empty() && !url.path().starts_with('/') {
                    return Err(malformed(
                        "expected cd:///absolute/socket/path or cd://host:port".into(),
                    ));
                }
                if host.is_empty() && url.path().len() < 2 {
                    return Err(malformed("the Unix socket path is empty".into()));
                }
            }
            Scheme::Cds | Scheme::Cdu | Scheme::Amqp | Scheme::Amqps | Scheme::Kafka => {
                if host.is_empty() {
                    return Err(malformed("a host is required".into()));
                }
            }
        }
        Ok(Self {
            raw: raw.to_owned(),
            scheme,
            url,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The parsed URL (for `kafka:`, of the first bootstrap server only).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// A query parameter (`?node=n1`).
    pub fn query(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The node the URL names (`?node=`, checked by the name rule), else this host's name
    /// ([`hostname_node`]).
    pub fn node(&self) -> Result<String> {
        match self.query("node") {
            Some(n) => {
                crate::name::validate_name("node", &n)?;
                Ok(n)
            }
            None => Ok(hostname_node()),
        }
    }

    /// For `kafka:`, every bootstrap server as `host:port`.
    pub fn kafka_bootstrap(&self) -> Vec<String> {
        kafka_servers(&self.raw).unwrap_or_default()
    }
}

impl fmt::Display for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for TransportUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TransportUrl::parse(s)
    }
}

fn kafka_servers(raw: &str) -> std::result::Result<Vec<String>, String> {
    let rest = raw
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or("expected kafka://host:port[,host:port...]")?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let mut servers = Vec::new();
    for server in authority.split(',') {
        let (host, port) = server
            .rsplit_once(':')
            .ok_or_else(|| format!("bootstrap server `{server}` needs host:port"))?;
        if host.is_empty() {
            return Err(format!("bootstrap server `{server}` has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("bootstrap server `{server}` has an invalid port"))?;
        servers.push(server.to_owned());
    }
    Ok(servers)
}

/// The `[transport]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSection {
    /// The transport URL; its scheme picks the backend.
    pub url: String,
    /// Node name for broker backends (default: the hostname).
    #[serde(default)]
    pub node: Option<String>,
    /// Prefix that keeps deployments apart on a shared broker.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A short-lived endpoint (a command-line tool such as `commsctl`): what a broker keeps
    /// for it goes away when it closes. RabbitMQ: `close` deletes its instance and service
    /// queues; Kafka: no service topic or group (its instance topic stays, as topics are
    /// not deleted by comms);
    /// native and memory keep nothing for a closed endpoint anyway. Messages for it after it
    /// closed are lost, so a long-running service never sets it.
    #[serde(default)]
    pub ephemeral: bool,
    /// The local state directory (attempt counts of retried messages; native dead letters).
    /// Default: see [`crate::state::resolve`].
    #[serde(default)]
    pub state_dir: Option<std::path::PathBuf>,
}

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// `[transport]`.
    pub transport: TransportSection,
    /// Every other section (`[native]`, `[rabbitmq]`, `[kafka]`, `[server]`, `[agent]`...),
    /// for the backend or binary that owns it.
    #[serde(flatten)]
    pub sections: toml::Table,
}

impl Config {
    /// The `[transport] node` a backend uses for `url` when the URL names none (`?node=` in a
    /// URL wins over the config file).
    pub fn node_for(&self, url: &TransportUrl) -> Option<String> {
        match url.query("node") {
            Some(_) => None,
            None => self.transport.node.clone(),
        }
    }

    /// The local state directory ([`crate::state::resolve`] of `[transport] state_dir`).
    pub fn state_dir(&self) -> Option<std::path::PathBuf> {
        crate::state::resolve(self.transport.state_dir.as_deref())
    }

    /// A configuration that only names a URL.
    pub fn from_url(url: impl Into<String>) -> Result<Self> {
        let config = Self {
            transport: TransportSection {
                url: url.into(),
                node: None,
                namespace: None,
                ephemeral: false,
                state_dir: None,
            },
            sections: toml::Table::new(),
        };
        config.check()?;
        Ok(config)
    }

    /// Parse TOML text (no environment override).
    pub fn from_toml(text: &str) -> Result<Self> {
        // Syntax first (its errors point at the line), then the shape (its errors name the key:
        // deserializing the text straight into `Config` loses both through the flattened table).
        let table: toml::Table =
            toml::from_str(text).map_err(|e| Error::Config(format!("invalid TOML: {e}")))?;
        if let Some(unknown) = table.keys().find(|k| !KNOWN_SECTIONS.contains(&k.as_str())) {
            return Err(Error::Config(format!(
                "unknown section or key `{unknown}` (known sections: {})",
                KNOWN_SECTIONS.join(", ")
            )));
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| Error::Config(format!("invalid configuration: {e}")))?;
        config.check()?;
        Ok(config)
    }

    /// Read a file, then apply the `COMMS_URL` override.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_config_file(path)?;
        let mut config = Self::from_toml(&text).map_err(|e| {
            let why = match e {
                Error::Config(why) => why,
                other => other.to_string(),
            };
            Error::Config(format!("{}: {why}", path.display()))
        })?;
        config.override_url(std::env::var(URL_ENV).ok())?;
        Ok(config)
    }

    /// What a binary starts from: the file at `path` when given (with the `COMMS_URL`
    /// override), else `url`, else `default_url`; then `url` (a `--url` flag) wins over all.
    pub fn resolve(path: Option<&Path>, url: Option<&str>, default_url: &str) -> Result<Self> {
        let mut config = match path {
            Some(path) => Self::load(path)?,
            None => Self::from_url(url.unwrap_or(default_url))?,
        };
        config.override_url(url.map(str::to_owned))?;
        Ok(config)
    }

    /// Replace the URL when `url` is `Some` (what `COMMS_URL` does).
    pub fn override_url(&mut self, url: Option<String>) -> Result<()> {
        if let Some(url) = url.filter(|u| !u.trim().is_empty()) {
            TransportUrl::parse(&url)?;
            self.transport.url = url;
        }
        Ok(())
    }

    /// The checked transport URL.
    pub fn url(&self) -> Result<TransportUrl> {
        TransportUrl::parse(&self.transport.url)
    }

    /// A backend's or binary's own section, deserialized; missing means all defaults.
    pub fn section<T: serde::de::DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        match self.sections.get(name) {
            None => Ok(T::default()),
            Some(value) => value
                .clone()
                .try_into()
                .map_err(|e| Error::Config(format!("[{name}]: {e}"))),
        }
    }

    fn check(&self) -> Result<()> {
        self.url()?;
        if let Some(node) = &self.transport.node {
            validate_name("transport.node", node)?;
        }
        if let Some(ns) = &self.transport.namespace {
            validate_name("transport.namespace", ns)?;
        }
        Ok(())
    }
}

/// This machine's name turned into a valid node name (as communicatord does: `-` → `_`, dots
/// removed); `node` when the hostname cannot be read or is unusable.
pub fn hostname_node() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| *c != '.')
        .map(|c| if c == '-' { '_' } else { c })
        .collect();
    if validate_name("node", &name).is_ok() {
        name
    } else {
        "node".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses() {
        let cases = [
            ("memory:", Scheme::Memory),
            ("memory://hub1?node=n1", Scheme::Memory),
            ("cd:///run/communicator/communicatord.sock", Scheme::Cd),
            ("cd://127.0.0.1:4040", Scheme::Cd),
            ("cds://host.example:4043", Scheme::Cds),
            ("cdu://127.0.0.1:4041", Scheme::Cdu),
            ("amqp://guest:guest@127.0.0.1:5672/%2f", Scheme::Amqp),
            ("amqps://rabbit.example", Scheme::Amqps),
            ("kafka://127.0.0.1:9092,127.0.0.2:9093", Scheme::Kafka),
        ];
        for (raw, scheme) in cases {
            let url = TransportUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(url.scheme(), scheme);
        }
        let k = TransportUrl::parse("kafka://a:1,b:2").unwrap();
        assert_eq!(k.kafka_bootstrap(), ["a:1", "b:2"]);
        let k = TransportUrl::parse("kafka://a:1,b:2?node=n5").unwrap();
        assert_eq!(k.kafka_bootstrap(), ["a:1", "b:2"]);
        assert_eq!(k.query("node").as_deref(), Some("n5"));
        let m = TransportUrl::parse("memory://hub?node=n2").unwrap();
        assert_eq!(m.query("node").as_deref(), Some("n2"));
    }

    #[test]
    fn errors_name_the_accepted_schemes() {
        for raw in [
            "nats://x",
            "http://x",
            "no-scheme",
            "cd:relative",
            "amqp://",
            "kafka://nohostport",
            "kafka://a:1,:2",
            "cds://",
            "memory://bad-name",
        ] {
            let e = TransportUrl::parse(raw).unwrap_err().to_string();
            assert!(
                e.contains("memory:, cd:, cds:, cdu:, amqp:, amqps:, kafka:"),
                "{raw}: {e}"
            );
        }
    }

    #[test]
    fn toml_and_override() {
        let mut c = Config::from_toml(
            "[transport]\nurl = \"memory://a\"\nnode = \"n1\"\n[rabbitmq]\nprefetch = 5\n[agent]\ngroups = [\"web\"]\n",
        )
        .unwrap();
        assert_eq!(c.transport.node.as_deref(), Some("n1"));
        assert!(c.sections.contains_key("agent"));
        c.override_url(Some("amqp://localhost".into())).unwrap();
        assert_eq!(c.url().unwrap().scheme(), Scheme::Amqp);
        assert!(c.override_url(Some("bogus://".into())).is_err());

        assert!(Config::from_toml("[transport]\nurl = \"x://y\"").is_err());
        assert!(Config::from_toml("[transport]\nurl = \"memory:\"\nbogus = 1").is_err());
        assert!(Config::from_toml("[transport]\nurl = \"memory:\"\nnode = \"a b\"").is_err());
        assert!(Config::from_toml("not toml [").is_err());
    }

    #[test]
    fn hostname_is_a_valid_node() {
        assert!(crate::name::is_valid_name(&hostname_node()));
    }
}
