//! Hot-path helpers for the router: read only the head of a line, and re-stamp a line
//! without re-serializing its parameters.
//!
//! [`peek_route`] scans the `<` prefix and `[server:][service/]COMMAND`, allocates nothing,
//! and checks UTF-8 and NUL only in that head: **the parameters are not parsed or checked**,
//! so a line that peeks fine may still fail [`parse`](crate::parse).
//!
//! [`restamp`] writes `<server:service ` + the head (rebuilt as the serializer writes it, so
//! a server without a service is dropped) + the parameter text verbatim. It is byte-identical
//! to `parse` → set `sent_from_*` → [`serialize`](crate::serialize) exactly when that full path
//! succeeds and the input's parameter text is canonical, i.e. equal to what the serializer
//! would write for it: names strictly byte-ascending (no duplicates), no trailing `;`, each
//! value escaped/quoted exactly as the serializer does. Any line our serializer wrote (or a
//! stock C++ daemon, which has the same serializer) is canonical. On other lines restamp
//! keeps the sender's parameter spelling, which every receiver parses to the same values,
//! except that restamp does not reject invalid parameter text: the receiver will.

use std::ops::Range;

use bytes::BufMut;

use crate::error::{ParseError, RestampError};
use crate::head::{scan_head, trim_bounds};
use crate::serialize::{write_address, write_stamp};
use crate::wire::{validate_address, validate_command, validate_sent_from};

/// The routing-relevant head of a line, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHead<'a> {
    /// Span of the whole `<sfs:sfv ` prefix (including `<` and the space) in the input
    /// line, if present.
    pub prefix: Option<Range<usize>>,
    /// Sent-from server of the prefix (empty if no prefix).
    pub sent_from_server: &'a str,
    /// Sent-from service of the prefix (empty if no prefix).
    pub sent_from_service: &'a str,
    /// Destination server (empty if none).
    pub server: &'a str,
    /// Destination service (empty if none).
    pub service: &'a str,
    /// The command (not validated, as on parse).
    pub command: &'a str,
    /// The parameter text after the command's space, unparsed and unchecked (may be empty).
    pub params: &'a [u8],
}

/// Extracts the head of `line` without parsing parameters or allocating.
///
/// Same trimming and head rules (and errors) as [`parse`](crate::parse); JSON lines give
/// [`ParseError::JsonNotPeekable`].
pub fn peek_route(line: &[u8]) -> Result<RouteHead<'_>, ParseError> {
    let (start, end) = trim_bounds(line);
    let t = &line[start..end];
    match t.first() {
        None => return Err(ParseError::Empty),
        Some(b'{') => return Err(ParseError::JsonNotPeekable),
        Some(_) => {}
    }
    let h = scan_head(t, start)?;
    let head_bytes = &t[..h.end()];
    if let Some(i) = memchr::memchr(0, head_bytes) {
        return Err(ParseError::NulByte { offset: start + i });
    }
    let head = std::str::from_utf8(head_bytes).map_err(|e| ParseError::InvalidUtf8 {
        offset: start + e.valid_up_to(),
    })?;
    let params = t.get(h.end() + 1..).unwrap_or_default();
    Ok(RouteHead {
        prefix: h.prefix.map(|r| r.start + start..r.end + start),
        sent_from_server: &head[h.sent_from_server],
        sent_from_service: &head[h.sent_from_service],
        server: &head[h.server],
        service: &head[h.service],
        command: &head[h.command],
        params,
    })
}

/// Appends `line` to `out`, re-stamped with `<server:service ` (replacing any prefix), without
/// its `\n`. See the module docs for when this equals a full parse + serialize.
///
/// Validates the stamp and the head names as the serializer would; on error nothing is written.
pub fn restamp<B: BufMut + ?Sized>(
    line: &[u8],
    server: &str,
    service: &str,
    out: &mut B,
) -> Result<(), RestampError> {
    restamp_head(&peek_route(line)?, server, service, out)
}

