//! The raw layered map: for each key, the text that won so far and where it came from. Sources
//! (`file`, `env`, `flags`) write into it in order; later writes win. Nothing is parsed here
//! beyond splitting lists; `build` turns the winners into typed settings.

use std::collections::{BTreeMap, BTreeSet};

use super::keys::{DefaultValue, KeySpec, Kind, KEYS};
use super::origin::Origin;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawText {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawValue {
    pub text: RawText,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RawMap {
    values: BTreeMap<&'static str, RawValue>,
    /// Keys a source gave in an unusable shape (already reported): not "missing" as well.
    rejected: BTreeSet<&'static str>,
}

/// Splits a comma-separated list, trimming items and dropping empty ones (sprig's
/// `splitList "," | compact`).
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

impl RawMap {
    /// The built-in defaults of every key that has one.
    pub(crate) fn with_defaults() -> Self {
        let mut map = RawMap::default();
        for spec in KEYS {
            let text = match spec.default {
                DefaultValue::None => continue,
                DefaultValue::Text(text) => RawText::One(text.to_owned()),
                DefaultValue::List(items) => {
                    RawText::Many(items.iter().map(|s| (*s).to_owned()).collect())
                }
            };
            map.set(spec, text, Origin::Default);
        }
        map
    }

    pub(crate) fn set(&mut self, spec: &'static KeySpec, text: RawText, origin: Origin) {
        self.values.insert(spec.key, RawValue { text, origin });
    }

    /// Sets a key from one text (environment, flag): lists are split on commas.
    pub(crate) fn set_text(&mut self, spec: &'static KeySpec, text: &str, origin: Origin) {
        let text = match spec.kind {
            Kind::List => RawText::Many(split_list(text)),
            _ => RawText::One(text.to_owned()),
        };
        self.set(spec, text, origin);
    }

    pub(crate) fn get(&self, key: &str) -> Option<&RawValue> {
        self.values.get(key)
    }

    /// Notes that a source gave `key` in a shape that could not be used.
    pub(crate) fn reject(&mut self, spec: &'static KeySpec) {
        self.rejected.insert(spec.key);
    }

    pub(crate) fn was_rejected(&self, key: &str) -> bool {
        self.rejected.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::lookup;

    #[test]
    fn lists_split_on_commas_and_drop_empty_items() {
        assert_eq!(split_list(" a, b,,c ,"), ["a", "b", "c"]);
        assert!(split_list("").is_empty());
    }

    #[test]
    fn later_writes_win() {
        let mut raw = RawMap::with_defaults();
        let spec = lookup("xmpp.domain").unwrap();
        assert_eq!(raw.get("xmpp.domain").unwrap().origin, Origin::Default);
        raw.set_text(spec, "a.example", Origin::Env("XMPP_DOMAIN".into()));
        raw.set_text(spec, "b.example", Origin::Flag("--set xmpp.domain".into()));
        let v = raw.get("xmpp.domain").unwrap();
        assert_eq!(v.text, RawText::One("b.example".into()));
        assert_eq!(v.origin, Origin::Flag("--set xmpp.domain".into()));
        assert!(raw.get("xmpp.password").is_none());
    }
}
