//! The broker envelope decoder (`comms_core::envelope::decode`, what every RabbitMQ and Kafka
//! body goes through) against the hostile set: each input is an error that names the field or
//! says what is wrong, never a panic or a stack overflow, and never an accepted message.
#![allow(clippy::unwrap_used)]

use comms_core::envelope::{decode, encode};
use comms_core::{Destination, Error, Message};

const MAX: usize = 1 << 20;

/// Decodes `input`, which must fail; returns (field, reason) of the `Invalid` error.
fn refused(input: &[u8], max: usize) -> (String, String) {
    match decode(input, max) {
        Err(Error::Invalid(i)) => (i.field.clone(), i.reason.clone()),
        other => panic!(
            "{:?} (len {}): expected Invalid, got {other:?}",
            String::from_utf8_lossy(&input[..input.len().min(80)]),
            input.len()
        ),
    }
}

#[test]
fn not_an_envelope() {
    for input in [
        &b""[..],
        b"   ",
        b"not json at all",
        b"null",
        b"42",
        b"\"a string\"",
        b"[]",
        // The fields in order, as an array: serde reads a struct from it; the format does not.
        b"[1,\"x1\",\"SEQ\",\"b\"]",
        b" \n[1,\"x1\",\"SEQ\",\"b\",null,{},null,0,null,\"at_least_once\",null,false]",
        b"{}",
        b"{\"v\":1",
        b"{\"v\":1,\"id\":\"a\",\"command\":\"X\",\"to\":\"s\"} trailing",
    ] {
        let (field, reason) = refused(input, MAX);
        assert_eq!(field, "envelope", "{reason}");
        assert!(reason.contains("not a comms envelope"), "{reason}");
    }
}

#[test]
fn invalid_utf8_and_nul_bytes() {
    let cases: &[&[u8]] = &[
        b"\xff\xfe",
        b"{\"v\":1,\"id\":\"a\",\"command\":\"X\",\"to\":\"s\",\"params\":{\"p\":\"\xc3\"}}",
        b"{\"v\":1,\"id\":\"a\",\"command\":\"X\",\"to\":\"s\",\"params\":{\"p\":\"a\0b\"}}",
        b"\0",
    ];
    for input in cases {
        let (field, reason) = refused(input, MAX);
        assert_eq!(field, "envelope", "{reason}");
    }
    // An escaped NUL is valid JSON; where the model forbids it the field is named.
    let (field, _) = refused(br#"{"v":1,"id":"a","command":"X\u0000","to":"s"}"#, MAX);
    assert_eq!(field, "command");
}

/// serde_json's recursion limit (128) turns any depth into an error, however deep, wherever
/// the nesting is: at the top, in `params`, in a value, in `to`.
#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    const DEEP: usize = 100_000;
    let prefixes = [
        "",
        r#"{"v":1,"id":"a","command":"X","to":"s","params":"#,
        r#"{"v":1,"id":"a","command":"X","to":"s","params":{"p":"#,
        r#"{"v":1,"id":"a","command":"X","to":"#,
        r#"{"v":1,"id":"a","command":"X","to":"s","extra":"#,
    ];
    for prefix in prefixes {
        for open in ["[", "{\"a\":"] {
            let mut doc = prefix.to_owned();
            doc.push_str(&open.repeat(DEEP));
            let (field, reason) = refused(doc.as_bytes(), usize::MAX);
            assert_eq!(field, "envelope", "{prefix}{open}: {reason}");
        }
    }
    // Balanced too (a complete document), 100k deep.
    let balanced = format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP));
    refused(balanced.as_bytes(), usize::MAX);
}

#[test]
fn wrong_typed_fields_name_the_problem() {
    // (the field named, a part of the reason, the inputs refused so)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "envelope",
            "invalid type",
            &[
                r#"{"v":"1","id":"a","command":"X","to":"s"}"#,
                r#"{"v":1.5,"id":"a","command":"X","to":"s"}"#,
                r#"{"v":1,"id":5,"command":"X","to":"s"}"#,
                r#"{"v":1,"id":"a","command":["X"],"to":"s"}"#,
                r#"{"v":1,"id":"a","command":"X","to":5}"#,
                r#"{"v":1,"id":"a","command":"X","to":"s","params":[]}"#,
                r#"{"v":1,"id":"a","command":"X","to":"s","params":{"p":1}}"#,
                r#"{"v":1,"id":"a","command":"X","to":"s","params":{"p":null}}"#,
                r#"{"v":1,"id":"a","command":"X","to":"s","report":"yes"}"#,
            ],
        ),
        (
            "envelope",
            "invalid value",
            &[
                r#"{"v":-1,"id":"a","command":"X","to":"s"}"#,
                r#"{"v":99999999999,"id":"a","command":"X","to":"s"}"#,
                r#"{"v":1,"id":"a","command":"X","to":"s","hops":300}"#,
                r#"{"v":1,"id":"a","command":"X","to":"s","hops":-1}"#,
                r#"{"v":1,"id":"a","command":"X","to":"s","ttl_ms":-5}"#,
            ],
        ),
        (
            "envelope",
            "",
            &[
                r#"{"v":1,"id":"a","command":"X","to":"a:b:c"}"#,
                r#"{"v":1,"id":"a","command":"X","to":"s","from":"not an address"}"#,
            ],
        ),
        (
            "parameter name",
            "",
            &[r#"{"v":1,"id":"a","command":"X","to":"s","params":{"1p":"v"}}"#],
        ),
        (
            "envelope",
            "unknown variant",
            &[r#"{"v":1,"id":"a","command":"X","to":"s","mode":"bogus"}"#],
        ),
        (
            "trace",
            "",
            &[r#"{"v":1,"id":"a","command":"X","to":"s","trace":"\u0001"}"#],
        ),
        (
            "command",
            "",
            &[r#"{"v":1,"id":"a","command":"","to":"s"}"#],
        ),
        (
            "envelope",
            "duplicate field",
            &[r#"{"v":1,"id":"a","command":"X","to":"s","v":1}"#],
        ),
    ];
    for (field, reason_part, inputs) in cases {
        for input in *inputs {
            let (f, reason) = refused(input.as_bytes(), MAX);
            assert_eq!(&f, field, "{input}: {reason}");
            assert!(
                reason.contains(reason_part),
                "{input}: {reason:?} lacks {reason_part:?}"
            );
        }
    }
}

#[test]
fn oversize_is_refused_before_parsing() {
    let mut m = Message::new("BIG", Destination::Service("s".into())).unwrap();
    m = m.with_param("p", "x".repeat(10 << 20));
    let bytes = encode(&m).unwrap();
    match decode(&bytes, MAX) {
        Err(Error::TooLarge { size, max }) => assert_eq!((size, max), (bytes.len(), MAX)),
        other => panic!("{other:?}"),
    }
    // The same body is fine under a large enough limit.
    assert_eq!(decode(&bytes, usize::MAX).unwrap(), m);
}
