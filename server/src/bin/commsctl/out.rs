//! Output helpers: `--json` lines carry an `event` field; errors go to stderr (JSON with --json).

use serde::Serialize;
use serde_json::{json, Value};

/// `value` as one JSON object with `"event": event` added (non-objects go under `data`).
pub fn tagged<T: Serialize>(event: &str, value: &T) -> Value {
    match serde_json::to_value(value) {
        Ok(Value::Object(mut map)) => {
            map.insert("event".into(), Value::String(event.into()));
            Value::Object(map)
        }
        Ok(other) => json!({ "event": event, "data": other }),
        Err(e) => json!({ "event": "error", "message": e.to_string() }),
    }
}

/// Print one `--json` line on stdout.
pub fn line<T: Serialize>(event: &str, value: &T) {
    println!("{}", tagged(event, value));
}

/// Report an error on stderr: `commsctl: MESSAGE`, or `{"event":"error",...}` with --json.
pub fn error(json: bool, message: &str) {
    if json {
        eprintln!("{}", json!({ "event": "error", "message": message }));
    } else {
        eprintln!("commsctl: {message}");
    }
}

/// Report a notice on stderr (plain text only; --json gets the structured events).
pub fn note(json: bool, message: &str) {
    if !json {
        eprintln!("commsctl: {message}");
    }
}
