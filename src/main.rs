//! The `jitsi-sip-gateway` binary: parse flags, load the configuration, start the modules, wait
//! for a signal.

use clap::{Parser, Subcommand};
use jitsi_sip_gateway::config::{self, ConfigInput, FlagValue};
use jitsi_sip_gateway::{api, call, logging, media, sip, xmpp};
use std::collections::BTreeMap;
use std::net::IpAddr;
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
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the gateway stopped");
            ExitCode::FAILURE
        }
    }
}

/// Starts the modules, takes calls until a stop signal, then ends them.
async fn serve(settings: Arc<config::Settings>) -> anyhow::Result<()> {
    use anyhow::Context;
    let xmpp_server = settings
        .xmpp
        .servers
        .first()
        .context("no XMPP server configured")?;
    let advertise = advertise_ip(
        settings.media.bind_ip,
        &xmpp_server.host.to_string(),
        xmpp_server.port,
    )
    .await;
    let media = media::MediaConfig::new(settings.media.clone(), settings.media.bind_ip, advertise)
        .context("media settings")?;
    let pool = Arc::new(xmpp::Pool::start(
        xmpp::ConnectOptions::per_call(&settings.xmpp, settings.xmpp.tls.into()),
        settings.xmpp.pool_size,
    ));
    let (sip_server, mut incoming) = sip::SipServer::start(&settings.sip)
        .await
        .context("starting SIP")?;
    let registry = Arc::new(call::Registry::default());
    let (api_addr, api) = api::bind(
        settings.api.bind_addr(),
        api::ApiState {
            registry: registry.clone(),
            xmpp_idle: {
                let pool = pool.clone();
                Arc::new(move || pool.stats().idle)
            },
        },
    )
    .await
    .context("starting the HTTP API")?;
    let api = tokio::spawn(api);
    // Installed before "ready" is announced: a supervisor may signal as soon as it reads it.
    let stop = stop_signals().context("installing the signal handlers")?;
    let sip_addrs: Vec<String> = sip_server
        .local_addrs()
        .iter()
        .map(|(t, a)| format!("{t}:{a}"))
        .collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        sip = ?sip_addrs,
        api = %api_addr,
        media_ip = %advertise,
        xmpp = %format!("{}:{}", xmpp_server.host, xmpp_server.port),
        "gateway ready"
    );

    let ctx = Arc::new(call::CallContext {
        settings: settings.clone(),
        pool: pool.clone(),
        registry,
        media,
    });
    let mut calls = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            next = incoming.recv() => match next {
                Some(call) => {
                    calls.spawn(call::run(ctx.clone(), call));
                }
                None => anyhow::bail!("the SIP server stopped"),
            },
            Some(done) = calls.join_next(), if !calls.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a call task failed");
                }
            }
            signal = &mut stop => {
                match signal {
                    Ok(signal) => tracing::info!(signal, calls = calls.len(), "stopping"),
                    Err(e) => tracing::error!(error = %e, "cannot wait for signals; stopping"),
                }
                break;
            }
        }
    }
    // Graceful draining arrives with the operations work; for now the calls end at once (each
    // dropped dialog hangs up its phone).
    calls.shutdown().await;
    sip_server.shutdown().await;
    drop(ctx);
    if let Ok(pool) = Arc::try_unwrap(pool) {
        pool.shutdown().await;
    }
    api.abort();
    Ok(())
}

/// The address to advertise for media: the bind address when it is a specific one, else the
/// address the route toward the XMPP server (where the bridges usually are) leaves from.
async fn advertise_ip(bind: IpAddr, xmpp_host: &str, xmpp_port: u16) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    let target = tokio::net::lookup_host((xmpp_host, xmpp_port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next());
    let routed = target.and_then(|t| {
        let s = std::net::UdpSocket::bind((bind, 0)).ok()?;
        s.connect(t).ok()?;
        s.local_addr().ok().map(|a| a.ip())
    });
    routed.unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Registers SIGTERM and SIGINT now; the returned future resolves with the first to arrive.
fn stop_signals(
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<&'static str>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    })
}
