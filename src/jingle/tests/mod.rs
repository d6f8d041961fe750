//! Tests of the jingle module, on fixtures in `tests/fixtures/jingle/` (see its README for where
//! each shape comes from).

mod answer;
mod errors;
mod offer;
mod parse;
mod sweep;

use super::{Element, JingleIq};
use xmpp_parsers::minidom::Node;

/// Every fixture, by file name.
const FIXTURES: &[(&str, &str)] = &[
    (
        "session-initiate-jigasi.xml",
        include_str!("../../../tests/fixtures/jingle/session-initiate-jigasi.xml"),
    ),
    (
        "session-initiate-jigasi-jid-owners.xml",
        include_str!("../../../tests/fixtures/jingle/session-initiate-jigasi-jid-owners.xml"),
    ),
    (
        "session-initiate-browser.xml",
        include_str!("../../../tests/fixtures/jingle/session-initiate-browser.xml"),
    ),
    (
        "transport-replace.xml",
        include_str!("../../../tests/fixtures/jingle/transport-replace.xml"),
    ),
    (
        "source-add.xml",
        include_str!("../../../tests/fixtures/jingle/source-add.xml"),
    ),
    (
        "source-remove.xml",
        include_str!("../../../tests/fixtures/jingle/source-remove.xml"),
    ),
    (
        "session-terminate-general-error.xml",
        include_str!("../../../tests/fixtures/jingle/session-terminate-general-error.xml"),
    ),
    (
        "session-terminate-expired.xml",
        include_str!("../../../tests/fixtures/jingle/session-terminate-expired.xml"),
    ),
    (
        "session-terminate-success.xml",
        include_str!("../../../tests/fixtures/jingle/session-terminate-success.xml"),
    ),
    (
        "session-terminate-busy.xml",
        include_str!("../../../tests/fixtures/jingle/session-terminate-busy.xml"),
    ),
    (
        "session-accept-jigasi.xml",
        include_str!("../../../tests/fixtures/jingle/session-accept-jigasi.xml"),
    ),
    (
        "transport-info-jigasi.xml",
        include_str!("../../../tests/fixtures/jingle/transport-info-jigasi.xml"),
    ),
    (
        "ljm-session-initiate.xml",
        include_str!("../../../tests/fixtures/jingle/ljm-session-initiate.xml"),
    ),
    (
        "ljm-session-initiate-json-sources.xml",
        include_str!("../../../tests/fixtures/jingle/ljm-session-initiate-json-sources.xml"),
    ),
];

fn fixture(name: &str) -> &'static str {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

fn xml(text: &str) -> Element {
    text.parse().expect("well-formed XML")
}

fn jingle(name: &str) -> JingleIq {
    JingleIq::parse(&xml(fixture(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The element without the indentation between its children, to compare with what we build.
fn without_whitespace(el: &Element) -> Element {
    let mut out = Element::builder(el.name(), el.ns()).build();
    *out.attrs_mut() = el.attrs().clone();
    for node in el.nodes() {
        match node {
            Node::Element(child) => {
                out.append_child(without_whitespace(child));
            }
            Node::Text(text) if !text.trim().is_empty() => out.append_text_node(text.trim()),
            Node::Text(_) => {}
        }
    }
    out
}
