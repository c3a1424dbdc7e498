//! The acknowledgement line: `node:svc/COMMS_ACK comms_ack=EPOCH.STREAM:1-40,42,45-50`.
//!
//! Sent by a receiving transport to the sender's address (at-most-once: a lost ack only
//! causes a resend, which the receiver acknowledges again), one line per sender stream per
//! flush, with the settled positions compressed into ranges.

/// Encode sorted-or-not positions as `a-b,c,...` (sorted, merged).
pub fn encode_ranges(ns: &mut [u64]) -> String {
    ns.sort_unstable();
    let mut out = String::new();
    let mut i = 0;
    while i < ns.len() {
        let start = ns[i];
        let mut end = start;
        while i + 1 < ns.len() && (ns[i + 1] == end + 1 || ns[i + 1] == end) {
            i += 1;
            end = ns[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// The value of `comms_ack`.
pub fn encode_ack(epoch: &str, stream: u64, ns: &mut [u64]) -> String {
    format!("{epoch}.{stream}:{}", encode_ranges(ns))
}

/// A parsed acknowledgement: epoch, stream, inclusive position ranges.
pub type Ack<'a> = (&'a str, u64, Vec<(u64, u64)>);

/// Parse `EPOCH.STREAM:RANGES` into (epoch, stream, inclusive ranges). Ranges longer than
/// `max_span` are refused (a peer cannot make us iterate forever).
pub fn parse_ack(value: &str, max_span: u64) -> Option<Ack<'_>> {
    let (head, ranges) = value.split_once(':')?;
    let (epoch, stream) = head.rsplit_once('.')?;
    let stream = stream.parse().ok()?;
    let mut out = Vec::new();
    for part in ranges.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let a = part.parse().ok()?;
                (a, a)
            }
        };
        if b < a || b - a > max_span {
            return None;
        }
        out.push((a, b));
    }
    Some((epoch, stream, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let mut ns = vec![5, 1, 2, 3, 42, 7, 6, 3];
        let v = encode_ack("ep", 4, &mut ns);
        assert_eq!(v, "ep.4:1-3,5-7,42");
        let (e, s, r) = parse_ack(&v, 1000).unwrap();
        assert_eq!((e, s), ("ep", 4));
        assert_eq!(r, vec![(1, 3), (5, 7), (42, 42)]);
        assert!(parse_ack("ep.4:9-1", 1000).is_none());
        assert!(parse_ack("ep.4:1-100000", 1000).is_none());
        assert!(parse_ack("garbage", 1000).is_none());
    }
}
