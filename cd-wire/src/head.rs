//! Scanning of the message head: the optional `<sfs:sfv ` prefix and `[server:][service/]COMMAND`.
//!
//! Shared by the full parser and by [`peek_route`](crate::peek_route). Works on bytes and only
//! looks at ASCII delimiters, so every span it returns starts and ends on a UTF-8 boundary.

use std::ops::Range;

use crate::error::ParseError;

/// Byte spans of the head inside a trimmed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSpans {
    /// Whole prefix including `<` and the closing space, if present.
    pub prefix: Option<Range<usize>>,
    pub sent_from_server: Range<usize>,
    pub sent_from_service: Range<usize>,
    pub server: Range<usize>,
    pub service: Range<usize>,
    pub command: Range<usize>,
}

impl HeadSpans {
    /// Index just after the command (a space or the end of the line).
    pub fn end(&self) -> usize {
        self.command.end
    }
}

/// Whitespace as C `iswspace` in the C locale: space, `\t`, `\n`, `\v`, `\f`, `\r`.
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `(start, end)` of `line` without leading/trailing C whitespace.
pub fn trim_bounds(line: &[u8]) -> (usize, usize) {
    let start = line
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(start, |i| i + 1);
    (start, end)
}

/// Scans the head of a trimmed, non-empty line. `base` is added to error offsets.
pub fn scan_head(s: &[u8], base: usize) -> Result<HeadSpans, ParseError> {
    let mut pos = 0;
    let mut prefix = None;
    let mut sfs = 0..0;
    let mut sfv = 0..0;
    if s.first() == Some(&b'<') {
        let colon = s[1..]
            .iter()
            .position(|&b| b == b':' || b == b' ')
            .map(|k| k + 1)
            .ok_or(ParseError::UnterminatedSentFrom)?;
        if s[colon] == b' ' {
            return Err(ParseError::SpaceInSentFromServer {
                offset: base + colon,
            });
        }
        let space = s[colon + 1..]
            .iter()
            .position(|&b| b == b' ')
            .map(|k| k + colon + 1)
            .ok_or(ParseError::UnterminatedSentFrom)?;
        sfs = 1..colon;
        sfv = colon + 1..space;
        pos = space + 1;
        prefix = Some(0..pos);
    }
    let mut server = pos..pos;
    let mut service = pos..pos;
    let (mut has_server, mut has_service) = (false, false);
    let mut seg = pos;
    let mut i = pos;
    while i < s.len() && s[i] != b' ' {
        match s[i] {
            b':' => {
                if has_server || has_service {
                    return Err(ParseError::UnexpectedServer { offset: base + i });
                }
                if seg == i {
                    return Err(ParseError::EmptyServer { offset: base + i });
                }
                server = seg..i;
                has_server = true;
                seg = i + 1;
            }
            b'/' => {
                if has_service {
                    return Err(ParseError::RepeatedService { offset: base + i });
                }
                if seg == i {
                    return Err(ParseError::EmptyService { offset: base + i });
                }
                service = seg..i;
                has_service = true;
                seg = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if seg == i {
        return Err(ParseError::EmptyCommand);
    }
    if !has_server {
        server = seg..seg;
    }
    if !has_service {
        service = seg..seg;
    }
    Ok(HeadSpans {
        prefix,
        sent_from_server: sfs,
        sent_from_service: sfv,
        server,
        service,
        command: seg..i,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_is_c_locale_iswspace() {
        assert_eq!(trim_bounds(b"  STOP  \r"), (2, 6));
        assert_eq!(trim_bounds(b"\x0b\x0cX\t\n"), (2, 3));
        assert_eq!(trim_bounds(b" \t\r\n"), (4, 4));
        assert_eq!(trim_bounds(b""), (0, 0));
        // U+00A0 is not C-locale whitespace: kept.
        assert_eq!(trim_bounds("X\u{a0}".as_bytes()), (0, 3));
    }

    #[test]
    fn spans() {
        let s = b"<a:b srv:svc/CMD x=1";
        let h = scan_head(s, 0).ok();
        let h = h.as_ref();
        assert_eq!(h.and_then(|h| h.prefix.clone()), Some(0..5));
        assert_eq!(h.map(|h| &s[h.server.clone()]), Some(&b"srv"[..]));
        assert_eq!(h.map(|h| &s[h.service.clone()]), Some(&b"svc"[..]));
        assert_eq!(h.map(|h| &s[h.command.clone()]), Some(&b"CMD"[..]));
        assert_eq!(h.map(HeadSpans::end), Some(16));
    }
}
