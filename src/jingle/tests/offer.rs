//! Reducing Jicofo's offer to the audio the gateway takes, and source-add/remove to audio SSRCs.

use super::super::*;
use super::{fixture, jingle, xml};

fn owner(ssrc: u32, endpoint: &str) -> SourceOwner {
    SourceOwner {
        ssrc,
        endpoint: endpoint.into(),
    }
}

fn offer_from(text: &str) -> Result<AudioOffer, OfferError> {
    JingleIq::parse(&xml(text)).unwrap().audio_offer()
}

#[test]
fn jicofo_offer_gives_opus_dtmf_audio_level_sources_and_transport() {
    let offer = jingle("session-initiate-jigasi.xml").audio_offer().unwrap();
    assert_eq!(offer.content_name, "audio");
    assert_eq!(
        (
            offer.opus_pt,
            offer.telephone_event_pt,
            offer.audio_level_ext
        ),
        (111, Some(126), Some(1))
    );
    assert_eq!(
        offer.sources,
        [
            owner(2735473921, "abcd1234"),
            owner(1350206211, "5f3a09c1"),
            owner(411162308, "jvb")
        ]
    );
    assert_eq!(
        (offer.ufrag.as_str(), offer.pwd.as_str()),
        ("2fk1v1hq0s9q4t", "1rpq8m9vkb0t2gr5ia6lcn3h7e")
    );
    assert_eq!(offer.fingerprint.hash, "sha-256");
    assert_eq!(offer.fingerprint.setup, Some(Setup::Actpass));
    assert!(offer.fingerprint.value.starts_with("3A:7B:1C:94"));
    assert_eq!(offer.candidates.len(), 3);
    assert!(offer.declined.is_empty());
}

#[test]
fn owners_given_as_occupant_jids_become_endpoint_ids() {
    let offer = jingle("session-initiate-jigasi-jid-owners.xml")
        .audio_offer()
        .unwrap();
    assert_eq!(
        offer.sources,
        [
            owner(3312760478, "abcd1234"),
            owner(2017405813, "5f3a09c1"),
            owner(4039389863, "jvb")
        ]
    );
}

#[test]
fn endpoint_ids_come_from_either_owner_form() {
    assert_eq!(
        endpoint_id("room@conference.example.com/abcd1234"),
        Some("abcd1234")
    );
    assert_eq!(endpoint_id("abcd1234"), Some("abcd1234"));
    assert_eq!(endpoint_id("jvb"), Some("jvb"));
    assert_eq!(endpoint_id("room@conference.example.com/"), None);
    assert_eq!(endpoint_id(""), None);
}

#[test]
fn browser_offer_takes_audio_and_declines_video_and_data() {
    let offer = jingle("session-initiate-browser.xml")
        .audio_offer()
        .unwrap();
    assert_eq!(offer.declined, ["video", "data"]);
    assert_eq!(
        offer.sources,
        [owner(1350206211, "5f3a09c1"), owner(3659539811, "jvb")]
    );
    assert_eq!(offer.audio_level_ext, Some(1));
}

#[test]
fn sources_without_an_owner_are_not_tracked() {
    let offer = jingle("ljm-session-initiate.xml").audio_offer().unwrap();
    assert!(offer.sources.is_empty());
    assert_eq!((offer.opus_pt, offer.telephone_event_pt), (111, Some(126)));
}

#[test]
fn the_bundled_transport_serves_an_audio_content_without_its_own() {
    let text = fixture("session-initiate-browser.xml");
    let mut iq = JingleIq::parse(&xml(text)).unwrap();
    iq.contents[0].transport = None;
    let offer = iq.audio_offer().unwrap();
    assert_eq!(offer.ufrag, "7op5v1hq8vn2rf");
    assert_eq!(offer.candidates.len(), 2);

    iq.group = None;
    assert_eq!(iq.audio_offer(), Err(OfferError::NoTransport));
}

#[test]
fn opus_is_found_by_name_without_case_and_needs_48000_over_2() {
    let text = fixture("session-initiate-jigasi.xml");
    let upper = offer_from(&text.replace("name=\"opus\"", "name=\"OPUS\"")).unwrap();
    assert_eq!(upper.opus_pt, 111);
    assert_eq!(
        offer_from(&text.replace("channels=\"2\"", "channels=\"1\"")),
        Err(OfferError::NoOpus)
    );
    assert_eq!(
        offer_from(&text.replace("clockrate=\"48000\"", "clockrate=\"16000\"")),
        Err(OfferError::NoOpus)
    );
    assert_eq!(
        offer_from(&text.replace("name=\"opus\"", "name=\"ISAC\"")),
        Err(OfferError::NoOpus)
    );
}

