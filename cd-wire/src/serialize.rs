//! The serializer (`message::to_string`, docs/PROTOCOL.md §1.2).
//!
//! `[<sfs:sfv ][[server:]service/]COMMAND[ name=value(;name=value)*]`, parameters in byte
//! order. Values: single pass `\`→`\\`, LF→`\n`, CR→`\r`; quoted only when the value contains
//! `;` or starts with `"`, and only then `"`→`\"`. Everything else (tabs, UTF-8) is sent raw.
//!
//! Like the C++, a quoted value ending in `\` is written as-is although no parser can read it
//! back (§1.6 row 13), and the last value's trailing blanks are lost to the receiver's trim
//! (row 14): we stay wire compatible rather than invent an escape the C++ cannot read.

use bytes::BufMut;

use crate::error::SerializeError;
use crate::wire::WireMessage;

/// Appends the line for `msg` (without `\n`) to `out`. Validates first, so on error nothing
/// has been written.
pub fn serialize<B: BufMut + ?Sized>(msg: &WireMessage, out: &mut B) -> Result<(), SerializeError> {
    msg.validate()?;
    write_stamp(&msg.sent_from_server, &msg.sent_from_service, out);
    write_address(&msg.server, &msg.service, &msg.command, out);
    let mut sep = b' ';
    for (name, value) in &msg.params {
        out.put_u8(sep);
        sep = b';';
        out.put_slice(name.as_bytes());
        out.put_u8(b'=');
        write_value(value, out);
    }
    Ok(())
}

/// The line for `msg` as a `String` (without `\n`).
pub fn to_line(msg: &WireMessage) -> Result<String, SerializeError> {
    let mut out = Vec::with_capacity(64);
    serialize(msg, &mut out)?;
    // Only whole UTF-8 strings and ASCII were written, so this cannot fail; stay panic-free.
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// `<sfs:sfv ` if either part is non-empty.
pub(crate) fn write_stamp<B: BufMut + ?Sized>(sfs: &str, sfv: &str, out: &mut B) {
    if !sfs.is_empty() || !sfv.is_empty() {
        out.put_u8(b'<');
        out.put_slice(sfs.as_bytes());
        out.put_u8(b':');
        out.put_slice(sfv.as_bytes());
        out.put_u8(b' ');
    }
}

/// `[[server:]service/]COMMAND`; a server without a service is dropped (as the C++ does).
pub fn write_address<B: BufMut + ?Sized>(server: &str, service: &str, command: &str, out: &mut B) {
    if !service.is_empty() {
        if !server.is_empty() {
            out.put_slice(server.as_bytes());
            out.put_u8(b':');
        }
        out.put_slice(service.as_bytes());
        out.put_u8(b'/');
    }
    out.put_slice(command.as_bytes());
}

/// Writes one value, escaped and quoted as the C++ serializer does.
pub fn write_value<B: BufMut + ?Sized>(value: &str, out: &mut B) {
    let b = value.as_bytes();
    let quoted = b.first() == Some(&b'"') || memchr::memchr(b';', b).is_some();
    if quoted {
        out.put_u8(b'"');
    }
    // Most values need no escape: one vectorised scan, one copy.
    if memchr::memchr3(b'\\', b'\n', b'\r', b).is_none()
        && !(quoted && memchr::memchr(b'"', b).is_some())
    {
        out.put_slice(b);
        if quoted {
            out.put_u8(b'"');
        }
        return;
    }
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        let rep: &[u8] = match c {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'"' if quoted => b"\\\"",
            _ => continue,
        };
        out.put_slice(&b[run..i]);
        out.put_slice(rep);
        run = i + 1;
    }
    out.put_slice(&b[run..]);
    if quoted {
        out.put_u8(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn line(m: &WireMessage) -> String {
        match to_line(m) {
            Ok(s) => s,
            Err(e) => panic!("serialize failed: {e}"),
        }
    }

    #[test]
    fn header_rules() {
        assert_eq!(line(&WireMessage::new("CMD").with_server("a")), "CMD");
        assert_eq!(line(&WireMessage::new("CMD").with_service("s")), "s/CMD");
        assert_eq!(
            line(&WireMessage::new("CMD").with_server("*").with_service(".")),
            "*:./CMD"
        );
        assert_eq!(
            line(&WireMessage::new("CMD").with_sent_from("vm", "")),
            "<vm: CMD"
        );
        assert_eq!(
            line(&WireMessage::new("CMD").with_sent_from("", "svc")),
            "<:svc CMD"
        );
    }

    #[test]
    fn value_escaping() {
        let m = WireMessage::new("X")
            .with_param("a", "t\tab")
            .with_param("b", "x\"y")
            .with_param("c", "\"q")
            .with_param("d", "back\\slash")
            .with_param("e", "");
        assert_eq!(line(&m), "X a=t\tab;b=x\"y;c=\"\\\"q\";d=back\\\\slash;e=");
    }

    #[test]
    fn errors_write_nothing() {
        let mut out = BytesMut::new();
        let m = WireMessage::new("ok");
        assert!(matches!(
            serialize(&m, &mut out),
            Err(SerializeError::InvalidCommand(_))
        ));
        assert!(out.is_empty());
        let m = WireMessage::new("");
        assert_eq!(serialize(&m, &mut out), Err(SerializeError::EmptyCommand));
        let m = WireMessage::new("X").with_param("", "v");
        assert!(matches!(
            serialize(&m, &mut out),
            Err(SerializeError::InvalidParamName(_))
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn appends_to_bytesmut_and_vec() {
        let m = WireMessage::new("PING").with_param("a", "1");
        let mut bm = BytesMut::from(&b"x"[..]);
        let mut v = Vec::new();
        assert!(serialize(&m, &mut bm).is_ok() && serialize(&m, &mut v).is_ok());
        assert_eq!(&bm[..], b"xPING a=1");
        assert_eq!(v, b"PING a=1");
    }
}
