//! `<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1">` → [`IceUdpTransport`].

use super::errors::JingleError;
use super::transport::{
    Candidate, CandidateType, Fingerprint, IceUdpTransport, Protocol, SctpMap, Setup, TcpType,
};
use super::xml::{
    child, children, has_child, opt_bool, opt_enum, opt_int, opt_ip, opt_string, req_int,
    req_string,
};
use super::{ns, Element};

type Result<T> = std::result::Result<T, JingleError>;

pub fn parse_transport(el: &Element) -> Result<IceUdpTransport> {
    Ok(IceUdpTransport {
        ufrag: opt_string(el, "ufrag"),
        pwd: opt_string(el, "pwd"),
        rtcp_mux: has_child(el, "rtcp-mux", None),
        fingerprints: children(el, "fingerprint", Some(ns::DTLS))
            .map(parse_fingerprint)
            .collect::<Result<_>>()?,
        candidates: children(el, "candidate", Some(ns::ICE_UDP))
            .map(parse_candidate)
            .collect::<Result<_>>()?,
        web_sockets: children(el, "web-socket", Some(ns::COLIBRI))
            .map(|ws| req_string(ws, "web-socket", "url"))
            .collect::<Result<_>>()?,
        sctpmap: child(el, "sctpmap", Some(ns::SCTP))
            .map(parse_sctpmap)
            .transpose()?,
    })
}

fn parse_fingerprint(el: &Element) -> Result<Fingerprint> {
    let value = el.text().trim().to_owned();
    if value.is_empty() {
        return Err(JingleError::MissingText {
            element: "fingerprint",
        });
    }
    Ok(Fingerprint {
        hash: req_string(el, "fingerprint", "hash")?,
        setup: opt_enum(el, "fingerprint", "setup", Setup::parse)?,
        value,
        required: opt_bool(el, "fingerprint", "required")?,
        cryptex: opt_bool(el, "fingerprint", "cryptex")?,
    })
}

fn parse_candidate(el: &Element) -> Result<Candidate> {
    const E: &str = "candidate";
    Ok(Candidate {
        component: req_int(el, E, "component", 1..=256)?,
        foundation: req_string(el, E, "foundation")?,
        generation: opt_int(el, E, "generation", 0..=u32::MAX)?,
        id: opt_string(el, "id"),
        ip: opt_ip(el, E, "ip")?.ok_or(JingleError::MissingAttribute {
            element: E,
            attribute: "ip",
        })?,
        network: opt_int(el, E, "network", 0..=u32::MAX)?,
        port: req_int(el, E, "port", 0..=u16::MAX)?,
        priority: req_int(el, E, "priority", 0..=u32::MAX)?,
        protocol: opt_enum(el, E, "protocol", Protocol::parse)?.ok_or(
            JingleError::MissingAttribute {
                element: E,
                attribute: "protocol",
            },
        )?,
        kind: opt_enum(el, E, "type", CandidateType::parse)?.ok_or(
            JingleError::MissingAttribute {
                element: E,
                attribute: "type",
            },
        )?,
        rel_addr: opt_ip(el, E, "rel-addr")?,
        rel_port: opt_int(el, E, "rel-port", 0..=u16::MAX)?,
        tcptype: opt_enum(el, E, "tcptype", TcpType::parse)?,
    })
}

fn parse_sctpmap(el: &Element) -> Result<SctpMap> {
    Ok(SctpMap {
        number: req_int(el, "sctpmap", "number", 0..=u16::MAX)?,
        protocol: opt_string(el, "protocol"),
        streams: opt_int(el, "sctpmap", "streams", 0..=u32::MAX)?,
    })
}
