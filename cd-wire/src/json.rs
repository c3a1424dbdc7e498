//! The JSON variant (`message::from_json`, docs/PROTOCOL.md §1.3): receive-only.
//!
//! `{"sent-from-server":…,"sent-from-service":…,"server":…,"service":…,"command":…,
//! "parameters":{…}}`. Header fields must be strings. Parameter values: strings as-is,
//! integral numbers as integer text, other numbers as C++ `std::to_string(double)` does
//! (`%f`, six decimals), `true`/`false` as text, `null` as empty. Arrays and objects as
//! values, a missing or empty command, non-UTF-8 and trailing data after `}` are rejected.
//! Unknown top-level keys are ignored (the C++ logs them).
//!
//! Not copied from the C++: its JSON strings are unescaped twice (we unescape once, as JSON
//! says). Nesting is bounded by `serde_json`'s recursion limit (128), so a deeply nested line
//! is an error, never a stack overflow. Nothing in the C++ sends JSON, so there is no writer.

use serde_json::Value;

use crate::error::ParseError;
use crate::wire::{is_valid_name, WireMessage};

/// Parses a trimmed line that starts with `{`.
pub(crate) fn parse_json(s: &str) -> Result<WireMessage, ParseError> {
    let value: Value = serde_json::from_str(s).map_err(ParseError::Json)?;
    let Value::Object(obj) = value else {
        return Err(shape("top level is not an object"));
    };
    let mut msg = WireMessage::default();
    for (key, v) in obj {
        let field = match key.as_str() {
            "sent-from-server" => &mut msg.sent_from_server,
            "sent-from-service" => &mut msg.sent_from_service,
            "server" => &mut msg.server,
            "service" => &mut msg.service,
            "command" => &mut msg.command,
            "parameters" => {
                let Value::Object(params) = v else {
                    return Err(shape("\"parameters\" is not an object"));
                };
                for (name, pv) in params {
                    if !is_valid_name(&name) {
                        return Err(shape(&format!("invalid parameter name {name:?}")));
                    }
                    let text = scalar_text(pv).ok_or_else(|| {
                        shape(&format!("parameter {name:?} is an array or an object"))
                    })?;
                    msg.params.insert(name, text);
                }
                continue;
            }
            _ => continue,
        };
        let Value::String(text) = v else {
            return Err(shape(&format!("{key:?} is not a string")));
        };
        *field = text;
    }
    if msg.command.is_empty() {
        return Err(ParseError::EmptyCommand);
    }
    Ok(msg)
}

fn shape(what: &str) -> ParseError {
    ParseError::JsonShape(what.to_owned())
}

/// Text of a scalar JSON value; `None` for arrays and objects.
fn scalar_text(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => format!("{f:.6}"),
            (None, None, None) => n.to_string(),
        }),
        Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::{parse, ParseError};

    #[test]
    fn row6_json_form() {
        let line = br#"{"command":"FIRE","parameters":{"correct":false,"length":-35,"name":"Charles","range":101,"valid":true,"void":""}}"#;
        let m = parse(line).ok();
        assert_eq!(
            m.and_then(|m| m.to_line().ok()).as_deref(),
            Some("FIRE correct=false;length=-35;name=Charles;range=101;valid=true;void=")
        );
    }

    #[test]
    fn all_header_fields_and_scalars() {
        let line = br#" {"sent-from-server":"vm","sent-from-service":"a","server":"s","service":"b","command":"X","extra":1,"parameters":{"f":1.5,"n":null,"big":18446744073709551615,"e":"a\nb;"}} "#;
        let m = parse(line).ok();
        assert_eq!(
            m.and_then(|m| m.to_line().ok()).as_deref(),
            Some("<vm:a s:b/X big=18446744073709551615;e=\"a\\nb;\";f=1.500000;n=")
        );
    }

    #[test]
    fn rejections() {
        for bad in [
            &br#"{"command":"X"} x"#[..],
            br#"{"command":"X""#,
            br#"{"parameters":{}}"#,
            br#"{"command":""}"#,
            br#"{"command":5}"#,
            br#"{"command":"X","parameters":[]}"#,
            br#"{"command":"X","parameters":{"a":[1]}}"#,
            br#"{"command":"X","parameters":{"1a":"v"}}"#,
            b"{",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    /// serde_json's recursion limit turns deep nesting into an error, not a stack overflow.
    #[test]
    fn deep_nesting_is_an_error() {
        for open in ["[", "{\"a\":"] {
            let mut line = String::from("{\"command\":\"X\",\"parameters\":{\"p\":");
            line.push_str(&open.repeat(100_000));
            let r = parse(line.as_bytes());
            assert!(matches!(r, Err(ParseError::Json(_))), "{open}: {r:?}");
        }
    }
}
