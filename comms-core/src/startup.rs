//! What a binary logs at start: the effective transport URL (password masked), its backend,
//! its namespace, and where each came from.
//!
//! Precedence of the URL, highest first: the `--url` flag, the `COMMS_URL` environment
//! variable, the `[transport] url` of the `--config` file, the binary's default. The namespace
//! comes from the URL's `?namespace=`, else `[transport] namespace` of the config file, else
//! `default`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Config, TransportUrl, URL_ENV};
use crate::Result;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// The `COMMS_URL` environment variable.
    Env,
    /// A config file.
    File(PathBuf),
    /// The URL's query (`?namespace=`).
    Url,
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("flag --url"),
            Source::Env => write!(f, "environment {URL_ENV}"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Url => f.write_str("URL query"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A resolved configuration and the origin of its URL and namespace.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The configuration to connect with.
    pub config: Config,
    /// Where the URL came from.
    pub url_from: Source,
    /// The namespace in effect.
    pub namespace: String,
    /// Where the namespace came from.
    pub namespace_from: Source,
    /// The config file's own URL when something else won over it.
    pub overridden_file_url: Option<String>,
}

impl Resolved {
    /// Resolve as [`Config::resolve`] does, remembering the origins. `flag_url` is the
    /// `--url` given on the command line (not the environment), `env_url` `COMMS_URL`.
    pub fn resolve(
        path: Option<&Path>,
        flag_url: Option<&str>,
        env_url: Option<&str>,
        default_url: &str,
    ) -> Result<Self> {
        let nonempty = |u: Option<&str>| u.filter(|u| !u.trim().is_empty()).map(str::to_owned);
        let (flag_url, env_url) = (nonempty(flag_url), nonempty(env_url));
        let mut config = match path {
            Some(p) => {
                let text = crate::config::read_config_file(p)?;
                Config::from_toml(&text).map_err(|e| {
                    crate::Error::Config(format!("{}: {}", p.display(), strip_config(e)))
                })?
            }
            None => Config::from_url(default_url)?,
        };
        let file_url = path.map(|_| config.transport.url.clone());
        let url_from = if flag_url.is_some() {
            Source::Flag
        } else if env_url.is_some() {
            Source::Env
        } else if let Some(p) = path {
            Source::File(p.to_owned())
        } else {
            Source::Default
        };
        config.override_url(env_url)?;
        config.override_url(flag_url)?;
        let overridden_file_url = file_url.filter(|u| *u != config.transport.url);
        let url = config.url()?;
        let (namespace, namespace_from) =
            match (url.query("namespace"), &config.transport.namespace) {
                (Some(ns), _) => (ns, Source::Url),
                (None, Some(ns)) => (
                    ns.clone(),
                    path.map_or(Source::Default, |p| Source::File(p.to_owned())),
                ),
                (None, None) => ("default".to_owned(), Source::Default),
            };
        Ok(Self {
            config,
            url_from,
            namespace,
            namespace_from,
            overridden_file_url,
        })
    }

    /// What a binary does at start: resolve with `COMMS_URL` from the environment, log the
    /// result ([`Resolved::describe`]) at INFO, and warn when the `--config` file's own URL
    /// is overridden.
    pub fn at_start(
        path: Option<&Path>,
        flag_url: Option<&str>,
        default_url: &str,
    ) -> Result<Self> {
        let env_url = std::env::var(URL_ENV).ok();
        let resolved = Self::resolve(path, flag_url, env_url.as_deref(), default_url)?;
        tracing::info!("{}", resolved.describe());
        if resolved.overridden_file_url.is_some() {
            tracing::warn!("--config does not set the URL: {}", resolved.describe());
        }
        Ok(resolved)
    }

    /// The URL with its password masked.
    pub fn masked_url(&self) -> String {
        mask_url(&self.config.transport.url)
    }

    /// The backend the URL's scheme names.
    pub fn backend(&self) -> &'static str {
        TransportUrl::parse(&self.config.transport.url)
            .map(|u| match u.scheme().as_str() {
                "cd" | "cds" | "cdu" => "native",
                "amqp" | "amqps" => "rabbitmq",
                "kafka" => "kafka",
                _ => "memory",
            })
            .unwrap_or("unknown")
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "transport {} (backend {}, from {}), namespace {} (from {})",
            self.masked_url(),
            self.backend(),
            self.url_from,
            self.namespace,
            self.namespace_from
        );
        if let Some(file_url) = &self.overridden_file_url {
            line.push_str(&format!(
                "; the config file's url {} is overridden by the {}",
                mask_url(file_url),
                self.url_from
            ));
        }
        line
    }
}

fn strip_config(e: crate::Error) -> String {
    match e {
        crate::Error::Config(why) => why,
        other => other.to_string(),
    }
}

/// `url` with the password of its user part and any `password=`/`secret=` query value
/// replaced by `***`.
pub fn mask_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    for key in ["password=", "secret=", "key_password="] {
        let mut from = 0;
        while let Some(i) = out[from..].find(key) {
            let start = from + i + key.len();
            let before = out[..from + i].chars().last();
            if !matches!(before, Some('?') | Some('&')) {
                from = start;
                continue;
            }
            let end = out[start..]
                .find(['&', '#'])
                .map_or(out.len(), |j| start + j);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_url("amqp://guest:guest@127.0.0.1:1/%2f"),
            "amqp://guest:***@127.0.0.1:1/%2f"
        );
        assert_eq!(mask_url("kafka://h:9092"), "kafka://h:9092");
        assert_eq!(
            mask_url("cdu://1.2.3.4:5?secret=abc&x=1"),
            "cdu://1.2.3.4:5?secret=***&x=1"
        );
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let dir = std::env::temp_dir().join(format!("comms-startup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[transport]\nurl = \"kafka://h:1\"\nnamespace = \"x\"\n",
        )
        .unwrap();
        let r = Resolved::resolve(Some(&file), None, Some("memory://a"), "cd://d:1").unwrap();
        assert_eq!(r.url_from, Source::Env);
        assert_eq!(r.config.transport.url, "memory://a");
        assert!(r.describe().contains("overridden"), "{}", r.describe());
        assert_eq!(r.namespace, "x");
        let r =
            Resolved::resolve(Some(&file), Some("memory://b"), Some("memory://a"), "x").unwrap();
        assert_eq!(r.url_from, Source::Flag);
        let r = Resolved::resolve(None, None, None, "cd://127.0.0.1:4040").unwrap();
        assert_eq!(
            (r.url_from, r.namespace_from),
            (Source::Default, Source::Default)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