#[test]
fn telephone_event_and_audio_level_are_optional() {
    let text = fixture("session-initiate-jigasi.xml")
        .replace("name=\"telephone-event\"", "name=\"CN\"")
        .replace("ssrc-audio-level", "ssrc-audio-level-not");
    let offer = offer_from(&text).unwrap();
    assert_eq!(
        (offer.telephone_event_pt, offer.audio_level_ext),
        (None, None)
    );
}

#[test]
fn offer_without_audio_is_refused() {
    let text = fixture("session-initiate-jigasi.xml").replace("media=\"audio\"", "media=\"video\"");
    assert_eq!(offer_from(&text), Err(OfferError::NoAudioContent));
    assert_eq!(
        jingle("session-terminate-busy.xml").audio_offer(),
        Err(OfferError::NoAudioContent)
    );
}

#[test]
fn offer_without_ice_credentials_is_refused() {
    let text = fixture("session-initiate-jigasi.xml");
    assert_eq!(
        offer_from(&text.replace(" ufrag=\"2fk1v1hq0s9q4t\"", "")),
        Err(OfferError::MissingIceCredentials)
    );
    assert_eq!(
        offer_from(&text.replace(" pwd=\"1rpq8m9vkb0t2gr5ia6lcn3h7e\"", "")),
        Err(OfferError::MissingIceCredentials)
    );
}

#[test]
fn offer_without_fingerprint_is_refused() {
    let mut iq = jingle("session-initiate-jigasi.xml");
    iq.contents[0]
        .transport
        .as_mut()
        .unwrap()
        .fingerprints
        .clear();
    assert_eq!(iq.audio_offer(), Err(OfferError::NoFingerprint));
}

#[test]
fn offer_must_leave_us_the_dtls_client_role() {
    let text = fixture("session-initiate-jigasi.xml");
    assert_eq!(
        offer_from(&text.replace("setup=\"actpass\"", "setup=\"active\"")),
        Err(OfferError::BadSetup(Some(Setup::Active)))
    );
    assert_eq!(
        offer_from(&text.replace(" setup=\"actpass\"", "")),
        Err(OfferError::BadSetup(None))
    );
    let passive = offer_from(&text.replace("setup=\"actpass\"", "setup=\"passive\"")).unwrap();
    assert_eq!(passive.fingerprint.setup, Some(Setup::Passive));
}

#[test]
fn sha_256_fingerprint_is_preferred() {
    let mut iq = jingle("session-initiate-jigasi.xml");
    let t = iq.contents[0].transport.as_mut().unwrap();
    let mut sha1 = t.fingerprints[0].clone();
    sha1.hash = "sha-1".into();
    sha1.value = "AA:BB".into();
    t.fingerprints.insert(0, sha1);
    assert_eq!(iq.audio_offer().unwrap().fingerprint.hash, "sha-256");
}

#[test]
fn source_add_names_the_audio_sources_to_add() {
    assert_eq!(
        jingle("source-add.xml").source_changes(),
        Some(SourceChange::Add(vec![
            owner(2948374612, "e7c1b3d5"),
            owner(918273645, "0a9b8c7d")
        ]))
    );
}

#[test]
fn source_remove_names_the_audio_sources_to_remove() {
    assert_eq!(
        jingle("source-remove.xml").source_changes(),
        Some(SourceChange::Remove(vec![owner(1350206211, "5f3a09c1")]))
    );
}

#[test]
fn source_change_content_without_media_counts_as_audio_by_name() {
    let iq = JingleIq::parse(&xml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='s'>\
         <content name='audio'><description xmlns='urn:xmpp:jingle:apps:rtp:1'>\
         <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='7'>\
         <ssrc-info xmlns='http://jitsi.org/jitmeet' owner='e1'/></source>\
         </description></content></jingle>",
    ))
    .unwrap();
    assert_eq!(
        iq.source_changes(),
        Some(SourceChange::Add(vec![owner(7, "e1")]))
    );
}

#[test]
fn other_actions_have_no_source_changes() {
    assert_eq!(jingle("session-initiate-jigasi.xml").source_changes(), None);
    assert_eq!(jingle("transport-replace.xml").source_changes(), None);
}

#[test]
fn transport_replace_offers_the_new_transport() {
    let offer = jingle("transport-replace.xml").audio_offer().unwrap();
    assert_eq!(offer.ufrag, "1c3a5e7g9i2k4m");
    assert_eq!(
        offer.sources,
        [owner(2735473921, "abcd1234"), owner(2216349087, "jvb")]
    );
}
