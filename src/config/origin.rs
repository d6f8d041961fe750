//! Where a setting's value came from.

use std::fmt;
use std::path::PathBuf;

/// The source of one setting's value. Sources are applied in this order, later wins:
/// built-in default, config file, environment, command-line flag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The built-in default (docker-jitsi-meet's default where it has one).
    Default,
    /// The TOML file given with `--config`.
    File(PathBuf),
    /// An environment variable, by name; for a property inside `JIGASI_CONFIGURATION` the text is
    /// `"JIGASI_CONFIGURATION: <property>"`.
    Env(String),
    /// A command-line flag as typed, e.g. `"--set xmpp.domain"` or `"--min-port"`.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}
