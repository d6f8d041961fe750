//! The running gateway: starts the modules, takes calls in (SIP) and out (Rayo dials from the
//! brewery), publishes its load in the brewery, and stops. The first stop signal drains: the
//! brewery says `graceful_shutdown`, new calls are refused, calls in progress go on until they end
//! or `call.drain_timeout_s`; a second signal ends the calls at once. Then the gateway
//! unregisters, leaves the brewery and returns.

use crate::call::{self, CallContext, Load, Registry};
use crate::config::Settings;
use crate::sip::{self, Reason};
use crate::xmpp::{self, BreweryStats, ErrorCondition, RayoRequest};
use crate::{api, media};
use anyhow::Context;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

mod health;
mod sip_check;

/// How long calls get to hang up properly once told to end, before their tasks are dropped.
const HANGUP_GRACE: Duration = Duration::from_secs(5);
const SHUTTING_DOWN: &str = "the gateway is shutting down";

/// Where the gateway is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Refusing new calls, waiting for those in progress.
    Draining,
}

/// Runs until `signals` says to stop (see the module doc) or a module fails for good.
pub async fn serve(
    settings: Arc<Settings>,
    mut signals: mpsc::UnboundedReceiver<&'static str>,
) -> anyhow::Result<()> {
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
    let sip_server = Arc::new(sip_server);
    // jigasi's HEALTH_CHECK_SIP_URI: a call every health.interval, read by /about/health.
    let (sip_check, sip_check_status) = match &settings.health.sip_uri {
        Some(uri) => {
            let sdp_ip = settings.sip.public_address.unwrap_or(media.advertise_ip);
            let (task, status) = sip_check::driver::spawn(
                sip_server.clone(),
                uri.to_string(),
                &settings.health,
                media.clone(),
                sdp_ip,
            );
            (Some(task), Some(status))
        }
        None => (None, None),
    };
    let registry = Arc::new(Registry::default());
    let (phase_tx, phase) = watch::channel(Phase::Serving);
    let (stats_tx, stats) = watch::channel(BreweryStats::default());
    let publisher = tokio::spawn(publish_load(registry.load(), phase.clone(), stats_tx));
    let (breweries, mut dials) = start_breweries(&settings, stats)?;

    // POST /about/shutdown drains as a first signal does.
    let (drain_tx, mut drain_requests) = mpsc::unbounded_channel();
    let (api_addr, api) = api::bind(
        settings.api.bind_addr(),
        api::ApiState {
            registry: registry.clone(),
            xmpp_idle: {
                let pool = pool.clone();
                Arc::new(move || pool.stats().idle)
            },
            health: health_source(
                &breweries,
                settings.brewery_required(),
                sip_server.registration(),
                sip_check_status,
            ),
            draining: {
                let phase = phase.clone();
                Arc::new(move || *phase.borrow() == Phase::Draining)
            },
            shutdown: settings.api.shutdown_enabled.then_some(drain_tx),
        },
    )
    .await
    .context("starting the HTTP API")?;
    let api = tokio::spawn(api);

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
        breweries = breweries.len(),
        "gateway ready"
    );

    let (hangup_tx, hangup) = watch::channel(false);
    let ctx = Arc::new(CallContext {
        settings: settings.clone(),
        pool: pool.clone(),
        registry,
        media,
        sip: sip_server.clone(),
        hangup,
    });
    let mut calls = JoinSet::new();
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    loop {
        let draining = *phase.borrow() == Phase::Draining;
        // What asked for a drain, if anything did this turn.
        let drain_by: Option<&'static str> = tokio::select! {
            next = incoming.recv() => match next {
                Some(call) if draining => {
                    tracing::info!(call_id = %call.call_id, "refusing a call: draining");
                    if let Err(e) = call.dialog.reject(503, Some(Reason::new(503, SHUTTING_DOWN))) {
                        tracing::warn!(error = %e, "cannot refuse the call");
                    }
                    None
                }
                Some(call) => {
                    calls.spawn(call::run(ctx.clone(), call));
                    None
                }
                None => anyhow::bail!("the SIP server stopped"),
            },
            Some(request) = dials.recv() => {
                if draining {
                    refuse_dial(request);
                } else {
                    calls.spawn(call::run_outbound(ctx.clone(), request));
                }
                None
            }
            Some(done) = calls.join_next(), if !calls.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a call task failed");
                }
                if draining && calls.is_empty() {
                    tracing::info!("drained: no calls left");
                    break;
                }
                None
            }
            signal = signals.recv() => {
                let signal = signal.unwrap_or("the signal handler ended");
                if draining {
                    tracing::info!(signal, calls = calls.len(), "second stop signal: ending the calls now");
                    break;
                }
                Some(signal)
            }
            Some(request) = drain_requests.recv(), if !draining => Some(request),
            _ = sleep_until(drain_deadline), if drain_deadline.is_some() => {
                tracing::warn!(calls = calls.len(), "drain timeout: ending the calls in progress");
                break;
            }
        };
        if let Some(by) = drain_by {
            phase_tx.send_replace(Phase::Draining);
            if calls.is_empty() {
                tracing::info!(by, "stopping: no calls in progress");
                break;
            }
            let timeout = settings.call.drain_timeout;
            tracing::info!(by, calls = calls.len(), timeout_s = ?timeout.map(|t| t.as_secs()),
                "draining: new calls refused, waiting for the calls in progress (a stop signal ends them)");
            drain_deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        }
    }
    phase_tx.send_replace(Phase::Draining);
    // Before the calls end: its call is hung up like theirs, and it holds the SIP server.
    if let Some(check) = sip_check {
        check.stop().await;
    }
    end_calls(&mut calls, &hangup_tx).await;
    drop(ctx);
    // Dials that arrive while the brewery is leaving are refused, not dropped.
    dials.close();
    while let Ok(request) = dials.try_recv() {
        refuse_dial(request);
    }
    for brewery in breweries {
        brewery.shutdown().await;
    }
    publisher.abort();
    match Arc::try_unwrap(sip_server) {
        Ok(sip) => sip.shutdown().await,
        Err(_) => tracing::warn!("SIP still in use at shutdown; not unregistering"),
    }
    if let Ok(pool) = Arc::try_unwrap(pool) {
        pool.shutdown().await;
    }
    api.abort();
    Ok(())
}

