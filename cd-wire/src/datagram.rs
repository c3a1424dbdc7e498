//! Datagrams (UDP and Unix datagram, docs/PROTOCOL.md §1.4): one message per datagram.
//!
//! Differences from the C++, on purpose: an oversize datagram is refused, never truncated
//! (the C++ delivers the truncated message); and when a secret is configured, `secret_code`
//! is **stripped** from the message after the check (the C++ forwards the secret to the
//! destination service). To detect oversize datagrams, receive into a buffer of at least
//! `max_len + 1` bytes: the OS truncates silently to the buffer size.

use crate::error::DatagramError;
use crate::parse;
use crate::wire::WireMessage;

/// Maximum UDP datagram accepted by the Communicator daemon.
pub const UDP_MAX_DATAGRAM: usize = 1024;
/// Maximum Unix datagram (64 KiB).
pub const UNIX_MAX_DATAGRAM: usize = 64 * 1024;
/// The parameter carrying the shared secret.
pub const SECRET_CODE_PARAM: &str = "secret_code";

/// Parses one datagram of at most `max_len` bytes ([`UDP_MAX_DATAGRAM`] for UDP). With a
/// `secret`, the datagram must carry `secret_code=<secret>`, which is then removed.
pub fn parse_datagram(
    datagram: &[u8],
    max_len: usize,
    secret: Option<&str>,
) -> Result<WireMessage, DatagramError> {
    if datagram.len() > max_len {
        return Err(DatagramError::TooLong {
            length: datagram.len(),
            max: max_len,
        });
    }
    let mut msg = parse(datagram)?;
    if let Some(secret) = secret {
        let given = msg
            .params
            .remove(SECRET_CODE_PARAM)
            .ok_or(DatagramError::MissingSecret)?;
        if !constant_time_eq(given.as_bytes(), secret.as_bytes()) {
            return Err(DatagramError::WrongSecret);
        }
    }
    Ok(msg)
}

/// Compares secrets without an early exit on the first differing byte (the length is not
/// hidden). Shared with the daemon's admin-token check.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit_refuses_never_truncates() {
        let mut d = b"PING p=".to_vec();
        d.resize(UDP_MAX_DATAGRAM, b'x');
        assert!(parse_datagram(&d, UDP_MAX_DATAGRAM, None).is_ok());
        d.push(b'x');
        assert!(matches!(
            parse_datagram(&d, UDP_MAX_DATAGRAM, None),
            Err(DatagramError::TooLong {
                length: 1025,
                max: 1024
            })
        ));
        assert!(parse_datagram(&d, UNIX_MAX_DATAGRAM, None).is_ok());
    }

    #[test]
    fn secret_checked_and_stripped() {
        let d = b"./PING a=1;secret_code=s3cret\n";
        let m = parse_datagram(d, UDP_MAX_DATAGRAM, Some("s3cret")).ok();
        assert_eq!(m.as_ref().and_then(|m| m.param(SECRET_CODE_PARAM)), None);
        assert_eq!(
            m.and_then(|m| m.to_line().ok()).as_deref(),
            Some("./PING a=1")
        );
        assert!(matches!(
            parse_datagram(b"PING secret_code=nope", 1024, Some("s3cret")),
            Err(DatagramError::WrongSecret)
        ));
        assert!(matches!(
            parse_datagram(b"PING a=1", 1024, Some("s3cret")),
            Err(DatagramError::MissingSecret)
        ));
        // Without a configured secret the parameter is left alone.
        let m = parse_datagram(d, 1024, None).ok();
        assert_eq!(
            m.as_ref().and_then(|m| m.param(SECRET_CODE_PARAM)),
            Some("s3cret")
        );
        assert!(matches!(
            parse_datagram(b"", 1024, None),
            Err(DatagramError::Parse(_))
        ));
    }
}
