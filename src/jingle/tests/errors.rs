//! Each way a payload can be malformed gives its own typed error.

use super::super::*;
use super::{fixture, xml};

/// Parses the jigasi offer with one substring replaced (which must occur).
fn parse_with(from: &str, to: &str) -> Result<JingleIq, JingleError> {
    let text = fixture("session-initiate-jigasi.xml");
    assert!(text.contains(from), "fixture lacks {from:?}");
    JingleIq::parse(&xml(&text.replacen(from, to, 1)))
}

fn missing(element: &'static str, attribute: &'static str) -> JingleError {
    JingleError::MissingAttribute { element, attribute }
}

fn out_of_range(element: &'static str, attribute: &'static str, value: &str) -> JingleError {
    JingleError::OutOfRange {
        element,
        attribute,
        value: value.into(),
    }
}

fn bad_value(element: &'static str, attribute: &'static str, value: &str) -> JingleError {
    JingleError::BadValue {
        element,
        attribute,
        value: value.into(),
    }
}

#[test]
fn another_element_is_not_jingle() {
    let err = JingleIq::parse(&xml(
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    ));
    assert_eq!(
        err,
        Err(JingleError::NotJingle {
            name: "query".into(),
            ns: "http://jabber.org/protocol/disco#info".into()
        })
    );
    let err = JingleIq::parse(&xml(
        "<jingle xmlns='urn:xmpp:jingle:0' action='a' sid='s'/>",
    ));
    assert!(matches!(err, Err(JingleError::NotJingle { .. })));
}

#[test]
fn missing_action_or_sid_is_an_error() {
    assert_eq!(
        parse_with(" action=\"session-initiate\"", ""),
        Err(missing("jingle", "action"))
    );
    assert_eq!(
        parse_with(" sid=\"5ekrvb7dv0ie1\"", ""),
        Err(missing("jingle", "sid"))
    );
    assert_eq!(
        parse_with("sid=\"5ekrvb7dv0ie1\"", "sid=\"\""),
        Err(missing("jingle", "sid"))
    );
}

#[test]
fn missing_required_attributes_are_named() {
    let cases = [
        (
            " name=\"audio\" senders",
            " senders",
            missing("content", "name"),
        ),
        (
            "<payload-type id=\"111\"",
            "<payload-type",
            missing("payload-type", "id"),
        ),
        (
            " uri=\"urn:ietf:params:rtp-hdrext:sdes:mid\"",
            "",
            missing("rtp-hdrext", "uri"),
        ),
        (" ssrc=\"2735473921\"", "", missing("source", "ssrc")),
        (" hash=\"sha-256\"", "", missing("fingerprint", "hash")),
        (" ip=\"10.0.0.5\"", "", missing("candidate", "ip")),
        (" port=\"10000\"", "", missing("candidate", "port")),
        (" protocol=\"udp\"", "", missing("candidate", "protocol")),
        (" type=\"host\"", "", missing("candidate", "type")),
        (" foundation=\"1\"", "", missing("candidate", "foundation")),
        (" semantics=\"BUNDLE\"", "", missing("group", "semantics")),
        (
            "<content name=\"audio\"/>",
            "<content/>",
            missing("content", "name"),
        ),
    ];
    for (from, to, expected) in cases {
        assert_eq!(parse_with(from, to), Err(expected), "{from}");
    }
}

#[test]
fn bad_numbers_are_refused() {
    assert_eq!(
        parse_with("port=\"10000\"", "port=\"ten\""),
        Err(JingleError::BadNumber {
            element: "candidate",
            attribute: "port",
            value: "ten".into()
        })
    );
    assert_eq!(
        parse_with("priority=\"2130706431\"", "priority=\" 2130706431\""),
        Err(JingleError::BadNumber {
            element: "candidate",
            attribute: "priority",
            value: " 2130706431".into()
        })
    );
    assert_eq!(
        parse_with("maxptime=\"60\"", "maxptime=\"6.0\""),
        Err(JingleError::BadNumber {
            element: "description",
            attribute: "maxptime",
            value: "6.0".into()
        })
    );
}

