//! docs/PROTOCOL.md §1.6 test vectors (rows 1–14) and §7 observed behaviour of the C++ stack.

use crate::{parse, ParseError, WireMessage};

/// Every accepted input of the vectors; the decoder split tests reuse them.
pub(crate) const ACCEPTED: &[&str] = &[
    "images/REPROCESS url=http://domain.name/this/one;priority=normal",
    "pagelist/RESET url=\"http://domain.name/this;one;path\";priority=-58",
    "PING priority=87;url=\"\\\"not\\naccessible\\\"\"",
    "PING url=\"\\\"quoted URL\\\"\";zindex=\"3\\n-7\\r+5\"",
    "FIRE length=-35;name=Charles",
    "FIRE correct=false;length=-35;name=Charles;range=+101;valid=true;void=",
    "<monster:test_communicator_client communicatord:communicator_test/DATA filename=/var/log/communicator/communicatord.log",
    "REGISTER service=responder;version=1",
    "COMMANDS list=HELP,READY,STOP",
    "<srv: CMD",
    "<:svc CMD",
    "a:CMD",
    "hello",
    "CMD a=;b=2",
    "CMD a=b c=d",
    "CMD a=x\"y",
    "CMD a=\"\"",
    "CMD p=v;",
    "  STOP  \r",
    "CMD z=x ",
    "CMD a=1;a=2",
    "CMD p=a\\tb\\qc",
    "CMD x=\"a\\\\\"b\"",
    "\tCMD\t p=v",
    "<evil:mallory probe_b/PROBE_PING y=1;x=\"a;b\";z=line\\nbreak",
    "{\"command\":\"FIRE\",\"parameters\":{\"range\":101,\"valid\":true}}",
];

fn ok(line: &str) -> WireMessage {
    match parse(line.as_bytes()) {
        Ok(m) => m,
        Err(e) => panic!("{line:?} rejected: {e}"),
    }
}

fn out(m: &WireMessage) -> String {
    match m.to_line() {
        Ok(s) => s,
        Err(e) => panic!("{m:?} not serializable: {e}"),
    }
}

/// Parses then re-serializes.
fn re(line: &str) -> String {
    out(&ok(line))
}

fn p<'a>(m: &'a WireMessage, name: &str) -> &'a str {
    m.param(name).unwrap_or("<absent>")
}

#[test]
fn row01_legacy_reprocess() {
    let m = ok(ACCEPTED[0]);
    assert_eq!(
        (m.service.as_str(), m.command.as_str()),
        ("images", "REPROCESS")
    );
    assert_eq!(
        (p(&m, "url"), p(&m, "priority")),
        ("http://domain.name/this/one", "normal")
    );
    assert_eq!(
        out(&m),
        "images/REPROCESS priority=normal;url=http://domain.name/this/one"
    );
}

#[test]
fn row02_quoted_semicolons() {
    let m = ok(ACCEPTED[1]);
    assert_eq!(
        (p(&m, "url"), p(&m, "priority")),
        ("http://domain.name/this;one;path", "-58")
    );
    assert_eq!(
        out(&m),
        "pagelist/RESET priority=-58;url=\"http://domain.name/this;one;path\""
    );
}

#[test]
fn row03_leading_quote_and_lf() {
    let m = WireMessage::new("PING")
        .with_param("url", "\"not\naccessible\"")
        .with_param("priority", "87");
    assert_eq!(out(&m), ACCEPTED[2]);
    assert_eq!(ok(ACCEPTED[2]), m);
}

#[test]
fn row04_escapes_and_requoting() {
    let mut m = ok(ACCEPTED[3]);
    assert_eq!(
        (p(&m, "url"), p(&m, "zindex")),
        ("\"quoted URL\"", "3\n-7\r+5")
    );
    m.service = "images".into();
    m.set_param("priority", "87");
    assert_eq!(
        out(&m),
        "images/PING priority=87;url=\"\\\"quoted URL\\\"\";zindex=3\\n-7\\r+5"
    );
}

