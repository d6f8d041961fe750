//! Logged-in connections kept warm, so a call starts with its MUC join instead of a login.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::connect::ConnectOptions;
use super::connection::Connection;
use super::error::ConnectError;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// Counters of a pool, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Logged-in connections waiting to be taken.
    pub idle: usize,
    /// `take()` calls served by a waiting connection.
    pub taken_warm: u64,
    /// `take()` calls that had to log in first.
    pub taken_cold: u64,
    /// Background logins that failed (each followed by a pause, 1 s doubling to 30 s).
    pub failed_logins: u64,
}

/// Keeps `size` logged-in [`Connection`]s ready. A background task replaces the ones taken and
/// the idle ones that die.
pub struct Pool(Core<Dialer>);

impl Pool {
    /// Starts filling the pool in the background; returns at once. Call inside a tokio runtime.
    pub fn start(opts: ConnectOptions, size: usize) -> Pool {
        Pool(Core::start(Dialer(opts), size))
    }

    /// A logged-in connection: a waiting one if there is one, else a new login now.
    pub async fn take(&self) -> Result<Connection, ConnectError> {
        self.0.take().await
    }

    pub fn stats(&self) -> PoolStats {
        self.0.stats()
    }

    /// Waits until at least `n` connections are idle (at most the pool's size).
    pub async fn wait_ready(&self, n: usize) {
        self.0.wait_ready(n).await
    }

    /// Stops refilling and closes the idle connections. Taken ones are their callers'.
    pub async fn shutdown(self) {
        self.0.shutdown().await
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How the pool gets and inspects connections (real ones, or fakes in tests).
trait Dial: Send + Sync + 'static {
    type Conn: Send + 'static;
    /// A new logged-in connection; `on_end` is notified when it ends.
    fn dial(&self, on_end: Arc<Notify>) -> BoxFuture<Result<Self::Conn, ConnectError>>;
    fn is_closed(conn: &Self::Conn) -> bool;
    fn close(conn: Self::Conn) -> BoxFuture<()>;
}

struct Dialer(ConnectOptions);

impl Dial for Dialer {
    type Conn = Connection;

    fn dial(&self, on_end: Arc<Notify>) -> BoxFuture<Result<Connection, ConnectError>> {
        let opts = self.0.clone();
        Box::pin(async move { Connection::connect_notifying(&opts, Some(on_end)).await })
    }

    fn is_closed(conn: &Connection) -> bool {
        conn.is_closed()
    }

