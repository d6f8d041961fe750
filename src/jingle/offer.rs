//! What the gateway takes from Jicofo: the audio part of a session-initiate (or transport-replace)
//! as media parameters, and the audio sources of source-add / source-remove.

use super::errors::OfferError;
use super::model::{Action, Content, JingleIq};
use super::rtp::Source;
use super::transport::{Candidate, Fingerprint, IceUdpTransport, Setup};

/// RFC 6464 client-to-mixer audio level, the one header extension the gateway uses.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The offer reduced to what the conference leg needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOffer {
    /// The name of the audio content ("audio" from Jicofo); the answer uses the same.
    pub content_name: String,
    pub ufrag: String,
    pub pwd: String,
    /// The bridge's fingerprint, sha-256 when offered; its setup is actpass or passive.
    pub fingerprint: Fingerprint,
    pub candidates: Vec<Candidate>,
    pub opus_pt: u8,
    pub telephone_event_pt: Option<u8>,
    pub audio_level_ext: Option<u8>,
    /// Remote audio sources with an owner, in offer order (the bridge's own `jvb` one included).
    pub sources: Vec<SourceOwner>,
    /// The contents not taken (video, data), by name.
    pub declined: Vec<String>,
}

/// An audio SSRC and the endpoint sending it (`jvb` for the bridge's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceOwner {
    pub ssrc: u32,
    pub endpoint: String,
}

/// The audio sources a source-add or source-remove names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChange {
    Add(Vec<SourceOwner>),
    Remove(Vec<SourceOwner>),
}

impl JingleIq {
    /// The audio part of an offer: opus, telephone-event, the audio-level extension, the remote
    /// audio sources and the bundled transport.
    pub fn audio_offer(&self) -> Result<AudioOffer, OfferError> {
        let (audio, description) = self
            .contents
            .iter()
            .find_map(|c| {
                let d = c.description.as_ref()?;
                (d.media.as_deref() == Some("audio")).then_some((c, d))
            })
            .ok_or(OfferError::NoAudioContent)?;
        let opus = description
            .payload_types
            .iter()
            .find(|p| p.is("opus", 48_000, Some(2)))
            .ok_or(OfferError::NoOpus)?;
        let telephone_event = description
            .payload_types
            .iter()
            .find(|p| p.is("telephone-event", 8_000, None));
        let audio_level = description
            .hdrexts
            .iter()
            .find(|h| h.uri == AUDIO_LEVEL_URI);

        let transport = self.transport_for(audio).ok_or(OfferError::NoTransport)?;
        let (Some(ufrag), Some(pwd)) = (&transport.ufrag, &transport.pwd) else {
            return Err(OfferError::MissingIceCredentials);
        };
        let fingerprint = transport
            .fingerprints
            .iter()
            .find(|f| f.hash.eq_ignore_ascii_case("sha-256"))
            .or_else(|| transport.fingerprints.first())
            .ok_or(OfferError::NoFingerprint)?;
        if !matches!(fingerprint.setup, Some(Setup::Actpass | Setup::Passive)) {
            return Err(OfferError::BadSetup(fingerprint.setup));
        }

        Ok(AudioOffer {
            content_name: audio.name.clone(),
            ufrag: ufrag.clone(),
            pwd: pwd.clone(),
            fingerprint: fingerprint.clone(),
            candidates: transport.candidates.clone(),
            opus_pt: opus.id,
            telephone_event_pt: telephone_event.map(|p| p.id),
            audio_level_ext: audio_level.map(|h| h.id),
            sources: owned_sources(&description.sources),
            declined: self
                .contents
                .iter()
                .filter(|c| c.name != audio.name)
                .map(|c| c.name.clone())
                .collect(),
        })
    }

    /// For source-add / source-remove: the audio sources they name (video is not mixed). `None`
    /// for every other action.
    pub fn source_changes(&self) -> Option<SourceChange> {
        let sources = self
            .contents
            .iter()
            .filter(|c| is_audio(c))
            .filter_map(|c| c.description.as_ref())
            .flat_map(|d| owned_sources(&d.sources))
            .collect();
        match self.action {
            Action::SourceAdd => Some(SourceChange::Add(sources)),
            Action::SourceRemove => Some(SourceChange::Remove(sources)),
            _ => None,
        }
    }

    /// The content's own transport, else the transport of a content bundled with it.
    fn transport_for<'a>(&'a self, content: &'a Content) -> Option<&'a IceUdpTransport> {
        content.transport.as_ref().or_else(|| {
            let bundle = self
                .group
                .as_ref()
                .filter(|g| g.semantics == "BUNDLE" && g.contents.contains(&content.name))?;
            self.contents
                .iter()
                .filter(|c| bundle.contents.contains(&c.name))
                .find_map(|c| c.transport.as_ref())
        })
    }
}

/// Jicofo's source-add names its contents after the media and may leave out `media`.
fn is_audio(c: &Content) -> bool {
    match c.media() {
        Some(media) => media == "audio",
        None => c.name == "audio",
    }
}

/// Sources with an owner; like jigasi, sources without `<ssrc-info owner>` are not tracked.
fn owned_sources(sources: &[Source]) -> Vec<SourceOwner> {
    sources
        .iter()
        .filter_map(|s| {
            Some(SourceOwner {
                ssrc: s.ssrc,
                endpoint: endpoint_id(s.owner.as_deref()?)?.to_owned(),
            })
        })
        .collect()
}

/// `room@muc/abcd1234` (older Jicofo: the occupant JID) and `abcd1234` both name endpoint
/// `abcd1234`; `jvb` stays `jvb`.
pub fn endpoint_id(owner: &str) -> Option<&str> {
    let id = match owner.split_once('/') {
        Some((_, resource)) => resource,
        None => owner,
    };
    (!id.is_empty()).then_some(id)
}