#[test]
fn row05_fire() {
    let m = WireMessage::new("FIRE")
        .with_param("name", "Charles")
        .with_param("length", "-35");
    assert_eq!(out(&m), "FIRE length=-35;name=Charles");
    assert_eq!(ok(&out(&m)), m);
}

/// Row 6's JSON form is tested in `json.rs`. Unlike C++ `from_string`, our `parse` accepts the
/// JSON line: it auto-detects `{`, as the C++ receivers do (§1.3).
#[test]
fn row06_string_form_round_trips() {
    let m = WireMessage::new("FIRE")
        .with_param("correct", "false")
        .with_param("length", "-35")
        .with_param("name", "Charles")
        .with_param("range", "+101")
        .with_param("valid", "true")
        .with_param("void", "");
    assert_eq!(out(&m), ACCEPTED[5]);
    assert_eq!(ok(ACCEPTED[5]), m);
}

#[test]
fn row07_all_header_fields() {
    let m = ok(ACCEPTED[6]);
    assert_eq!(m.sent_from_server, "monster");
    assert_eq!(m.sent_from_service, "test_communicator_client");
    assert_eq!(
        (m.server.as_str(), m.service.as_str()),
        ("communicatord", "communicator_test")
    );
    assert_eq!(m.command, "DATA");
    assert_eq!(p(&m, "filename"), "/var/log/communicator/communicatord.log");
    assert_eq!(m.params.len(), 1);
    assert_eq!(out(&m), ACCEPTED[6]);
}

#[test]
fn row08_register_and_commands() {
    assert_eq!(re(ACCEPTED[7]), ACCEPTED[7]);
    let mut cmds = ["STOP", "HELP", "READY"];
    cmds.sort_unstable();
    let reply = WireMessage::new("COMMANDS").with_param("list", cmds.join(","));
    assert_eq!(out(&reply), ACCEPTED[8]);
}

#[test]
fn row09_lenient_heads() {
    let m = ok("<srv: CMD");
    assert_eq!(
        (m.sent_from_server.as_str(), m.sent_from_service.as_str()),
        ("srv", "")
    );
    let m = ok("<:svc CMD");
    assert_eq!(
        (m.sent_from_server.as_str(), m.sent_from_service.as_str()),
        ("", "svc")
    );
    let m = ok("a:CMD");
    assert_eq!(
        (m.server.as_str(), m.service.as_str(), m.command.as_str()),
        ("a", "", "CMD")
    );
    assert_eq!(out(&m), "CMD");
    assert_eq!(ok("hello").command, "hello");
}

#[test]
fn row10_values() {
    let m = ok("CMD a=;b=2");
    assert_eq!((p(&m, "a"), p(&m, "b")), ("", "2"));
    assert_eq!(p(&ok("CMD a=b c=d"), "a"), "b c=d");
    assert_eq!(p(&ok("CMD a=x\"y"), "a"), "x\"y");
    assert_eq!(re("CMD a=x\"y"), "CMD a=x\"y");
    assert_eq!(p(&ok("CMD a=\"\""), "a"), "");
    assert_eq!(re("CMD p=v;"), "CMD p=v");
    assert_eq!(re("  STOP  \r"), "STOP");
}

fn rejected(line: &str) -> ParseError {
    match parse(line.as_bytes()) {
        Ok(m) => panic!("{line:?} accepted as {m:?}"),
        Err(e) => e,
    }
}

#[test]
fn row11_rejected_heads() {
    use ParseError as E;
    assert!(matches!(rejected(""), E::Empty));
    assert!(matches!(rejected(" \r\n"), E::Empty));
    assert!(matches!(
        rejected("<abc CMD"),
        E::SpaceInSentFromServer { offset: 4 }
    ));
    assert!(matches!(rejected("<abc"), E::UnterminatedSentFrom));
    assert!(matches!(rejected(":CMD"), E::EmptyServer { offset: 0 }));
    assert!(matches!(
        rejected("a:b:CMD"),
        E::UnexpectedServer { offset: 3 }
    ));
    assert!(matches!(rejected("svc/"), E::EmptyCommand));
    assert!(matches!(
        rejected("svc/CMD/x"),
        E::RepeatedService { offset: 7 }
    ));
    assert!(matches!(
        rejected("svc/srv:CMD"),
        E::UnexpectedServer { offset: 7 }
    ));
}

