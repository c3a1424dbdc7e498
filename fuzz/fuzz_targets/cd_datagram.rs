//! Fuzz target `cd_datagram`: one `cd:` message per UDP/Unix datagram (`parse_datagram`), with
//! and without a shared secret.
//!
//! Properties: never panics; an oversize datagram is refused, never truncated; without a
//! secret a datagram decodes exactly as `parse` decodes the line; with a secret an accepted
//! datagram carried it and it is stripped.
//!
//! Input layout: byte 0 selects the size limit (the UDP limit, the Unix limit, or a small one
//! to reach the boundary); the rest is the datagram.
#![no_main]

use cd_wire::{
    parse, parse_datagram, DatagramError, SECRET_CODE_PARAM, UDP_MAX_DATAGRAM, UNIX_MAX_DATAGRAM,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "s3cret";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, datagram)) = data.split_first() else {
        return;
    };
    let max = match sel % 3 {
        0 => UDP_MAX_DATAGRAM,
        1 => UNIX_MAX_DATAGRAM,
        _ => 32,
    };
    let open = parse_datagram(datagram, max, None);
    if datagram.len() > max {
        assert!(
            matches!(open, Err(DatagramError::TooLong { length, .. }) if length == datagram.len()),
            "oversize datagram not refused: {open:?}"
        );
        return;
    }
    match (&open, parse(datagram)) {
        (Ok(a), Ok(b)) => assert_eq!(a, &b),
        (Err(DatagramError::Parse(_)), Err(_)) => {}
        (a, b) => panic!("parse_datagram {a:?} but parse {b:?}"),
    }
    match parse_datagram(datagram, max, Some(SECRET)) {
        Ok(m) => {
            assert_eq!(m.param(SECRET_CODE_PARAM), None, "secret not stripped");
            let carried = open.as_ref().ok().and_then(|o| o.param(SECRET_CODE_PARAM));
            assert_eq!(carried, Some(SECRET), "accepted without the secret");
        }
        Err(DatagramError::MissingSecret | DatagramError::WrongSecret) => {
            assert!(
                open.is_ok(),
                "secret error on a datagram that does not parse"
            );
        }
        Err(_) => assert!(open.is_err(), "secret check failed a parsable datagram"),
    }
});
