//! `commsctl sniff`: filter and print the copies [`Transport::sniff`] yields.
//!
//! Text lines are `HH:MM:SS.mmm from -> to COMMAND k=v ...` (UTC; parameters sorted, values
//! with spaces or quotes JSON-quoted); `--json` prints one object per line: the message as
//! serde writes it plus `"time"` (RFC 3339-like UTC). A message passes the filter when its
//! command is one of `commands` (or none are given) **and** its sender or destination is one
//! of `services` (or none are given); a service is matched by name (`b`) or full address
//! (`n1:b`).

use std::future::Future;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use comms::{Message, Transport};

/// Which messages to print.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Commands to show (empty: all).
    pub commands: Vec<String>,
    /// Services (name or `node:service`) to show as sender or destination (empty: all).
    pub services: Vec<String>,
}

impl Filter {
    /// True when `msg` passes.
    pub fn matches(&self, msg: &Message) -> bool {
        let command_ok = self.commands.is_empty()
            || self
                .commands
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&msg.command));
        let service_ok = self.services.is_empty()
            || self.services.iter().any(|s| {
                let from = msg
                    .from()
                    .as_ref()
                    .is_some_and(|f| f.service() == s || f.to_string() == *s);
                let to = msg.to.service_name() == Some(s.as_str()) || msg.to.to_string() == *s;
                from || to
            });
        command_ok && service_ok
    }
}

/// Output options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// One JSON object per line.
    pub json: bool,
    /// Stop after this many printed messages.
    pub count: Option<u64>,
}

/// `(days since epoch, seconds of the day, millis)` of now, UTC.
fn now_parts() -> (u64, u64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        d.as_secs() / 86_400,
        d.as_secs() % 86_400,
        d.subsec_millis(),
    )
}

fn clock(secs: u64, millis: u32) -> String {
    format!(
        "{:02}:{:02}:{:02}.{millis:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn quote(v: &str) -> String {
    if v.is_empty() || v.contains([' ', '"', '\n', '\t', '=']) {
        serde_json::to_string(v).unwrap_or_else(|_| v.to_owned())
    } else {
        v.to_owned()
    }
}

/// The text line of `msg` (without `\n`).
pub fn text_line(msg: &Message, time: &str) -> String {
    let from = msg
        .from()
        .as_ref()
        .map_or_else(|| "?".to_owned(), ToString::to_string);
    let mut line = format!("{time} {from} -> {} {}", msg.to, msg.command);
    for (k, v) in &msg.params {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&quote(v));
    }
    line
}

/// The JSON line of `msg` (without `\n`).
pub fn json_line(msg: &Message, time: &str) -> serde_json::Result<String> {
    let mut v = serde_json::to_value(msg)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("time".into(), serde_json::Value::String(time.to_owned()));
    }
    serde_json::to_string(&v)
}

/// Sniffs `transport` and prints what passes `filter` to `out` until `count` messages were
/// printed, the sniff ends, or `stop` resolves. Returns how many were printed.
pub async fn run<W: Write>(
    transport: &dyn Transport,
    filter: &Filter,
    output: Output,
    out: &mut W,
    stop: impl Future<Output = ()>,
    started: impl FnOnce(),
) -> comms::Result<u64> {
    let mut copies = transport.sniff().await?;
    started();
    tokio::pin!(stop);
    let mut printed = 0u64;
    while output.count.is_none_or(|c| printed < c) {
        let delivery = tokio::select! {
            d = copies.recv() => match d {
                Some(d) => d,
                None => break,
            },
            _ = &mut stop => break,
        };
        let msg = delivery.message();
        if !filter.matches(msg) {
            continue;
        }
        let (days, secs, millis) = now_parts();
        let line = if output.json {
            json_line(msg, &format!("{}T{}Z", date(days), clock(secs, millis)))?
        } else {
            text_line(msg, &clock(secs, millis))
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break; // stdout closed (`| head`): done
        }
        printed += 1;
    }
    Ok(printed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use comms::backend::WireFields;
    use comms::{Address, Destination};

    fn msg(cmd: &str, from: &str, to: &str) -> Message {
        let mut m = Message::new(cmd, to.parse::<Destination>().unwrap()).unwrap();
        m.set_from(Some(from.parse::<Address>().unwrap()));
        m
    }

    #[test]
    fn filter_by_command_and_service_on_either_side() {
        let f = Filter {
            commands: vec!["PING".into()],
            services: vec!["b".into()],
        };
        assert!(f.matches(&msg("PING", "n:a", "b")));
        assert!(f.matches(&msg("PING", "n:b", "n:c")));
        assert!(!f.matches(&msg("PONG", "n:a", "b")));
        assert!(!f.matches(&msg("PING", "n:a", "c")));
        let by_address = Filter {
            services: vec!["n:c".into()],
            ..Filter::default()
        };
        assert!(by_address.matches(&msg("X", "n:a", "n:c")));
        assert!(Filter::default().matches(&msg("X", "n:a", "*")));
    }

    #[test]
    fn text_and_json_lines() {
        let m = msg("PING", "n:a", "b")
            .with_param("k", "v w")
            .with_param("a", "1");
        assert_eq!(
            text_line(&m, "12:00:00.000"),
            "12:00:00.000 n:a -> b PING a=1 k=\"v w\""
        );
        let j: serde_json::Value =
            serde_json::from_str(&json_line(&m, "2026-01-01T00:00:00.000Z").unwrap()).unwrap();
        assert_eq!(j["command"], "PING");
        assert_eq!(j["time"], "2026-01-01T00:00:00.000Z");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_454), "2026-01-01");
    }
}