/// [`restamp`] for a head the router already peeked: no second scan of the line.
pub fn restamp_head<B: BufMut + ?Sized>(
    head: &RouteHead<'_>,
    server: &str,
    service: &str,
    out: &mut B,
) -> Result<(), RestampError> {
    validate_sent_from("sent_from_server", server)?;
    validate_sent_from("sent_from_service", service)?;
    validate_command(head.command)?;
    validate_address("server", head.server)?;
    validate_address("service", head.service)?;
    write_stamp(server, service, out);
    write_address(head.server, head.service, head.command, out);
    if !head.params.is_empty() {
        out.put_u8(b' ');
        out.put_slice(head.params);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, serialize};
    use bytes::BytesMut;
    use proptest::prelude::*;

    #[test]
    fn peek_fields() {
        let line = b"  <monster:tcc communicatord:communicator_test/DATA filename=/x;\xff\r\n";
        let h = peek_route(line);
        let Ok(h) = h else { panic!("{h:?}") };
        assert_eq!(h.prefix, Some(2..15));
        assert_eq!(
            (h.sent_from_server, h.sent_from_service),
            ("monster", "tcc")
        );
        assert_eq!(
            (h.server, h.service, h.command),
            ("communicatord", "communicator_test", "DATA")
        );
        assert_eq!(h.params, b"filename=/x;\xff");
        let h = peek_route(b"CMD").ok();
        assert_eq!(
            h.map(|h| (h.prefix, h.command, h.params.len())),
            Some((None, "CMD", 0))
        );
    }

    #[test]
    fn peek_rejects_like_parse() {
        for bad in [
            &b""[..],
            b"<abc CMD",
            b"<abc",
            b":CMD",
            b"a:b:CMD",
            b"svc/",
            b"svc/CMD/x",
        ] {
            assert!(peek_route(bad).is_err());
        }
        assert!(matches!(
            peek_route(b"{\"command\":\"X\"}"),
            Err(ParseError::JsonNotPeekable)
        ));
        assert!(matches!(
            peek_route(b"C\xffD x=1"),
            Err(ParseError::InvalidUtf8 { offset: 1 })
        ));
        assert!(matches!(
            peek_route(b"C\0D"),
            Err(ParseError::NulByte { offset: 1 })
        ));
    }

    fn rs(line: &str, srv: &str, svc: &str) -> Result<String, RestampError> {
        let mut out = BytesMut::new();
        restamp(line.as_bytes(), srv, svc, &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn restamp_examples() {
        // §7: a client's own prefix is replaced by the stamp.
        let l = "<evil:mallory probe_b/PROBE_PING x=\"a;b\";y=1;z=line\\nbreak\n";
        assert_eq!(
            rs(l, "vm", "probe_a").ok().as_deref(),
            Some("<vm:probe_a probe_b/PROBE_PING x=\"a;b\";y=1;z=line\\nbreak")
        );
        assert_eq!(rs("a:CMD", "vm", "x").ok().as_deref(), Some("<vm:x CMD"));
        assert_eq!(rs("<a:b CMD", "", "").ok().as_deref(), Some("CMD"));
        assert!(matches!(
            rs("hello", "vm", "x"),
            Err(RestampError::Invalid(_))
        ));
        assert!(matches!(
            rs("CMD", "v-m", "x"),
            Err(RestampError::Invalid(_))
        ));
        assert!(matches!(rs("<abc", "vm", "x"), Err(RestampError::Head(_))));
        // Non-canonical params are kept verbatim (full path would sort them).
        assert_eq!(
            rs("CMD b=1;a=2;", "vm", "x").ok().as_deref(),
            Some("<vm:x CMD b=1;a=2;")
        );
    }

    fn full_path(line: &[u8], srv: &str, svc: &str) -> Option<Vec<u8>> {
        let mut m = parse(line).ok()?;
        m.sent_from_server = srv.to_owned();
        m.sent_from_service = svc.to_owned();
        let mut out = Vec::new();
        serialize(&m, &mut out).ok()?;
        Some(out)
    }

    proptest! {
        /// On canonical lines (anything our serializer wrote), restamp == parse+stamp+serialize.
        #[test]
        fn restamp_equals_full_path(
            m in crate::proptests::arb_message(),
            srv in crate::proptests::arb_sent_from(),
            svc in crate::proptests::arb_sent_from(),
        ) {
            let mut line = Vec::new();
            prop_assert!(serialize(&m, &mut line).is_ok());
            let full = full_path(&line, &srv, &svc);
            let mut fast = Vec::new();
            let r = restamp(&line, &srv, &svc, &mut fast);
            let mut via_head = Vec::new();
            if let Ok(h) = peek_route(&line) {
                prop_assert!(restamp_head(&h, &srv, &svc, &mut via_head).is_ok());
            }
            prop_assert_eq!(&via_head, &fast);
            match full {
                Some(full) => {
                    prop_assert!(r.is_ok());
                    prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&full));
                }
                // Row 13 quirk: the full path cannot parse the line back; restamp copies it.
                None => prop_assert!(r.is_ok()),
            }
        }
    }
}
