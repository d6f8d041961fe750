//! `<jingle>` → [`JingleIq`]: the session level (action, contents, reason, group and the Jitsi
//! extensions). Unknown children and attributes are ignored; malformed known ones are errors.

use super::errors::JingleError;
use super::model::{
    Action, BridgeSession, Condition, Content, Creator, Group, JingleIq, Reason, Senders,
    StartMuted,
};
use super::xml::{child, children, opt_bool, opt_enum, opt_string, req_string};
use super::{ns, parse_rtp, parse_transport, Element};

type Result<T> = std::result::Result<T, JingleError>;

impl JingleIq {
    /// Reads a `<jingle xmlns="urn:xmpp:jingle:1">` payload (the IQ's child).
    pub fn parse(el: &Element) -> Result<JingleIq> {
        if !el.is("jingle", ns::JINGLE) {
            return Err(JingleError::NotJingle {
                name: el.name().to_owned(),
                ns: el.ns(),
            });
        }
        let action = Action::parse(&req_string(el, "jingle", "action")?);
        let sid = req_string(el, "jingle", "sid")?;
        Ok(JingleIq {
            action,
            sid,
            initiator: opt_string(el, "initiator"),
            responder: opt_string(el, "responder"),
            contents: children(el, "content", Some(ns::JINGLE))
                .map(parse_content)
                .collect::<Result<_>>()?,
            reason: child(el, "reason", Some(ns::JINGLE))
                .map(parse_reason)
                .transpose()?,
            group: child(el, "group", Some(ns::GROUPING))
                .map(parse_group)
                .transpose()?,
            bridge_session: child(el, "bridge-session", Some(ns::FOCUS))
                .map(parse_bridge_session)
                .transpose()?,
            start_muted: child(el, "startmuted", Some(ns::START_MUTED))
                .map(parse_start_muted)
                .transpose()?,
            json_message: child(el, "json-message", Some(ns::JITMEET)).map(Element::text),
        })
    }
}

fn parse_content(el: &Element) -> Result<Content> {
    Ok(Content {
        creator: opt_enum(el, "content", "creator", Creator::parse)?,
        name: req_string(el, "content", "name")?,
        senders: opt_enum(el, "content", "senders", Senders::parse)?,
        description: child(el, "description", Some(ns::RTP))
            .map(parse_rtp::parse_description)
            .transpose()?,
        transport: child(el, "transport", Some(ns::ICE_UDP))
            .map(parse_transport::parse_transport)
            .transpose()?,
    })
}

/// `<reason><condition/><text>…</text></reason>`: the condition is the first child that is not
/// `<text>`.
fn parse_reason(el: &Element) -> Result<Reason> {
    let condition =
        el.children()
            .find(|c| c.name() != "text")
            .ok_or(JingleError::MissingChild {
                element: "reason",
                child: "condition",
            })?;
    Ok(Reason {
        condition: Condition::parse(condition.name()),
        text: child(el, "text", None).map(Element::text),
    })
}

fn parse_group(el: &Element) -> Result<Group> {
    Ok(Group {
        semantics: req_string(el, "group", "semantics")?,
        contents: children(el, "content", None)
            .map(|c| req_string(c, "content", "name"))
            .collect::<Result<_>>()?,
    })
}

fn parse_bridge_session(el: &Element) -> Result<BridgeSession> {
    Ok(BridgeSession {
        id: opt_string(el, "id"),
        region: opt_string(el, "region"),
        restart: opt_bool(el, "bridge-session", "restart")?,
    })
}

fn parse_start_muted(el: &Element) -> Result<StartMuted> {
    Ok(StartMuted {
        audio: opt_bool(el, "startmuted", "audio")?,
        video: opt_bool(el, "startmuted", "video")?,
    })
}