fn refuse_dial(request: RayoRequest) {
    tracing::info!(to = %request.dial.to, room = %request.dial.room, "refusing a dial: draining");
    if request
        .reject(ErrorCondition::ServiceUnavailable, SHUTTING_DOWN)
        .is_err()
    {
        tracing::debug!("the refused dial had expired already");
    }
}

/// Tells every call to hang up (BYE or CANCEL, session-terminate, leave) and waits a little for
/// them to; what is still running then is dropped.
async fn end_calls(calls: &mut JoinSet<()>, hangup: &watch::Sender<bool>) {
    if calls.is_empty() {
        return;
    }
    hangup.send_replace(true);
    let all_done = async {
        while let Some(done) = calls.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a call task failed");
            }
        }
    };
    if tokio::time::timeout(HANGUP_GRACE, all_done).await.is_err() {
        tracing::warn!(
            calls = calls.len(),
            "calls still ending after the grace period: dropped"
        );
        calls.shutdown().await;
    }
}

/// One brewery per XMPP server; their dials arrive on one channel.
fn start_breweries(
    settings: &Settings,
    stats: watch::Receiver<BreweryStats>,
) -> anyhow::Result<(Vec<xmpp::Brewery>, mpsc::Receiver<RayoRequest>)> {
    let (tx, rx) = mpsc::channel(16);
    let mut breweries = Vec::new();
    for server in &settings.xmpp.servers {
        let (brewery, mut requests) = xmpp::Brewery::start(&settings.xmpp, server, stats.clone())
            .with_context(|| format!("the brewery on {}", server.id))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                if tx.send(request).await.is_err() {
                    break;
                }
            }
        });
        breweries.push(brewery);
    }
    Ok((breweries, rx))
}

/// The health report, read from the current states of the breweries, the registration and the
/// SIP health check (when configured).
fn health_source(
    breweries: &[xmpp::Brewery],
    require_brewery: bool,
    registration: watch::Receiver<sip::RegistrationState>,
    sip_check: Option<watch::Receiver<sip_check::Status>>,
) -> Arc<dyn Fn() -> api::HealthReport + Send + Sync> {
    let states: Vec<(String, watch::Receiver<xmpp::BreweryState>)> = breweries
        .iter()
        .map(|b| (b.server_id().to_string(), b.state()))
        .collect();
    Arc::new(move || {
        let current: Vec<(&str, xmpp::BreweryState)> = states
            .iter()
            .map(|(server, state)| (server.as_str(), state.borrow().clone()))
            .collect();
        let views: Vec<health::BreweryView<'_>> = current
            .iter()
            .map(|(server, state)| health::BreweryView { server, state })
            .collect();
        let check = sip_check.as_ref().map(|s| s.borrow().clone());
        let check = check.as_ref().map(|status| health::SipCheckView {
            status,
            now: tokio::time::Instant::now().into_std(),
        });
        health::report(&views, require_brewery, &registration.borrow(), check)
    })
}

/// Keeps the brewery stats in step with the calls and the phase.
async fn publish_load(
    mut load: watch::Receiver<Load>,
    mut phase: watch::Receiver<Phase>,
    stats: watch::Sender<BreweryStats>,
) {
    loop {
        let l = *load.borrow_and_update();
        let draining = *phase.borrow_and_update() == Phase::Draining;
        stats.send_if_modified(|s| {
            let new = brewery_stats(l, draining);
            let changed = *s != new;
            *s = new;
            changed
        });
        tokio::select! {
            r = load.changed() => if r.is_err() { return },
            r = phase.changed() => if r.is_err() { return },
        }
    }
}

fn brewery_stats(load: Load, draining: bool) -> BreweryStats {
    BreweryStats {
        conferences: load.conferences,
        participants: load.participants,
        graceful_shutdown: draining,
        stress_level: load.stress_level(),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_follow_the_load_and_the_drain() {
        let load = Load {
            conferences: 3,
            participants: 11,
            calls: 4,
        };
        let s = brewery_stats(load, false);
        assert_eq!((s.conferences, s.participants), (3, 11));
        assert!((s.stress_level - 0.03).abs() < 1e-9);
        assert!(!s.graceful_shutdown);
        assert!(brewery_stats(load, true).graceful_shutdown);
    }
}
