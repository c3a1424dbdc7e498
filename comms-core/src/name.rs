//! The name rule shared with the cd: wire.
//!
//! Names (nodes, services, parameter names, groups, labels) match `[A-Za-z_][A-Za-z0-9_]*`;
//! commands match `[A-Z0-9_]+`. Both are at most [`MAX_NAME_LEN`] bytes, so that every
//! backend can turn them into queue, topic or routing-key parts without escaping.

use crate::error::Invalid;

/// Longest name or command accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Check a name (`[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_NAME_LEN`] bytes).
/// `what` names the field in the error (`service`, `node`, `parameter name`...).
pub fn validate_name(what: &str, name: &str) -> Result<(), Invalid> {
    let mut bytes = name.bytes();
    match bytes.next() {
        None => return Err(Invalid::new(what, "must not be empty")),
        Some(b) if b.is_ascii_digit() => {
            return Err(Invalid::new(
                what,
                format!("`{}` must not start with a digit", clip(name)),
            ))
        }
        Some(_) => {}
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Invalid::new(
            what,
            format!(
                "is {} bytes long; at most {MAX_NAME_LEN} allowed",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(Invalid::new(
            what,
            format!(
                "`{}` contains {bad:?}; only ASCII letters, digits and `_` are allowed",
                clip(name)
            ),
        ));
    }
    Ok(())
}

/// Check a command (`[A-Z0-9_]+`, at most [`MAX_NAME_LEN`] bytes).
pub fn validate_command(command: &str) -> Result<(), Invalid> {
    if command.is_empty() {
        return Err(Invalid::new("command", "must not be empty"));
    }
    if command.len() > MAX_NAME_LEN {
        return Err(Invalid::new(
            "command",
            format!(
                "is {} bytes long; at most {MAX_NAME_LEN} allowed",
                command.len()
            ),
        ));
    }
    if let Some(bad) = command
        .chars()
        .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(Invalid::new(
            "command",
            format!(
                "`{}` contains {bad:?}; commands use only A-Z, 0-9 and `_`",
                clip(command)
            ),
        ));
    }
    Ok(())
}

/// True when `name` passes [`validate_name`].
pub fn is_valid_name(name: &str) -> bool {
    validate_name("name", name).is_ok()
}

/// Shorten untrusted text before it goes into an error message.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "_", "A_1", "agent_web01", "_x9"] {
            assert!(validate_name("n", ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a b", "a:b", "é", "a.b", "*"] {
            let e = validate_name("service", bad).unwrap_err();
            assert_eq!(e.field, "service");
        }
        assert!(validate_name("n", &"a".repeat(MAX_NAME_LEN)).is_ok());
        let e = validate_name("n", &"a".repeat(MAX_NAME_LEN + 1)).unwrap_err();
        assert!(e.reason.contains("at most"), "{e}");
    }

    #[test]
    fn commands() {
        for ok in ["PING", "A1", "_X", "9"] {
            assert!(validate_command(ok).is_ok(), "{ok}");
        }
        for bad in ["", "ping", "Ping", "A-B", "A B"] {
            assert!(validate_command(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(100);
        assert!(clip(&s).ends_with('…'));
    }
}
