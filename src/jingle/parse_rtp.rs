//! `<description xmlns="urn:xmpp:jingle:apps:rtp:1">` → [`RtpDescription`].
//!
//! Namespaces are checked where every sender agrees on them. `<parameter>`, `<ssrc-info>`,
//! `<rtcp-fb>`, `<rtcp-mux>` and `<extmap-allow-mixed>` are taken in any namespace: Jicofo writes
//! source parameters in the RTP namespace, lib-jitsi-meet in the source's (jitsi-xmpp-extensions#81).

use super::errors::JingleError;
use super::model::Senders;
use super::rtp::{HdrExt, Parameter, PayloadType, RtcpFb, RtpDescription, Source, SsrcGroup};
use super::xml::{child, children, has_child, opt_enum, opt_int, opt_string, req_int, req_string};
use super::{ns, Element};

type Result<T> = std::result::Result<T, JingleError>;

pub fn parse_description(el: &Element) -> Result<RtpDescription> {
    Ok(RtpDescription {
        media: opt_string(el, "media"),
        ssrc: opt_int(el, "description", "ssrc", 0..=u32::MAX)?,
        maxptime: opt_int(el, "description", "maxptime", 0..=u32::MAX)?,
        payload_types: children(el, "payload-type", Some(ns::RTP))
            .map(parse_payload_type)
            .collect::<Result<_>>()?,
        hdrexts: children(el, "rtp-hdrext", Some(ns::HDREXT))
            .map(parse_hdrext)
            .collect::<Result<_>>()?,
        extmap_allow_mixed: has_child(el, "extmap-allow-mixed", None),
        rtcp_mux: has_child(el, "rtcp-mux", None),
        sources: children(el, "source", Some(ns::SSMA))
            .map(parse_source)
            .collect::<Result<_>>()?,
        ssrc_groups: children(el, "ssrc-group", Some(ns::SSMA))
            .map(parse_ssrc_group)
            .collect::<Result<_>>()?,
    })
}

fn parse_payload_type(el: &Element) -> Result<PayloadType> {
    Ok(PayloadType {
        id: req_int(el, "payload-type", "id", 0..=127)?,
        name: opt_string(el, "name"),
        clockrate: opt_int(el, "payload-type", "clockrate", 0..=u32::MAX)?,
        channels: opt_int(el, "payload-type", "channels", 0..=u16::MAX)?,
        parameters: parse_parameters(el),
        rtcp_fbs: children(el, "rtcp-fb", None)
            .map(|fb| {
                Ok(RtcpFb {
                    kind: req_string(fb, "rtcp-fb", "type")?,
                    subtype: opt_string(fb, "subtype"),
                })
            })
            .collect::<Result<_>>()?,
    })
}

fn parse_parameters(el: &Element) -> Vec<Parameter> {
    children(el, "parameter", None)
        .map(|p| Parameter {
            name: opt_string(p, "name"),
            value: opt_string(p, "value"),
        })
        .collect()
}

fn parse_hdrext(el: &Element) -> Result<HdrExt> {
    Ok(HdrExt {
        id: req_int(el, "rtp-hdrext", "id", 1..=255)?,
        uri: req_string(el, "rtp-hdrext", "uri")?,
        senders: opt_enum(el, "rtp-hdrext", "senders", Senders::parse)?,
    })
}

fn parse_source(el: &Element) -> Result<Source> {
    Ok(Source {
        ssrc: req_int(el, "source", "ssrc", 0..=u32::MAX)?,
        name: opt_string(el, "name"),
        video_type: opt_string(el, "videoType"),
        owner: child(el, "ssrc-info", None).and_then(|info| opt_string(info, "owner")),
        parameters: parse_parameters(el),
    })
}

fn parse_ssrc_group(el: &Element) -> Result<SsrcGroup> {
    Ok(SsrcGroup {
        semantics: req_string(el, "ssrc-group", "semantics")?,
        ssrcs: children(el, "source", None)
            .map(|s| req_int(s, "source", "ssrc", 0..=u32::MAX))
            .collect::<Result<_>>()?,
    })
}
