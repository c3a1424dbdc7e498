//! Is a line's parameter text already what the serializer would write?
//!
//! The C++ daemon re-serializes every message it forwards, so a receiver sees parameters
//! byte-sorted and canonically escaped (docs/PROTOCOL.md §7: `y=1;x="a;b"` arrives as
//! `x="a;b";y=1`). [`restamp_head`](cd_wire::restamp_head) copies the parameter text
//! verbatim, which equals the C++ output exactly when that text is canonical. This scan
//! decides that in one pass without allocating; the router re-serializes only lines that
//! fail it (a stock or comms sender always writes canonical text, so that is rare).
//!
//! Canonical means: names valid (`[A-Za-z_][A-Za-z0-9_]*`) and strictly byte-ascending, no
//! trailing `;`, each value quoted iff it contains `;` or starts with `"`, backslashes only
//! in the escapes the serializer writes (`\\`, `\n`, `\r`, and `\"` inside quotes), valid
//! UTF-8 without NUL (the serializer never writes either). So a line with an invalid UTF-8 or
//! NUL byte in its parameters is never copied verbatim: it goes the full parse path, which
//! refuses it with the reason (and a receiver never sees it).

/// True when `params` (the text after the command's space) is canonical.
pub(crate) fn is_canonical(params: &[u8]) -> bool {
    let mut i = 0;
    let mut prev: &[u8] = &[];
    let n = params.len();
    if n == 0 {
        return true;
    }
    if params.contains(&0) || std::str::from_utf8(params).is_err() {
        return false;
    }
    loop {
        // Name.
        let start = i;
        while i < n && params[i] != b'=' {
            let b = params[i];
            let ok = b == b'_' || b.is_ascii_alphabetic() || (i > start && b.is_ascii_digit());
            if !ok {
                return false;
            }
            i += 1;
        }
        if i == start || i == n {
            return false;
        }
        let name = &params[start..i];
        if !prev.is_empty() && name <= prev {
            return false;
        }
        prev = name;
        i += 1; // '='
                // Value.
        if i < n && params[i] == b'"' {
            i += 1;
            let content_start = i;
            let mut has_semicolon = false;
            loop {
                match params.get(i) {
                    None => return false,
                    Some(b'"') => break,
                    Some(b'\\') => {
                        if !matches!(params.get(i + 1), Some(b'\\' | b'n' | b'r' | b'"')) {
                            return false;
                        }
                        i += 2;
                    }
                    Some(b';') => {
                        has_semicolon = true;
                        i += 1;
                    }
                    Some(_) => i += 1,
                }
            }
            let starts_with_quote = params[content_start..].starts_with(b"\\\"");
            if !has_semicolon && !starts_with_quote {
                return false;
            }
            i += 1; // closing quote
        } else {
            while i < n && params[i] != b';' {
                if params[i] == b'\\' {
                    if !matches!(params.get(i + 1), Some(b'\\' | b'n' | b'r')) {
                        return false;
                    }
                    i += 1;
                }
                i += 1;
            }
        }
        match params.get(i) {
            None => return true,
            Some(b';') if i + 1 < n => i += 1,
            Some(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cd_wire::{parse, serialize};
    use proptest::prelude::*;

    #[test]
    fn examples() {
        for ok in [
            "",
            "x=\"a;b\";y=1;z=line\\nbreak",
            "a=;b=2",
            "a=x\"y",
            "url=\"\\\"quoted URL\\\"\"",
            "p=a\\\\tb",
        ] {
            assert!(is_canonical(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "y=1;x=\"a;b\"",
            "a=1;a=2",
            "p=v;",
            "a=\"abc\"",
            "a=\"\"",
            "p=a\\tb",
            "1p=v",
            "p",
            "=v",
            "p=\"a;b",
            "p=\"a;b\"x",
            "p=a\0b",
            "p=\"a;\0\"",
        ] {
            assert!(!is_canonical(bad.as_bytes()), "{bad}");
        }
        for bad in [&b"p=\xff"[..], b"p=\"a;\xc3\"", b"a=1;b=\xe2\x82"] {
            assert!(!is_canonical(bad), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever the scan accepts, parse + serialize gives back byte for byte.
        #[test]
        fn canonical_means_round_trip(p in "[abz_1;=\"\\\\nx ]{0,24}") {
            if is_canonical(p.as_bytes()) {
                let line = if p.is_empty() { "CMD".to_owned() } else { format!("CMD {p}") };
                let m = parse(line.trim_end().as_bytes());
                prop_assert!(m.is_ok(), "{line:?} {m:?}");
                let mut out = Vec::new();
                if let Ok(m) = m {
                    prop_assert!(serialize(&m, &mut out).is_ok());
                }
                if !p.ends_with(' ') {
                    prop_assert_eq!(String::from_utf8_lossy(&out), line);
                }
            }
        }
    }
}
