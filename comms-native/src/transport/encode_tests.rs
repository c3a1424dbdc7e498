//! [`Encoded`] writes exactly what `to_wire` + the serializer write.

use std::time::Duration;

use comms_core::backend::WireFields;
use comms_core::{Address, Destination, Message, MessageId, Scope};

use super::*;
use crate::transport::mapping::to_wire;
use cd_wire::WireMessage;

fn old_line(msg: &Message, origin: Option<&Address>, seq: Option<&Seq<'_>>) -> String {
    let mut w: WireMessage = to_wire(msg, origin);
    if let Some(s) = seq {
        w.set_param(P_SEQ, format!("{}.{}.{}", s.epoch, s.stream, s.n));
        w.set_param(P_BASE, s.base.to_string());
        if s.last {
            w.set_param(P_LAST, "1");
        }
    }
    format!("{}\n", w.to_line().unwrap())
}

fn text(b: &Bytes) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn samples() -> Vec<(Message, Option<Address>)> {
    let b = Address::new("vm", "b").unwrap();
    let plain = Message::new("DATA", b.clone()).unwrap();
    let early = Message::new("X", Destination::Service("svc".into()))
        .unwrap()
        .with_param("a", "1")
        .with_param("Z", "upper sorts first")
        .with_param("cache", "mine")
        .with_param("comms", "short")
        .with_param("comms_x", "between")
        .with_param("p", "x;y")
        .with_param("q", "\"quoted\\ back\nline");
    let mut full = Message::new("FULL", Destination::Broadcast(Scope::All))
        .unwrap()
        .with_param("zz", "last")
        .with_ttl(Duration::from_millis(1500), true)
        .at_most_once();
    full.set_hops(3);
    full.correlation = Some(MessageId::new());
    full.trace = Some("00-abc-def-01".into());
    let node = Message::new("N", Destination::Broadcast(Scope::Node))
        .unwrap()
        .with_param("comms_lz", "after last")
        .with_param("comms_sz", "after seq");
    vec![
        (plain, None),
        (early.clone(), None),
        (early, Some(Address::new("vm", "origin").unwrap())),
        (full, Some(b)),
        (node, None),
    ]
}

#[test]
fn same_bytes_as_to_wire_and_serialize() {
    for (msg, origin) in samples() {
        let e = Encoded::new(&msg, origin.as_ref()).unwrap();
        assert_eq!(
            text(&e.clone().plain()),
            old_line(&msg, origin.as_ref(), None)
        );
        for last in [false, true] {
            let seq = Seq {
                epoch: "5eed",
                stream: 12,
                n: 3456,
                base: 3400,
                last,
            };
            assert_eq!(
                text(&e.line(&seq)),
                old_line(&msg, origin.as_ref(), Some(&seq))
            );
        }
    }
}

#[test]
fn refuses_what_the_serializer_refuses() {
    let mut m = Message::new("X", Destination::Service("svc".into())).unwrap();
    m.params.insert("bad-name".into(), "v".into());
    assert!(matches!(
        Encoded::new(&m, None),
        Err(SerializeError::InvalidParamName(_))
    ));
    let mut m = Message::new("X", Destination::Service("svc".into())).unwrap();
    m.params.insert("p".into(), "a\0b".into());
    assert!(matches!(
        Encoded::new(&m, None),
        Err(SerializeError::NulInValue(_))
    ));
}