    fn close(conn: Connection) -> BoxFuture<()> {
        Box::pin(conn.close())
    }
}

struct Shared<D: Dial> {
    dialer: D,
    size: usize,
    idle: Mutex<VecDeque<D::Conn>>,
    stats: Mutex<PoolStats>,
    /// Wakes the refill task: a connection was taken or has ended.
    wake: Arc<Notify>,
    idle_count: watch::Sender<usize>,
}

impl<D: Dial> Shared<D> {
    /// Drops dead idle connections; returns how many live ones are idle.
    fn prune(&self) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| !D::is_closed(c));
        let n = idle.len();
        drop(idle);
        self.publish(n);
        n
    }

    fn publish(&self, idle: usize) {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).idle = idle;
        self.idle_count.send_replace(idle);
    }

    fn count(&self, f: impl FnOnce(&mut PoolStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

struct Core<D: Dial> {
    shared: Arc<Shared<D>>,
    stop: CancellationToken,
    refill: Option<JoinHandle<()>>,
}

impl<D: Dial> Core<D> {
    fn start(dialer: D, size: usize) -> Core<D> {
        let shared = Arc::new(Shared {
            dialer,
            size,
            idle: Mutex::new(VecDeque::new()),
            stats: Mutex::new(PoolStats::default()),
            wake: Arc::new(Notify::new()),
            idle_count: watch::Sender::new(0),
        });
        let stop = CancellationToken::new();
        let refill = tokio::spawn(refill(shared.clone(), stop.clone()));
        Core {
            shared,
            stop,
            refill: Some(refill),
        }
    }

    async fn take(&self) -> Result<D::Conn, ConnectError> {
        let warm = {
            let mut idle = self.shared.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(conn) = idle.pop_front() {
                if !D::is_closed(&conn) {
                    found = Some(conn);
                    break;
                }
            }
            found
        };
        self.shared.prune();
        self.shared.wake.notify_one();
        match warm {
            Some(conn) => {
                self.shared.count(|s| s.taken_warm += 1);
                Ok(conn)
            }
            None => {
                self.shared.count(|s| s.taken_cold += 1);
                self.shared.dialer.dial(self.shared.wake.clone()).await
            }
        }
    }

    fn stats(&self) -> PoolStats {
        self.shared.prune();
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait_ready(&self, n: usize) {
        let n = n.min(self.shared.size);
        let mut idle = self.shared.idle_count.subscribe();
        let _ = idle.wait_for(|&count| count >= n).await;
    }

    async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.refill.take() {
            let _ = task.await;
        }
    }
}

impl<D: Dial> Drop for Core<D> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Keeps the idle list at `size`, one login at a time, pausing after failures.
async fn refill<D: Dial>(shared: Arc<Shared<D>>, stop: CancellationToken) {
    let mut backoff = Backoff::new(FIRST_RETRY, LAST_RETRY);
    loop {
        if shared.prune() < shared.size {
            let dialed = tokio::select! {
                dialed = shared.dialer.dial(shared.wake.clone()) => dialed,
                _ = stop.cancelled() => break,
            };
            match dialed {
                Ok(conn) => {
                    shared
                        .idle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_back(conn);
                    backoff.reset();
                }
                Err(error) => {
                    shared.count(|s| s.failed_logins += 1);
                    let pause = backoff.next_delay();
                    tracing::warn!(%error, retry_in = ?pause, "xmpp pool: login failed");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
            continue;
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = stop.cancelled() => break,
        }
    }
    let idle: Vec<D::Conn> = shared
        .idle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .collect();
    shared.publish(0);
    for conn in idle {
        D::close(conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// A connection that is alive until its test kills it.
    struct Fake {
        id: u32,
        dead: Arc<AtomicBool>,
        closed: Arc<AtomicU32>,
    }

    /// Every connection a fake dialer made: its id, its "dead" flag and its end notification.
    type Made = Arc<Mutex<Vec<(u32, Arc<AtomicBool>, Arc<Notify>)>>>;

    #[derive(Default)]
    struct FakeDialer {
        dialed: Arc<AtomicU32>,
        closed: Arc<AtomicU32>,
        /// Dials fail while this is set.
        failing: Arc<AtomicBool>,
        /// Handles on every connection made, to kill them.
        made: Made,
    }

    impl Dial for FakeDialer {
        type Conn = Fake;

        fn dial(&self, on_end: Arc<Notify>) -> BoxFuture<Result<Fake, ConnectError>> {
            let failing = self.failing.load(Ordering::SeqCst);
            let id = self.dialed.fetch_add(1, Ordering::SeqCst) + 1;
            let dead = Arc::new(AtomicBool::new(false));
            if !failing {
                self.made
                    .lock()
                    .unwrap()
                    .push((id, dead.clone(), on_end.clone()));
            }
            let closed = self.closed.clone();
            drop(on_end);
            Box::pin(async move {
                if failing {
                    return Err(ConnectError::AuthFailed {
                        condition: "not-authorized".into(),
                    });
                }
                Ok(Fake { id, dead, closed })
            })
        }

        fn is_closed(conn: &Fake) -> bool {
            conn.dead.load(Ordering::SeqCst)
        }

        fn close(conn: Fake) -> BoxFuture<()> {
            conn.closed.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    fn kill(made: &Made, id: u32) {
        let made = made.lock().unwrap();
        let (_, dead, on_end) = made.iter().find(|(i, _, _)| *i == id).unwrap();
        dead.store(true, Ordering::SeqCst);
        on_end.notify_one();
    }

    #[tokio::test]
    async fn take_hands_out_a_waiting_connection_and_a_replacement_follows() {
        let dialer = FakeDialer::default();
        let dialed = dialer.dialed.clone();
        let pool = Core::start(dialer, 2);
        pool.wait_ready(2).await;
        assert_eq!(dialed.load(Ordering::SeqCst), 2);
        let first = pool.take().await.unwrap();
        assert_eq!(first.id, 1);
        let stats = pool.stats();
        assert_eq!((stats.taken_warm, stats.taken_cold), (1, 0));
        pool.wait_ready(2).await;
        assert_eq!(dialed.load(Ordering::SeqCst), 3);
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn take_from_an_empty_pool_logs_in_at_once() {
        let dialer = FakeDialer::default();
        dialer.failing.store(true, Ordering::SeqCst);
        let failing = dialer.failing.clone();
        let pool = Core::start(dialer, 1);
        // The background login fails; take() tries its own.
        assert!(matches!(
            pool.take().await,
            Err(ConnectError::AuthFailed { .. })
        ));
        failing.store(false, Ordering::SeqCst);
        let conn = pool.take().await.unwrap();
        assert!(!FakeDialer::is_closed(&conn));
        assert_eq!(pool.stats().taken_cold, 2);
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn a_dead_idle_connection_is_replaced_and_never_handed_out() {
        let dialer = FakeDialer::default();
        let made = dialer.made.clone();
        let dialed = dialer.dialed.clone();
        let pool = Core::start(dialer, 1);
        pool.wait_ready(1).await;
        kill(&made, 1);
        // The refill task notices through the end notification and logs in again.
        let mut idle = pool.shared.idle_count.subscribe();
        idle.wait_for(|_| dialed.load(Ordering::SeqCst) == 2)
            .await
            .unwrap();
        pool.wait_ready(1).await;
        let conn = pool.take().await.unwrap();
        assert_eq!(conn.id, 2);
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn take_skips_a_dead_connection_even_before_the_refill_task_sees_it() {
        let dialer = FakeDialer::default();
        let pool = Core::start(dialer, 1);
        pool.wait_ready(1).await;
        // Dead without notification (the task has not run yet).
        pool.shared.idle.lock().unwrap()[0]
            .dead
            .store(true, Ordering::SeqCst);
        let conn = pool.take().await.unwrap();
        assert_ne!(conn.id, 1);
        assert_eq!(pool.stats().taken_cold, 1);
        pool.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_are_retried_with_growing_pauses() {
        let dialer = FakeDialer::default();
        dialer.failing.store(true, Ordering::SeqCst);
        let dialed = dialer.dialed.clone();
        let failing = dialer.failing.clone();
        let pool = Core::start(dialer, 1);
        let start = tokio::time::Instant::now();
        // 1 + 2 + 4 s of pauses after the first three failures.
        tokio::time::sleep(Duration::from_millis(6_500)).await;
        assert_eq!(dialed.load(Ordering::SeqCst), 3, "{:?}", start.elapsed());
        assert_eq!(pool.stats().failed_logins, 3);
        failing.store(false, Ordering::SeqCst);
        pool.wait_ready(1).await;
        assert_eq!(dialed.load(Ordering::SeqCst), 4);
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_closes_the_idle_connections() {
        let dialer = FakeDialer::default();
        let closed = dialer.closed.clone();
        let pool = Core::start(dialer, 3);
        pool.wait_ready(3).await;
        let taken = pool.take().await.unwrap();
        pool.wait_ready(3).await;
        pool.shutdown().await;
        assert_eq!(closed.load(Ordering::SeqCst), 3);
        // The taken one is its caller's.
        assert!(!FakeDialer::is_closed(&taken));
    }
}
