//! The settings model.
//!
//! One typed [`Settings`] tree, loaded in this order, later wins: built-in defaults (those of
//! docker-jitsi-meet) → a TOML file → docker-jitsi-meet environment variables → command-line
//! flags. Every value remembers its [`Origin`], so an error says which key, which source and what
//! is wrong, and `check-config` can print the effective settings ([`Loaded::render`]).
//!
//! Inside, one job per file:
//!
//! ```text
//!   keys      the registry: key, TOML shape, default, env vars, jigasi properties, secret, doc
//!   layers    the raw layered map  key → (text, origin)
//!   file      TOML file  → layers        env    environment → layers       flags  flags → layers
//!   values    typed values and their parsers (DomainName, SipUri, PortRange, Secret, …)
//!   build     raw map → Settings, collecting every error
//!   settings  the typed tree          render  check-config output          error  errors
//! ```
//!
//! The module never reads the process environment or panics on input: the caller passes a
//! snapshot, tests pass their own.

mod build;
mod env;
mod error;
mod file;
mod flags;
mod keys;
mod layers;
mod origin;
mod render;
mod settings;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use origin::Origin;
pub use settings::{
    ApiSettings, CallSettings, HealthSettings, LogSettings, MediaSettings, Settings, SipSettings,
    XmppSettings,
};
pub use values::{
    DomainName, Host, HttpUrl, InvalidValue, IpNet, JidNode, KeepAliveMethod, LogFormat, LogLevel,
    PortRange, RoomName, Secret, SipHeaderName, SipScheme, SipUri, Transport, XmppServer, XmppTls,
};

/// What to load from. `Debug` shows variable names only, never their values.
#[derive(Clone)]
pub struct ConfigInput<'a> {
    /// `--config FILE`.
    pub file: Option<&'a Path>,
    /// A snapshot of the process environment.
    pub env: &'a BTreeMap<String, String>,
    /// Flags in command-line order; later wins.
    pub flags: Vec<FlagValue>,
}

impl std::fmt::Debug for ConfigInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigInput")
            .field("file", &self.file)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("flags", &self.flags)
            .finish()
    }
}

/// One command-line setting. `Debug` masks the value of a secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct FlagValue {
    /// The flag as typed: `--set`, `--min-port`, …
    pub flag: String,
    /// The dotted key it sets.
    pub key: String,
    pub value: String,
}

impl FlagValue {
    pub fn new(flag: impl Into<String>, key: impl Into<String>, value: impl Into<String>) -> Self {
        FlagValue {
            flag: flag.into(),
            key: key.into(),
            value: value.into(),
        }
    }

    /// Parses the argument of `--set`: `key=value` (the value may be empty, or contain `=`).
    pub fn from_set_arg(arg: &str) -> Result<Self, String> {
        match arg.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok(FlagValue::new("--set", key.trim(), value))
            }
            _ => Err(format!("expected key=value, got {arg:?}")),
        }
    }
}

impl std::fmt::Debug for FlagValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = keys::lookup(&self.key).is_some_and(|spec| spec.secret);
        f.debug_struct("FlagValue")
            .field("flag", &self.flag)
            .field("key", &self.key)
            .field("value", &if secret { Secret::MASK } else { &self.value })
            .finish()
    }
}

/// The loaded settings, with warnings and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// Things that load fine but deserve attention: ignored docker variables, ignored jigasi
    /// properties, placeholder passwords. One line each, secrets never shown.
    pub warnings: Vec<String>,
    /// The origin of every key that has a value (dotted key → origin).
    pub origins: BTreeMap<String, Origin>,
    effective: BTreeMap<&'static str, build::Effective>,
}

impl Loaded {
    /// The effective settings as commented TOML, for `check-config`.
    pub fn render(&self) -> String {
        render::render(&self.effective)
    }

    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }
}

/// Loads defaults → file → environment → flags into [`Settings`], or every problem found.
pub fn load(input: &ConfigInput<'_>) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut raw = layers::RawMap::with_defaults();
    let file_usable = match input.file {
        Some(path) => file::apply(path, &mut raw, &mut errors),
        None => true,
    };
    env::apply(input.env, &mut raw, &mut errors, &mut warnings);
    flags::apply(&input.flags, &mut raw, &mut errors, &mut warnings);
    let built = build::build(&raw, file_usable);
    errors.extend(built.errors);
    warnings.extend(built.warnings);
    match built.settings {
        Some(settings) if errors.is_empty() => {
            let origins = built
                .effective
                .iter()
                .filter(|(_, e)| e.value.is_some())
                .filter_map(|(key, e)| Some(((*key).to_owned(), e.origin.clone()?)))
                .collect();
            Ok(Loaded {
                settings,
                warnings,
                origins,
                effective: built.effective,
            })
        }
        _ => Err(ConfigErrors(errors)),
    }
}
