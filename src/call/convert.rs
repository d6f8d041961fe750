//! Translations between the modules' types: Jingle's offer into media's terms, media's answer
//! into Jingle's, and the SDP session id of a call. Pure functions, no decisions.

use crate::jingle::{self, Action, AudioOffer, Element, JingleIq};
use crate::media::{self, ConferenceAnswer};
use std::net::SocketAddr;

/// session-accept, or for a transport-replace the same content as transport-accept (Jicofo takes
/// either; transport-accept is the Jingle answer to transport-replace).
pub(super) fn accept(
    sid: &str,
    responder: &str,
    local: &jingle::LocalAnswer,
    offer: &AudioOffer,
    replacing: bool,
) -> Element {
    let el = jingle::session_accept(sid, responder, local, offer);
    if !replacing {
        return el;
    }
    // Our own element always parses; keep session-accept in the impossible other case.
    match JingleIq::parse(&el) {
        Ok(mut iq) => {
            iq.action = Action::TransportAccept;
            iq.to_element()
        }
        Err(_) => el,
    }
}

/// A stable SDP session id per call (RFC 4566 wants it unique; a hash of the Call-ID is).
pub(super) fn session_id(call_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    call_id.hash(&mut h);
    h.finish() >> 1
}

/// Jingle's offer in media's terms (UDP candidates of the RTP component: we bundle and mux).
pub(super) fn conference_offer(o: &AudioOffer) -> media::ConferenceOffer {
    media::ConferenceOffer {
        ufrag: o.ufrag.clone(),
        pwd: o.pwd.clone(),
        fingerprint: (o.fingerprint.hash.clone(), o.fingerprint.value.clone()),
        candidates: o
            .candidates
            .iter()
            .filter(|c| c.component == 1 && c.protocol == jingle::Protocol::Udp)
            .map(|c| media::RemoteCandidate {
                foundation: c.foundation.clone(),
                component: c.component,
                protocol: "udp".into(),
                priority: c.priority,
                ip: c.ip,
                port: c.port,
                kind: c.kind.as_str().into(),
                related: c
                    .rel_addr
                    .zip(c.rel_port)
                    .map(|(ip, port)| SocketAddr::new(ip, port)),
            })
            .collect(),
        opus_pt: o.opus_pt,
        telephone_event_pt: o.telephone_event_pt,
        audio_level_ext: o.audio_level_ext,
        sources: o
            .sources
            .iter()
            .map(|s| (s.ssrc, s.endpoint.clone()))
            .collect(),
    }
}

/// Media's answer in Jingle's terms.
pub(super) fn local_answer(a: &ConferenceAnswer) -> jingle::LocalAnswer {
    let (stream, track) = a
        .msid
        .split_once(' ')
        .unwrap_or((a.msid.as_str(), a.msid.as_str()));
    jingle::LocalAnswer {
        ufrag: a.ufrag.clone(),
        pwd: a.pwd.clone(),
        fingerprint: jingle::LocalFingerprint {
            hash: a.fingerprint.0.clone(),
            value: a.fingerprint.1.clone(),
        },
        candidates: a
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| jingle::Candidate {
                component: c.component,
                foundation: c.foundation.clone(),
                generation: Some(0),
                // XEP-0176 wants an id per candidate; jigasi sends one.
                id: Some(format!("{}{}", a.ufrag, i)),
                ip: c.ip,
                network: Some(0),
                port: c.port,
                priority: c.priority,
                protocol: jingle::Protocol::Udp,
                kind: jingle::CandidateType::parse(&c.kind).unwrap_or(jingle::CandidateType::Host),
                rel_addr: c.related.map(|r| r.ip()),
                rel_port: c.related.map(|r| r.port()),
                tcptype: None,
            })
            .collect(),
        ssrc: a.ssrc,
        cname: a.cname.clone(),
        msid: jingle::Msid {
            stream: stream.into(),
            track: track.into(),
        },
    }
}
