//! The load an instance publishes in its brewery presence, as the colibri `<stats>` element
//! Jicofo and Prosody read (reference `jigasi-behaviour.md` 2.3, 2.4). Pure.
//!
//! Jicofo picks, among instances not in graceful shutdown with `supports_sip=true`, the one with
//! the fewest `participants` (regions first); Prosody's invite module the lowest `stress_level`.

use xmpp_parsers::minidom::Element;

use crate::xmpp::stanzas::{el, name, NS_COLIBRI, VERSION};

/// What changes in the stats; the version, `supports_sip=true` and
/// `supports_transcription=false` are constants, and the region comes from `xmpp.region`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BreweryStats {
    /// Calls currently in a room.
    pub conferences: usize,
    /// Over those calls, the other members of their rooms (jigasi counts room members − 1).
    pub participants: usize,
    /// Draining: Jicofo stops sending dials here, and the brewery refuses new ones.
    pub graceful_shutdown: bool,
    /// Load between 0 and 1 (jigasi: conferences / 100).
    pub stress_level: f64,
}

/// `<stats xmlns="http://jitsi.org/protocol/colibri">` with jigasi's stat names, in its order.
pub(super) fn stats_element(stats: &BreweryStats, region: Option<&str>) -> Element {
    let stress = if stats.stress_level.is_finite() {
        stats.stress_level.max(0.0)
    } else {
        0.0
    };
    let mut list: Vec<(&str, String)> = vec![
        ("conferences", stats.conferences.to_string()),
        ("participants", stats.participants.to_string()),
        ("graceful_shutdown", stats.graceful_shutdown.to_string()),
        ("stress_level", stress.to_string()),
    ];
    if let Some(region) = region {
        list.push(("region", region.to_string()));
    }
    list.extend([
        ("version", VERSION.to_string()),
        ("supports_transcription", "false".to_string()),
        ("supports_sip", "true".to_string()),
    ]);
    el("stats", NS_COLIBRI)
        .append_all(list.into_iter().map(|(n, v)| {
            el("stat", NS_COLIBRI)
                .attr(name("name"), n)
                .attr(name("value"), v)
                .build()
        }))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanzas::test_support::xml;

    #[test]
    fn stats_carry_jigasis_stat_names_and_values() {
        let stats = BreweryStats {
            conferences: 3,
            participants: 11,
            graceful_shutdown: false,
            stress_level: 0.03,
        };
        assert_eq!(
            stats_element(&stats, Some("eu-west-1")),
            xml(&format!(
                r#"<stats xmlns="http://jitsi.org/protocol/colibri">
                     <stat name="conferences" value="3"/>
                     <stat name="participants" value="11"/>
                     <stat name="graceful_shutdown" value="false"/>
                     <stat name="stress_level" value="0.03"/>
                     <stat name="region" value="eu-west-1"/>
                     <stat name="version" value="{VERSION}"/>
                     <stat name="supports_transcription" value="false"/>
                     <stat name="supports_sip" value="true"/>
                   </stats>"#
            ))
        );
    }

    #[test]
    fn region_is_left_out_when_not_configured_and_odd_stress_is_zero() {
        let stats = BreweryStats {
            graceful_shutdown: true,
            stress_level: f64::NAN,
            ..BreweryStats::default()
        };
        assert_eq!(
            stats_element(&stats, None),
            xml(&format!(
                r#"<stats xmlns="http://jitsi.org/protocol/colibri">
                     <stat name="conferences" value="0"/>
                     <stat name="participants" value="0"/>
                     <stat name="graceful_shutdown" value="true"/>
                     <stat name="stress_level" value="0"/>
                     <stat name="version" value="{VERSION}"/>
                     <stat name="supports_transcription" value="false"/>
                     <stat name="supports_sip" value="true"/>
                   </stats>"#
            ))
        );
    }
}
