//! Logs: `tracing` to standard output, human-readable by default or one JSON object per line.
//! The level comes from `RUST_LOG` when set, else from the configured default.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("invalid log filter {filter:?} (from {source_name}): {reason}")]
    Filter {
        filter: String,
        source_name: &'static str,
        reason: String,
    },
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// Installs the process-wide subscriber. `default_level` applies when `RUST_LOG` is unset or
/// empty (an empty variable counts as unset, as for every other variable we read).
pub fn init(format: Format, default_level: &str) -> Result<(), LogInitError> {
    let (mut filter_text, source_name) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => (v, "RUST_LOG"),
        _ => (default_level.to_string(), "log.level"),
    };
    // rsipstack logs every raw SIP message at INFO; keep that for those who ask for it by name.
    if !filter_text.contains("rsipstack") {
        filter_text.push_str(",rsipstack=warn");
    }
    let filter = EnvFilter::try_new(&filter_text).map_err(|e| LogInitError::Filter {
        filter: filter_text.clone(),
        source_name,
        reason: e.to_string(),
    })?;
    // Colour only for a terminal: in a file, journald or `docker logs` the escape codes would
    // split `call_id=…` and break a grep for it. NO_COLOR (no-color.org) turns it off anywhere.
    use std::io::IsTerminal;
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    let result = match format {
        Format::Human => builder.try_init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|_| LogInitError::AlreadyInstalled)
}