#[test]
fn row12_rejected_params() {
    use ParseError as E;
    assert!(matches!(
        rejected("CMD =v"),
        E::InvalidParamName { offset: 4, .. }
    ));
    assert!(matches!(rejected("CMD p"), E::MissingEquals { offset: 4 }));
    assert!(matches!(
        rejected("CMD p=\"abc"),
        E::UnterminatedQuote { offset: 6 }
    ));
    assert!(matches!(
        rejected("CMD p=\"a\"x"),
        E::JunkAfterQuote { offset: 9 }
    ));
    assert!(matches!(rejected("CMD 1p=v"), E::InvalidParamName { .. }));
    assert!(matches!(rejected("CMD p-q=v"), E::InvalidParamName { .. }));
    assert!(matches!(rejected("CMD  p=v"), E::InvalidParamName { name, .. } if name == " p"));
    assert!(matches!(
        rejected("CMD p=v;;"),
        E::MissingEquals { offset: 8 }
    ));
}

#[test]
fn row13_quoted_value_ending_in_backslash() {
    let line = out(&WireMessage::new("SET").with_param("v", "x;\\"));
    assert_eq!(line, "SET v=\"x;\\\\\"");
    assert!(matches!(
        rejected(&line),
        ParseError::UnterminatedQuote { .. }
    ));
    assert!(matches!(
        rejected("SET v=\"abc\\\""),
        ParseError::UnterminatedQuote { .. }
    ));
    // Unquoted, a trailing backslash round-trips.
    assert_eq!(p(&ok("SET v=x\\\\"), "v"), "x\\");
}

#[test]
fn row14_last_value_loses_trailing_blanks() {
    assert_eq!(p(&ok(ACCEPTED[19]), "z"), "x");
    let sent = out(&WireMessage::new("CMD")
        .with_param("a", "k ")
        .with_param("z", "x "));
    assert_eq!(sent, "CMD a=k ;z=x ");
    let m = ok(&sent);
    assert_eq!((p(&m, "a"), p(&m, "z")), ("k ", "x"));
}

#[test]
fn observed_value_behaviour() {
    assert!(
        matches!(rejected("CMD p=v; q=w"), ParseError::InvalidParamName { name, .. } if name == " q")
    );
    assert_eq!(p(&ok("CMD a=1;a=2"), "a"), "2");
    let m = ok("CMD p=a\\tb\\qc");
    assert_eq!(p(&m, "p"), "a\\tb\\qc");
    assert_eq!(out(&m), "CMD p=a\\\\tb\\\\qc");
    let m = ok("CMD x=\"a\\\\\"b\"");
    assert_eq!(p(&m, "x"), "a\\\"b");
    assert_eq!(out(&m), "CMD x=a\\\\\"b");
    assert_eq!(re("CMD t=a\tb"), "CMD t=a\tb");
    let m = ok("\tCMD\t p=v");
    assert_eq!((m.command.as_str(), p(&m, "p")), ("CMD\t", "v"));
}

#[test]
fn observed_daemon_lines() {
    let mut m = ok(ACCEPTED[24]);
    m.sent_from_server = "vm".into();
    m.sent_from_service = "probe_a".into();
    assert_eq!(
        out(&m),
        "<vm:probe_a probe_b/PROBE_PING x=\"a;b\";y=1;z=line\\nbreak"
    );
    for line in [
        "vm:probe_a/UNKNOWN command=NO_SUCH",
        "<vm:communicatord READY my_address=127.0.0.1:4042",
        "<vm:communicatord STATUS cache=no;server_name=vm;service=probe_b;status=up;up_since=1713934141",
        "<vm:communicatord STATUS cache=no;service=nosuch;status=unknown",
        "<vm:probe_a ./PROBE_PING n=7",
    ] {
        assert_eq!(re(line), line);
    }
}
