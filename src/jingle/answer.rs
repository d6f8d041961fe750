//! What the gateway sends to Jicofo, in jigasi's shapes (reference `jigasi-behaviour.md` §1.8):
//! a transport-info with the ICE credentials and candidates, then a session-accept with the audio
//! content only; and session-terminate.

use super::model::{Action, Condition, Content, Creator, Group, JingleIq, Reason};
use super::offer::{AudioOffer, AUDIO_LEVEL_URI};
use super::rtp::{HdrExt, Parameter, PayloadType, RtpDescription, Source};
use super::transport::{Candidate, Fingerprint, IceUdpTransport, Setup};
use super::Element;

/// Our side of the conference leg, filled by `call` from media's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAnswer {
    pub ufrag: String,
    pub pwd: String,
    pub fingerprint: LocalFingerprint,
    /// Give each an `id`: XEP-0176 requires one, and jigasi sends one.
    pub candidates: Vec<Candidate>,
    /// The SSRC we send the phone's audio with.
    pub ssrc: u32,
    pub cname: String,
    pub msid: Msid,
}

/// Our DTLS certificate's fingerprint; the setup is always `active` (we are the DTLS client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFingerprint {
    pub hash: String,
    pub value: String,
}

/// A WebRTC msid: media stream id and track id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msid {
    pub stream: String,
    pub track: String,
}

/// transport-info on the audio content with our ICE ufrag/pwd and candidates. jigasi sends this
/// before session-accept, and Jicofo accepts it that early from jigasi.
pub fn transport_info(sid: &str, answer: &LocalAnswer) -> Element {
    let mut iq = JingleIq::new(Action::TransportInfo, sid);
    let mut content = Content::new("audio");
    content.creator = Some(Creator::Initiator);
    content.transport = Some(IceUdpTransport {
        ufrag: Some(answer.ufrag.clone()),
        pwd: Some(answer.pwd.clone()),
        candidates: answer.candidates.clone(),
        ..IceUdpTransport::default()
    });
    iq.contents.push(content);
    iq.to_element()
}

/// session-accept with the audio content only: the offer's opus and telephone-event payload
/// types, its audio-level extension id, rtcp-mux, our one source, our transport with the
/// fingerprint (`setup="active"`), and a BUNDLE group of that content.
pub fn session_accept(
    sid: &str,
    responder: &str,
    answer: &LocalAnswer,
    offer: &AudioOffer,
) -> Element {
    let mut iq = JingleIq::new(Action::SessionAccept, sid);
    iq.responder = Some(responder.to_owned());
    let mut content = Content::new(offer.content_name.as_str());
    content.creator = Some(Creator::Initiator);
    content.description = Some(description(answer, offer));
    content.transport = Some(IceUdpTransport {
        ufrag: Some(answer.ufrag.clone()),
        pwd: Some(answer.pwd.clone()),
        fingerprints: vec![Fingerprint {
            hash: answer.fingerprint.hash.clone(),
            setup: Some(Setup::Active),
            value: answer.fingerprint.value.clone(),
            required: None,
            cryptex: None,
        }],
        candidates: answer.candidates.clone(),
        ..IceUdpTransport::default()
    });
    iq.contents.push(content);
    iq.group = Some(Group::bundle([offer.content_name.as_str()]));
    iq.to_element()
}

/// session-terminate with a reason condition and optional text.
pub fn session_terminate(sid: &str, condition: Condition, text: Option<&str>) -> Element {
    let mut iq = JingleIq::new(Action::SessionTerminate, sid);
    iq.reason = Some(Reason {
        condition,
        text: text.map(str::to_owned),
    });
    iq.to_element()
}

fn description(answer: &LocalAnswer, offer: &AudioOffer) -> RtpDescription {
    let mut d = RtpDescription::new("audio");
    d.ssrc = Some(answer.ssrc);
    // The Opus parameters our receive side accepts: 10 ms frames and in-band FEC.
    let mut opus = PayloadType::new(offer.opus_pt, "opus", 48_000);
    opus.channels = Some(2);
    opus.parameters = vec![
        Parameter::new("minptime", "10"),
        Parameter::new("useinbandfec", "1"),
    ];
    d.payload_types.push(opus);
    if let Some(pt) = offer.telephone_event_pt {
        d.payload_types
            .push(PayloadType::new(pt, "telephone-event", 8_000));
    }
    if let Some(id) = offer.audio_level_ext {
        d.hdrexts.push(HdrExt {
            id,
            uri: AUDIO_LEVEL_URI.to_owned(),
            senders: None,
        });
    }
    d.rtcp_mux = true;
    let msid = &answer.msid;
    let mut source = Source::new(answer.ssrc);
    source.parameters = vec![
        Parameter::new("cname", &answer.cname),
        Parameter::new("msid", &format!("{} {}", msid.stream, msid.track)),
        Parameter::new("mslabel", &msid.stream),
        Parameter::new("label", &msid.track),
    ];
    d.sources.push(source);
    d
}
