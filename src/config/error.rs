//! Configuration errors: each names the key, the source and what is wrong, on one line.

use std::fmt;

use super::origin::Origin;

/// What kind of problem a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A value that does not parse or does not fit with another value.
    Invalid,
    /// A required setting that no source provides.
    Missing,
    /// A key the gateway does not know (usually a typo).
    UnknownKey,
    /// A source that cannot be used at all: unreadable file, TOML syntax error, unsupported mode.
    Source,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ErrorKind,
    /// The dotted key (`media.port_min`), when the problem concerns one.
    pub key: Option<String>,
    /// Where the offending value came from.
    pub origin: Option<Origin>,
    /// The offending value as given, or `"********"` for a secret.
    pub value: Option<String>,
    /// What is wrong, e.g. `not a port number (expected 1024-65535)`.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn invalid(
        key: &str,
        value: Option<&str>,
        origin: &Origin,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError {
            kind: ErrorKind::Invalid,
            key: Some(key.to_owned()),
            origin: Some(origin.clone()),
            value: value.map(str::to_owned),
            problem: problem.into(),
        }
    }

    pub(crate) fn missing(key: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            kind: ErrorKind::Missing,
            key: Some(key.to_owned()),
            origin: None,
            value: None,
            problem: problem.into(),
        }
    }

    /// `detail` is appended in parentheses (line number, suggestion); may be empty.
    pub(crate) fn unknown_key(key: &str, origin: &Origin, detail: impl Into<String>) -> Self {
        ConfigError {
            kind: ErrorKind::UnknownKey,
            key: Some(key.to_owned()),
            origin: Some(origin.clone()),
            value: None,
            problem: detail.into(),
        }
    }

    pub(crate) fn source(origin: &Origin, value: Option<&str>, problem: impl Into<String>) -> Self {
        ConfigError {
            kind: ErrorKind::Source,
            key: None,
            origin: Some(origin.clone()),
            value: value.map(str::to_owned),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ErrorKind::UnknownKey {
            write!(
                f,
                "unknown key {:?}",
                self.key.as_deref().unwrap_or_default()
            )?;
            if let Some(origin) = &self.origin {
                write!(f, " in {origin}")?;
            }
            if !self.problem.is_empty() {
                write!(f, " ({})", self.problem)?;
            }
            return Ok(());
        }
        match (&self.key, &self.value, &self.origin) {
            (Some(key), Some(value), Some(origin)) => write!(f, "{key} = {value:?} ({origin})")?,
            (Some(key), Some(value), None) => write!(f, "{key} = {value:?}")?,
            (Some(key), None, Some(origin)) => write!(f, "{key} ({origin})")?,
            (Some(key), None, None) => write!(f, "{key}")?,
            (None, Some(value), Some(origin)) => write!(f, "{origin} = {value:?}")?,
            (None, None, Some(origin)) => write!(f, "{origin}")?,
            (None, Some(value), None) => write!(f, "{value:?}")?,
            (None, None, None) => f.write_str("configuration")?,
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found while loading, in source order: file, environment, flags, then values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn errors_read_key_value_origin_problem() {
        let e = ConfigError::invalid(
            "media.port_min",
            Some("abc"),
            &Origin::Env("JIGASI_PORT_MIN".into()),
            "not a port number (expected 1024-65535)",
        );
        assert_eq!(
            e.to_string(),
            r#"media.port_min = "abc" (environment variable JIGASI_PORT_MIN): not a port number (expected 1024-65535)"#
        );
        let e = ConfigError::unknown_key(
            "xmpp.domian",
            &Origin::File(PathBuf::from("/etc/gw.toml")),
            "",
        );
        assert_eq!(
            e.to_string(),
            r#"unknown key "xmpp.domian" in file /etc/gw.toml"#
        );
        let e = ConfigError::missing("xmpp.password", "required but not set");
        assert_eq!(e.to_string(), "xmpp.password: required but not set");
    }

    #[test]
    fn several_errors_print_one_per_line() {
        let errors = ConfigErrors(vec![
            ConfigError::missing("a.b", "x"),
            ConfigError::missing("c.d", "y"),
        ]);
        assert_eq!(errors.to_string(), "a.b: x\nc.d: y");
    }
}
