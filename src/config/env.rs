//! The environment layer, with docker-jitsi-meet's semantics: an empty variable is unset; the
//! registry's variables feed their keys; `JIGASI_CONFIGURATION` properties that have an equivalent
//! feed it too (losing to a dedicated variable); `JIGASI_MODE` must be `sip`; docker variables
//! that have no effect here produce one warning each. Anything else is not ours and is ignored.

use std::collections::BTreeMap;

use super::error::ConfigError;
use super::keys::{self, EnvSource, KeySpec, IGNORED_ENV, KEYS};
use super::layers::RawMap;
use super::origin::Origin;
use super::values::parse_bool;

pub(crate) const JIGASI_CONFIGURATION: &str = "JIGASI_CONFIGURATION";

pub(crate) fn apply(
    env: &BTreeMap<String, String>,
    raw: &mut RawMap,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    let get = |name: &str| env.get(name).map(String::as_str).filter(|v| !v.is_empty());

    if let Some(mode) = get("JIGASI_MODE") {
        check_mode(mode, errors);
    }
    // JIGASI_CONFIGURATION first, so that a dedicated variable for the same key wins.
    if let Some(configuration) = get(JIGASI_CONFIGURATION) {
        apply_jigasi_configuration(configuration, raw, warnings);
    }
    for spec in KEYS {
        apply_dedicated(spec, &get, raw, errors);
    }
    for (name, value) in env {
        if value.is_empty() {
            continue;
        }
        if let Some(why) = ignored_reason(name, value) {
            warnings.push(format!("environment variable {name} is ignored: {why}"));
        }
    }
}

fn check_mode(mode: &str, errors: &mut Vec<ConfigError>) {
    let origin = Origin::Env("JIGASI_MODE".into());
    match mode.trim().to_ascii_lowercase().as_str() {
        "sip" => {}
        "transcriber" => errors.push(ConfigError::source(
            &origin,
            Some(mode),
            "transcription is not supported by this gateway; run jigasi for transcription",
        )),
        _ => errors.push(ConfigError::source(
            &origin,
            Some(mode),
            "unknown mode (expected sip)",
        )),
    }
}

fn apply_dedicated<'e>(
    spec: &'static KeySpec,
    get: &impl Fn(&str) -> Option<&'e str>,
    raw: &mut RawMap,
    errors: &mut Vec<ConfigError>,
) {
    for source in spec.env {
        let Some(value) = get(source.var()) else {
            continue;
        };
        let origin = Origin::Env(source.var().to_owned());
        match *source {
            EnvSource::Var(_) => {
                raw.set_text(spec, value, origin);
                return;
            }
            EnvSource::WhenTrue { value: on, .. } => match parse_bool(value) {
                Ok(true) => {
                    raw.set_text(spec, on, origin);
                    return;
                }
                Ok(false) => {}
                Err(e) => errors.push(ConfigError::source(&origin, Some(value), e.message())),
            },
        }
    }
}

/// Docker appends `JIGASI_CONFIGURATION` (comma-separated `key=value`) to jigasi's properties.
/// Properties with an equivalent key are honoured; every other one is reported once.
fn apply_jigasi_configuration(configuration: &str, raw: &mut RawMap, warnings: &mut Vec<String>) {
    for item in configuration.split(',') {
        let item = item.trim();
        if item.is_empty() || item.starts_with('#') || item.starts_with('!') {
            continue;
        }
        let Some((name, value)) = split_property(item) else {
            warnings.push(format!(
                "ignored an item of {JIGASI_CONFIGURATION} without '=' (expected property=value)"
            ));
            continue;
        };
        let spec = keys::KEYS
            .iter()
            .find(|spec| spec.props.iter().any(|p| keys::prop_matches(p, &name)));
        match spec {
            Some(spec) => raw.set_text(
                spec,
                value.trim(),
                Origin::Env(format!("{JIGASI_CONFIGURATION}: {name}")),
            ),
            None => warnings.push(format!(
                "ignored jigasi property {name} in {JIGASI_CONFIGURATION}: no equivalent setting in this gateway"
            )),
        }
    }
}

/// Splits a Java properties line at the first unescaped `=` or `:`, unescaping the key.
fn split_property(item: &str) -> Option<(String, &str)> {
    let mut name = String::new();
    let mut chars = item.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    name.push(escaped);
                }
            }
            '=' | ':' => return Some((name.trim().to_owned(), &item[i + 1..])),
            c => name.push(c),
        }
    }
    None
}

fn ignored_reason(name: &str, value: &str) -> Option<&'static str> {
    if matches!(name, "SENTRY_DSN" | "JIGASI_SENTRY_DSN") && matches!(value.trim(), "0" | "\"0\"") {
        // docker-compose passes SENTRY_DSN="0" (quotes included) when Sentry is off.
        return None;
    }
    IGNORED_ENV.iter().find_map(|(pattern, why)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        };
        hit.then_some(*why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_lines_split_at_the_first_unescaped_separator() {
        assert_eq!(
            split_property("org.jitsi.jigasi.X=a=b"),
            Some(("org.jitsi.jigasi.X".to_owned(), "a=b"))
        );
        assert_eq!(
            split_property(r"a\:b\=c = v"),
            Some(("a:b=c".to_owned(), " v"))
        );
        assert_eq!(split_property("no-separator"), None);
    }

    #[test]
    fn sentry_off_values_are_not_warned_about() {
        assert_eq!(ignored_reason("SENTRY_DSN", "\"0\""), None);
        assert_eq!(ignored_reason("SENTRY_DSN", "0"), None);
        assert!(ignored_reason("SENTRY_DSN", "https://key@sentry.example/1").is_some());
        assert!(ignored_reason("GC_PROJECT_ID", "x").is_some());
        assert!(ignored_reason("JIGASI_TRANSCRIBER_USER", "x").is_some());
        assert_eq!(ignored_reason("TZ", "UTC"), None);
        assert_eq!(ignored_reason("AUTOSCALER_URL", "x"), None);
    }
}
