//! The `jitsi-sip-gateway` binary: parse flags, load the configuration, start the modules, wait
//! for a signal.

use anyhow::Context;
use clap::{Parser, Subcommand};
use jitsi_sip_gateway::config::{self, ConfigInput, FlagValue};
use jitsi_sip_gateway::{gateway, logging, media};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code for a configuration the gateway refuses.
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "jitsi-sip-gateway",
    version,
    about = "SIP gateway for Jitsi Meet"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// TOML configuration file (see config/gateway.example.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Override any setting, e.g. `--set media.port_min=30000` (repeatable; wins over the file
    /// and the environment).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,

    /// Log format: human (default) or json.
    #[arg(long, global = true, value_name = "human|json")]
    log_format: Option<String>,

    /// The gateway's own SIP listening address (sip.listen), e.g. 0.0.0.0:5060.
    #[arg(long, global = true, value_name = "ADDR")]
    sip_listen: Option<String>,

    #[command(flatten)]
    legacy: LegacyFlags,
}

/// Flags that jigasi's start scripts pass (docker: `--nocomponent=true --configdir=/run/jigasi
/// --configdirname=config --min-port=… --max-port=…`; Debian: `--host --domain --logdir …`).
/// Accepted so the gateway can take jigasi's place; the port range is honoured.
#[derive(clap::Args, Debug)]
struct LegacyFlags {
    #[arg(long = "min-port", global = true, hide = true)]
    min_port: Option<String>,
    #[arg(long = "max-port", global = true, hide = true)]
    max_port: Option<String>,
    #[arg(long, global = true, hide = true, num_args = 0..=1, default_missing_value = "true")]
    nocomponent: Option<String>,
    #[arg(long, global = true, hide = true)]
    configdir: Option<String>,
    #[arg(long, global = true, hide = true)]
    configdirname: Option<String>,
    #[arg(long, global = true, hide = true, num_args = 0..=1, default_missing_value = "true")]
    configwritable: Option<String>,
    #[arg(long, global = true, hide = true)]
    logdir: Option<String>,
    #[arg(long, global = true, hide = true)]
    host: Option<String>,
    #[arg(long, global = true, hide = true)]
    domain: Option<String>,
    #[arg(long, global = true, hide = true)]
    subdomain: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Print the effective settings (secrets masked, each with its source) and exit; exits
    /// non-zero, naming each bad value, if the configuration is invalid.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let flags = match flag_values(&cli) {
        Ok(f) => f,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let input = ConfigInput {
        file: cli.config.as_deref(),
        env: &env,
        flags,
    };
    let loaded = match config::load(&input) {
        Ok(l) => l,
        Err(errors) => {
            let verb = match cli.command {
                Some(Command::CheckConfig) => "the configuration is invalid",
                _ => "refusing to start: the configuration is invalid",
            };
            eprintln!("error: {verb} ({} problem(s)):", errors.0.len());
            for e in errors.iter() {
                eprintln!("  {e}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", loaded.render());
            ExitCode::SUCCESS
        }
        Command::Run => run(loaded),
    }
}

/// Command-line settings in the order they take effect (later wins): specific flags, then
/// `--set` in the order given.
fn flag_values(cli: &Cli) -> Result<Vec<FlagValue>, String> {
    let specific = [
        ("--min-port", "media.port_min", &cli.legacy.min_port),
        ("--max-port", "media.port_max", &cli.legacy.max_port),
        ("--log-format", "log.format", &cli.log_format),
        ("--sip-listen", "sip.listen", &cli.sip_listen),
    ];
    let mut flags: Vec<FlagValue> = specific
        .into_iter()
        .filter_map(|(flag, key, value)| value.as_ref().map(|v| FlagValue::new(flag, key, v)))
        .collect();
    for item in &cli.set {
        flags.push(FlagValue::from_set_arg(item).map_err(|e| format!("--set: {e}"))?);
    }
    Ok(flags)
}

fn run(loaded: config::Loaded) -> ExitCode {
    let settings = Arc::new(loaded.settings);
    let format = match settings.log.format {
        config::LogFormat::Human => logging::Format::Human,
        config::LogFormat::Json => logging::Format::Json,
    };
    if let Err(e) = logging::init(format, &settings.log.level) {
        eprintln!("error: refusing to start: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    // Before any TLS or DTLS: rsipstack and tokio-xmpp both bring rustls, which refuses to pick
    // between two compiled-in providers at run time.
    let _ = rustls::crypto::ring::default_provider().install_default();
    media::install_dtls_crypto();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let signals = stop_signals().context("installing the signal handlers")?;
        gateway::serve(settings, signals).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the gateway stopped");
            ExitCode::FAILURE
        }
    }
}

/// Forwards every SIGTERM and SIGINT, registered now: a supervisor may signal as soon as it
/// reads "gateway ready".
fn stop_signals() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<&'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if tx.send(name).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
