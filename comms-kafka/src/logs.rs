//! librdkafka's log lines and client errors, routed through `tracing` and rate-limited: a
//! broker that cannot be reached makes librdkafka repeat the same line several times a second
//! for as long as it retries; each distinct line is logged once per [`REPEAT_EVERY`], with the
//! number of repeats suppressed meanwhile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

/// How often one distinct line may be logged.
pub const REPEAT_EVERY: Duration = Duration::from_secs(30);
/// Distinct lines remembered before the memory is reset.
const MAX_LINES: usize = 256;

static SEEN: Mutex<Option<HashMap<String, (Instant, u64)>>> = Mutex::new(None);

/// `Some(suppressed)` when `line` should be logged now.
fn admit(line: &str) -> Option<u64> {
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let map = seen.get_or_insert_with(HashMap::new);
    if map.len() >= MAX_LINES {
        map.clear();
    }
    let now = Instant::now();
    match map.get_mut(line) {
        Some((last, skipped)) if now.duration_since(*last) < REPEAT_EVERY => {
            *skipped += 1;
            None
        }
        Some((last, skipped)) => {
            let n = *skipped;
            *last = now;
            *skipped = 0;
            Some(n)
        }
        None => {
            map.insert(line.to_owned(), (now, 0));
            Some(0)
        }
    }
}

/// Log one librdkafka line through `tracing`, rate-limited.
pub fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    // The broker's own line numbers and timing vary; the text names the cause.
    let key = format!("{fac} {message}");
    let Some(skipped) = admit(&key) else { return };
    let more = if skipped > 0 {
        format!(" (repeated {skipped} times since last logged)")
    } else {
        String::new()
    };
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", "kafka: {fac}: {message}{more}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "kafka: {fac}: {message}{more}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "kafka: {fac}: {message}"),
    }
}

/// Log a client error through `tracing`, rate-limited.
pub fn error(error: &KafkaError, reason: &str) {
    let key = format!("{error}: {reason}");
    if let Some(skipped) = admit(&key) {
        let more = if skipped > 0 {
            format!(" (repeated {skipped} times since last logged)")
        } else {
            String::new()
        };
        tracing::warn!(target: "librdkafka", "kafka: {reason}{more}");
    }
}

/// The client context of the producer and the admin client: logs through [`log`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        error(&e, reason);
    }
}

impl ConsumerContext for Quiet {}

#[cfg(test)]
mod tests {
    #[test]
    fn a_repeated_line_is_admitted_once_per_period() {
        let line = format!("test line {}", std::process::id());
        assert_eq!(super::admit(&line), Some(0));
        assert_eq!(super::admit(&line), None);
        assert_eq!(super::admit(&line), None);
    }
}