#[test]
fn numbers_out_of_their_range_are_refused() {
    let cases = [
        (
            "ssrc=\"2735473921\"",
            "ssrc=\"4294967296\"",
            out_of_range("source", "ssrc", "4294967296"),
        ),
        (
            "ssrc=\"2735473921\"",
            "ssrc=\"-1\"",
            out_of_range("source", "ssrc", "-1"),
        ),
        (
            "ssrc=\"2735473921\"",
            "ssrc=\"1000000000000000000000000000000000000000000\"",
            out_of_range(
                "source",
                "ssrc",
                "1000000000000000000000000000000000000000000",
            ),
        ),
        (
            "port=\"10000\"",
            "port=\"65536\"",
            out_of_range("candidate", "port", "65536"),
        ),
        (
            "rel-port=\"10000\"",
            "rel-port=\"70000\"",
            out_of_range("candidate", "rel-port", "70000"),
        ),
        (
            "id=\"111\"",
            "id=\"128\"",
            out_of_range("payload-type", "id", "128"),
        ),
        (
            "id=\"10\"",
            "id=\"0\"",
            out_of_range("rtp-hdrext", "id", "0"),
        ),
        (
            "id=\"10\"",
            "id=\"256\"",
            out_of_range("rtp-hdrext", "id", "256"),
        ),
        (
            "component=\"1\"",
            "component=\"0\"",
            out_of_range("candidate", "component", "0"),
        ),
        (
            "priority=\"2130706431\"",
            "priority=\"4294967296\"",
            out_of_range("candidate", "priority", "4294967296"),
        ),
    ];
    for (from, to, expected) in cases {
        assert_eq!(parse_with(from, to), Err(expected), "{to}");
    }
}

#[test]
fn bad_addresses_are_refused() {
    assert_eq!(
        parse_with("ip=\"10.0.0.5\"", "ip=\"10.0.0.256\""),
        Err(JingleError::BadIp {
            element: "candidate",
            attribute: "ip",
            value: "10.0.0.256".into()
        })
    );
    assert_eq!(
        parse_with("rel-addr=\"10.0.0.5\"", "rel-addr=\"bridge.local\""),
        Err(JingleError::BadIp {
            element: "candidate",
            attribute: "rel-addr",
            value: "bridge.local".into()
        })
    );
}

#[test]
fn values_outside_their_set_are_refused() {
    let cases = [
        (
            "senders=\"both\"",
            "senders=\"sometimes\"",
            bad_value("content", "senders", "sometimes"),
        ),
        (
            "creator=\"initiator\"",
            "creator=\"focus\"",
            bad_value("content", "creator", "focus"),
        ),
        (
            "setup=\"actpass\"",
            "setup=\"maybe\"",
            bad_value("fingerprint", "setup", "maybe"),
        ),
        (
            "required=\"false\"",
            "required=\"no\"",
            bad_value("fingerprint", "required", "no"),
        ),
        (
            "type=\"host\"",
            "type=\"relayed\"",
            bad_value("candidate", "type", "relayed"),
        ),
        (
            "protocol=\"udp\"",
            "protocol=\"sctp\"",
            bad_value("candidate", "protocol", "sctp"),
        ),
        (
            "uri=\"urn:ietf:params:rtp-hdrext:sdes:mid\"",
            "uri=\"urn:ietf:params:rtp-hdrext:sdes:mid\" senders=\"all\"",
            bad_value("rtp-hdrext", "senders", "all"),
        ),
        (
            "region=\"eu-west-1\"",
            "region=\"eu-west-1\" restart=\"perhaps\"",
            bad_value("bridge-session", "restart", "perhaps"),
        ),
    ];
    for (from, to, expected) in cases {
        assert_eq!(parse_with(from, to), Err(expected), "{to}");
    }
}

#[test]
fn case_and_number_spellings_of_booleans_and_protocols_are_read() {
    let iq = parse_with("required=\"false\"", "required=\"FALSE\"").unwrap();
    assert_eq!(
        iq.contents[0].transport.as_ref().unwrap().fingerprints[0].required,
        Some(false)
    );
    let iq = parse_with("cryptex=\"true\"", "cryptex=\"1\"").unwrap();
    assert_eq!(
        iq.contents[0].transport.as_ref().unwrap().fingerprints[0].cryptex,
        Some(true)
    );
    let iq = parse_with("protocol=\"udp\"", "protocol=\"UDP\"").unwrap();
    assert_eq!(
        iq.contents[0].transport.as_ref().unwrap().candidates[0].protocol,
        Protocol::Udp
    );
}

#[test]
fn empty_fingerprint_or_reason_is_refused() {
    let value = "3A:7B:1C:94:E2:5F:08:D6:41:AA:C3:77:9E:12:B0:5D:66:F8:23:0C:9A:4E:B1:D7:58:E3:2F:90:6C:15:A8:4B";
    assert_eq!(
        parse_with(value, "  "),
        Err(JingleError::MissingText {
            element: "fingerprint"
        })
    );
    let err = JingleIq::parse(&xml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='s'><reason><text>x</text></reason></jingle>",
    ));
    assert_eq!(
        err,
        Err(JingleError::MissingChild {
            element: "reason",
            child: "condition"
        })
    );
}

#[test]
fn errors_say_what_is_wrong() {
    let err = parse_with("port=\"10000\"", "port=\"65536\"").unwrap_err();
    assert_eq!(err.to_string(), "<candidate port='65536'> is out of range");
    assert_eq!(
        OfferError::BadSetup(Some(Setup::Active)).to_string(),
        "the bridge's DTLS setup is active, but we can only be the DTLS client (needs actpass or passive)"
    );
}
