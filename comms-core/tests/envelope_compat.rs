//! Envelope compatibility across releases (issue 20, point 8): during a rolling upgrade, this
//! release reads what the previous release wrote and what a later release may write (extra
//! optional fields), and the previous release reads what this one writes.

use comms_core::backend::WireFields;
use comms_core::envelope::{self, ENVELOPE_VERSION, V1_FIELDS};
use comms_core::{Address, Destination, Error, Message};

/// Envelopes as the previous release (0.1, the stop-25 landing) wrote them: every field, and
/// the minimal form other languages write.
const PREVIOUS_RELEASE: [&str; 2] = [
    r#"{"v":1,"id":"01KBMZ3QYH8Q4V1J6W2ZC5N7RA","command":"PUT","to":"web01:store","from":"srv:server","params":{"key":"a;b","n":"7"},"correlation":null,"hops":1,"trace":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","mode":"at_least_once","ttl_ms":1500,"report":true}"#,
    r#"{"v":1,"id":"abc-1","command":"HELLO","to":"store"}"#,
];

/// The previous release's reader, as it was: the same fields, unknown ones refused.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PreviousWire {
    v: u32,
    id: String,
    command: String,
    to: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    params: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    correlation: Option<String>,
    #[serde(default)]
    hops: u8,
    #[serde(default)]
    trace: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    ttl_ms: Option<u64>,
    #[serde(default)]
    report: bool,
}

#[test]
fn what_the_previous_release_wrote_is_read() {
    let full = envelope::decode(PREVIOUS_RELEASE[0].as_bytes(), 1 << 20).expect("full envelope");
    assert_eq!(full.command, "PUT");
    assert_eq!(full.param("key"), Some("a;b"));
    assert_eq!(full.from(), Some(&Address::new("srv", "server").unwrap()));
    assert_eq!(full.hops(), 1);
    assert!(full.report);
    let minimal = envelope::decode(PREVIOUS_RELEASE[1].as_bytes(), 1 << 20).expect("minimal");
    assert_eq!(minimal.to, Destination::Service("store".into()));
}

#[test]
fn the_previous_release_reads_what_this_one_writes() {
    let mut m = Message::new("PUT", Address::new("web01", "store").unwrap())
        .unwrap()
        .with_param("key", "v")
        .with_ttl(std::time::Duration::from_secs(2), true);
    m.set_from(Some(Address::new("srv", "server").unwrap()));
    m.trace = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let bytes = envelope::encode(&m).unwrap();
    let old: PreviousWire = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "the previous release refuses {}: {e}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(old.v, 1);
    assert_eq!(old.command, "PUT");
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).unwrap();
    for key in object.keys() {
        assert!(
            V1_FIELDS.contains(&key.as_str()),
            "`{key}` is not a version-1 field"
        );
    }
    assert_eq!(
        ENVELOPE_VERSION, 1,
        "a new version needs a new fixture set and a plan"
    );
}

#[test]
fn a_later_release_may_add_optional_fields() {
    let later = r#"{"v":1,"id":"x1","command":"PUT","to":"store","seq":42,"deadline_ms":1700000000000,"meta":{"a":[1,2,{"b":null}]}}"#;
    let m = envelope::decode(later.as_bytes(), 1 << 20).expect("extra fields are ignored");
    assert_eq!(m.command, "PUT");
    // Re-encoded, they are gone: this release writes version-1 fields only.
    let again = String::from_utf8(envelope::encode(&m).unwrap()).unwrap();
    assert!(!again.contains("seq") && !again.contains("meta"), "{again}");
}

#[test]
fn a_newer_version_is_refused_saying_so() {
    let newer = r#"{"v":2,"id":"x1","command":"PUT","to":"store"}"#;
    match envelope::decode(newer.as_bytes(), 1 << 20) {
        Err(Error::Invalid(i)) => {
            assert_eq!(i.field, "v");
            assert!(i.reason.contains("version 2 is newer"), "{}", i.reason);
            assert!(i.reason.contains("upgrade the receiver"), "{}", i.reason);
        }
        other => panic!("version 2 accepted: {other:?}"),
    }
}
