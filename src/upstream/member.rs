//! One upstream member and the state that decides whether it may take new connections.
//!
//! A member is eligible when four independent signals agree: health probes say it is up, an
//! operator has not drained it, its circuit breaker admits traffic, and it is under its
//! connection cap. Each signal is read from an atomic so the balancer filters on the accept path
//! without taking a lock; writers (the health task, the breaker, the admin API) flip them and
//! report whether the value changed, so a transition is logged exactly once by whoever caused
//! it. The breaker's own lock is taken only by the connect stack and outcome reports (see
//! `circuit`).

mod circuit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::time::Instant;

use self::circuit::Circuit;
use super::breaker::{Admit, BreakerState, Rejected};
use crate::config::{BreakerConfig, MemberConfig, SilentConfig};

/// A member of a pool, shared by the pool, its health task and every connection using it.
///
/// What the config says (index, weight, tier, cap) lives here; what the member has lived
/// through (health, drain, active count, breaker) lives in shared parts that a reloaded pool
/// adopts for a member of the same name ([`Member::adopt_state`]), so a reload neither forgets
/// a dead member nor loses count of the connections still on it.
#[derive(Debug)]
pub struct Member {
    /// Position in the pool's member list; balancers answer with it.
    index: usize,
    /// The pool's name, for metric labels and logs.
    pool: Arc<str>,
    name: Arc<str>,
    addr: SocketAddr,
    weight: u32,
    tier: u8,
    state: Arc<State>,
    /// `None` when the pool disables breakers.
    circuit: Option<Arc<Circuit>>,
    /// Connections the member may hold at once; `None` = unlimited.
    max_connections: Option<u64>,
    /// The pool's `breaker.early_close` window; `None` = not watched.
    early_close: Option<std::time::Duration>,
    /// The pool's `breaker.silent_after_request` watch; `None` = off.
    silent: Option<SilentConfig>,
    /// `on_member_down = "close"`: live connections are cut when the member goes down, is
    /// drained or leaves the pool.
    close_on_down: bool,
    /// `on_primary_return = "close"`: the pool's token for connections on backup tiers,
    /// shared by every member of the pool (and across reloads); a primary coming up cancels it.
    primary_return: Option<Arc<BackupCut>>,
    /// `max_connection_lifetime`: no connection stays on the member longer (with ±10 %
    /// jitter so connections made together do not all end together); `None` = unbounded.
    max_lifetime: Option<std::time::Duration>,
}

/// The token a pool's backup-tier connections relay under with `on_primary_return = "close"`.
pub type BackupCut = std::sync::Mutex<Option<tokio_util::sync::CancellationToken>>;

/// The part of a member that outlives a reload.
#[derive(Debug)]
struct State {
    up: AtomicBool,
    drained: AtomicBool,
    active: AtomicU64,
    /// Milliseconds since `epoch` when the member last came up; drives slow start.
    up_since_ms: AtomicU64,
    epoch: Instant,
    /// The token this member's connections relay under when its pool closes them on down: a
    /// child of the server's cut token, cancelled (and dropped, so the next connection gets a
    /// fresh one) by [`Member::evict`]. Shared across reloads like the rest of the state, so
    /// connections from before a reload are cut too.
    evict: std::sync::Mutex<Option<tokio_util::sync::CancellationToken>>,
}

// === impl Member ===

impl Member {
    pub fn new(index: usize, config: &MemberConfig, initially_up: bool, epoch: Instant) -> Self {
        Self {
            index,
            pool: Arc::from(""),
            name: config.name.as_str().into(),
            addr: config.addr,
            weight: config.weight,
            tier: config.tier,
            state: Arc::new(State {
                up: AtomicBool::new(initially_up),
                drained: AtomicBool::new(false),
                active: AtomicU64::new(0),
                // A member that is up from the start is not ramped: there is no cold cache.
                up_since_ms: AtomicU64::new(0),
                epoch,
                evict: std::sync::Mutex::new(None),
            }),
            circuit: None,
            max_connections: None,
            early_close: None,
            silent: None,
            close_on_down: false,
            primary_return: None,
            max_lifetime: None,
        }
    }

    /// `max_connection_lifetime` of the member's pool.
    pub fn with_max_lifetime(mut self, lifetime: Option<std::time::Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// How long the next connection may stay on this member: the pool's
    /// `max_connection_lifetime` ± 10 %, `None` when unbounded.
    pub fn connection_lifetime(&self) -> Option<std::time::Duration> {
        use rand::RngExt;
        self.max_lifetime
            .map(|d| d.mul_f64(rand::rng().random_range(0.9..=1.1)))
    }

    /// `on_primary_return = "close"`: `backups` is the pool's shared backup-tier token.
    pub fn with_primary_return(mut self, backups: Option<Arc<BackupCut>>) -> Self {
        self.primary_return = backups;
        self
    }

    /// The pool's backup-tier token holder, to share with the next build of the pool.
    pub fn primary_return(&self) -> Option<&Arc<BackupCut>> {
        self.primary_return.as_ref()
    }

    /// `on_member_down = "close"`: cut live connections when the member goes down, is drained
    /// or leaves the pool.
    pub fn with_close_on_down(mut self, close: bool) -> Self {
        self.close_on_down = close;
        self
    }

    /// The token a connection to this member relays under: `cut` itself, or with
    /// `on_member_down = "close"` a child of it that [`Member::evict`] cancels.
    pub fn relay_token(
        &self,
        cut: &tokio_util::sync::CancellationToken,
    ) -> tokio_util::sync::CancellationToken {
        // A backup-tier connection of an `on_primary_return = "close"` pool relays under the
        // pool's backup token (a child of `cut`), which a returning primary cancels.
        let base = match (&self.primary_return, self.tier > 0) {
            (Some(backups), true) => fresh(backups, cut),
            _ => cut.clone(),
        };
        if !self.close_on_down {
            return base;
        }
        fresh(&self.state.evict, &base)
    }

    /// Cuts the live connections that relay under this member's token (only with
    /// `on_member_down = "close"`); returns whether there was a token to cancel.
    /// Cuts the live connections on the pool's backup tiers (`on_primary_return = "close"`),
    /// because this primary came up; returns whether there were any to cut.
    pub fn close_backups(&self) -> bool {
        let Some(backups) = &self.primary_return else {
            return false;
        };
        let token = backups.lock().unwrap_or_else(|p| p.into_inner()).take();
        token.inspect(|t| t.cancel()).is_some()
    }

    pub fn evict(&self) -> bool {
        if !self.close_on_down {
            return false;
        }
        let token = self
            .state
            .evict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        token.inspect(|t| t.cancel()).is_some()
    }

    /// Names the pool the member belongs to (metric labels, logs).
    pub fn in_pool(mut self, pool: Arc<str>) -> Self {
        self.pool = pool;
        self
    }

    /// The pool's name (empty for a member built outside a pool).
    pub fn pool(&self) -> &Arc<str> {
        &self.pool
    }

    /// Gives the member a circuit breaker (none when `config` is `None`). `pool` labels its
    /// logs and metrics.
    pub fn with_breaker(mut self, pool: &str, config: Option<BreakerConfig>) -> Self {
        let epoch = self.state.epoch;
        self.circuit =
            config.map(|c| Arc::new(Circuit::new(pool.into(), Arc::clone(&self.name), epoch, c)));
        self
    }

    /// Takes over `previous`'s health, drain flag, active count and slow-start clock, and its
    /// breaker when the breaker settings are unchanged: used when a reload rebuilds the pool.
    pub fn adopt_state(mut self, previous: &Member) -> Self {
        self.state = Arc::clone(&previous.state);
        if let (Some(new), Some(old)) = (&self.circuit, &previous.circuit)
            && new.config() == old.config()
        {
            old.republish(Instant::now());
            self.circuit = Some(Arc::clone(old));
        }
        self
    }

    /// Caps the connections the member holds at once (`None` = unlimited). A full member is
    /// skipped by selection. The cap is soft: picks racing on other threads can each see the
    /// last free slot, so it can be exceeded by the number of concurrent accepts.
    pub fn with_max_connections(mut self, max: Option<usize>) -> Self {
        self.max_connections = max.map(|m| m as u64);
        self
    }

    /// Watches new connections for an early close within `window` (`None`: not watched).
    pub fn with_early_close(mut self, window: Option<std::time::Duration>) -> Self {
        self.early_close = window;
        self
    }

    /// Watches connections for a silent member (`None`: not watched).
    pub fn with_silent(mut self, silent: Option<SilentConfig>) -> Self {
        self.silent = silent;
        self
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// The address as the config wrote it (`host:port`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared cheaply with errors and logs.
    pub fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn tier(&self) -> u8 {
        self.tier
    }

    /// Health as last decided by probes (always true for pools without health checks).
    pub fn is_up(&self) -> bool {
        self.state.up.load(Ordering::Acquire)
    }

    /// Sets health; returns true when this call changed it. Coming up closes the breaker
    /// first (see `Breaker::reset`), so whoever sees the member up also sees it admitted.
    pub fn set_up(&self, up: bool) -> bool {
        if up
            && !self.is_up()
            && let Some(c) = &self.circuit
        {
            c.on_health_up();
        }
        let changed = self.state.up.swap(up, Ordering::AcqRel) != up;
        if changed && !up {
            self.evict();
        }
        if changed && up && self.tier == 0 {
            self.close_backups();
        }
        if changed && up {
            let since = Instant::now().saturating_duration_since(self.state.epoch);
            // +1 so that zero keeps meaning "never came up since the pool was built".
            self.state
                .up_since_ms
                .store(since.as_millis() as u64 + 1, Ordering::Release);
        }
        changed
    }

    /// When the member last came up, if it came up after the pool was built.
    pub fn up_since(&self) -> Option<Instant> {
        match self.state.up_since_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.state.epoch + std::time::Duration::from_millis(ms - 1)),
        }
    }

    /// Drained by an operator: takes no new connections, live ones finish.
    pub fn is_drained(&self) -> bool {
        self.state.drained.load(Ordering::Acquire)
    }

    /// Sets the drain flag; returns true when this call changed it.
    pub fn set_drained(&self, drained: bool) -> bool {
        let changed = self.state.drained.swap(drained, Ordering::AcqRel) != drained;
        if changed && drained {
            self.evict();
        }
        if changed {
            metrics::gauge!(
                crate::telemetry::metrics::MEMBER_DRAINED,
                "pool" => Arc::clone(&self.pool),
                "member" => Arc::clone(&self.name)
            )
            .set(if drained { 1.0 } else { 0.0 });
        }
        changed
    }

    /// May take a new connection at `now`: up, not drained, admitted by its breaker and under
    /// its connection cap.
    pub fn is_eligible(&self, now: Instant) -> bool {
        self.is_up() && !self.is_drained() && self.breaker_admits(now) && self.has_room()
    }

    /// Whether the breaker would let a connection through at `now`: Closed, Open past its
    /// period, or HalfOpen with a trial free. True without a breaker. Lock-free.
    pub fn breaker_admits(&self, now: Instant) -> bool {
        self.circuit.as_ref().is_none_or(|c| c.admits(now))
    }

    /// Under the connection cap (always, without one).
    pub fn has_room(&self) -> bool {
        self.max_connections.is_none_or(|max| self.active() < max)
    }

    pub fn max_connections(&self) -> Option<u64> {
        self.max_connections
    }

    /// The breaker's state at `now` for status pages; `None` when the pool has no breakers.
    pub fn breaker_state(&self, now: Instant) -> Option<BreakerState> {
        self.circuit.as_ref().map(|c| c.state(now))
    }

    /// Asks the breaker to let one connection through at `now` (takes a trial slot when
    /// half-open). The permit must be told the connect's outcome; dropped without one it gives
    /// the slot back. Always granted without a breaker.
    pub fn acquire_breaker(self: &Arc<Self>, now: Instant) -> Result<BreakerPermit, Rejected> {
        let admit = match &self.circuit {
            Some(c) => Some(c.try_acquire(now)?),
            None => None,
        };
        Ok(BreakerPermit {
            member: Arc::clone(self),
            admit,
        })
    }

    /// A connect to this member succeeded outside the connect stack. Counts only while the
    /// breaker is closed: in half-open, only trials admitted by the stack decide.
    pub fn report_connect_success(&self) {
        if let Some(c) = &self.circuit {
            c.on_success(Instant::now(), Admit::Pass);
        }
    }

    /// A connect to this member failed outside the connect stack, `reason` as in
    /// `ConnectError::reason`. Counts only while the breaker is closed. `"early_close"` (the
    /// reason of `ConnectError::EarlyClose`) is the same as [`report_early_close`].
    ///
    /// [`report_early_close`]: Self::report_early_close
    pub fn report_connect_failure(&self, reason: &'static str) {
        match &self.circuit {
            Some(c) if reason == "early_close" => c.on_early_close(Instant::now()),
            Some(c) => c.on_failure(Instant::now(), Admit::Pass, reason),
            None => {}
        }
    }

    /// A connection the stack reported connected closed without a byte from the member within
    /// the pool's `breaker.early_close`: the connect counts as a failure after all, and one
    /// soon after the breaker closed from half-open re-opens it (see `upstream::breaker`).
    /// The caller decides what "early" was; this only feeds the breaker.
    pub fn report_early_close(&self) {
        if let Some(c) = &self.circuit {
            c.on_early_close(Instant::now());
        }
    }

    /// A connection the stack reported connected stayed silent: the client's bytes reached the
    /// member and nothing came back within the pool's `breaker.silent_after_request`. Like an
    /// early close, the connect counts as a failure after all (see `upstream::breaker`). Logging
    /// and the metric are the caller's, which knows the connection.
    pub fn report_silent(&self) {
        if let Some(c) = &self.circuit {
            c.on_silent(Instant::now());
        }
    }

    /// The pool's silent-member watch, set whether or not the pool has breakers.
    pub fn silent(&self) -> Option<SilentConfig> {
        self.silent
    }

    /// The pool's `breaker.early_close`, for the code that detects early closes: set whether
    /// or not the pool has breakers, since an early close is a redial trigger of its own.
    pub fn early_close(&self) -> Option<std::time::Duration> {
        self.early_close
    }

    fn active_gauge(&self) -> metrics::Gauge {
        metrics::gauge!(
            crate::telemetry::metrics::MEMBER_ACTIVE_CONNECTIONS,
            "pool" => Arc::clone(&self.pool),
            "member" => Arc::clone(&self.name)
        )
    }

    /// Connections currently relayed to this member.
    pub fn active(&self) -> u64 {
        self.state.active.load(Ordering::Relaxed)
    }

    /// Counts one more active connection until the returned guard drops.
    pub fn track(self: &Arc<Self>) -> ActiveGuard {
        self.state.active.fetch_add(1, Ordering::Relaxed);
        self.active_gauge().increment(1.0);
        ActiveGuard {
            member: Arc::clone(self),
        }
    }
}

/// Keeps a member's active count right however the connection ends.
#[derive(Debug)]
pub struct ActiveGuard {
    member: Arc<Member>,
}

impl ActiveGuard {
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.member.state.active.fetch_sub(1, Ordering::Relaxed);
        self.member.active_gauge().decrement(1.0);
    }
}

/// One connection let through a member's breaker, waiting for its outcome.
#[derive(Debug)]
pub struct BreakerPermit {
    member: Arc<Member>,
    /// `None` without a breaker, and once the outcome is reported.
    admit: Option<Admit>,
}

impl BreakerPermit {
    /// Whether this connection is a half-open trial.
    pub fn is_trial(&self) -> bool {
        matches!(self.admit, Some(Admit::Trial { .. }))
    }

    /// The connect succeeded.
    pub fn success(mut self) {
        if let (Some(c), Some(admit)) = (&self.member.circuit, self.admit.take()) {
            c.on_success(Instant::now(), admit);
        }
    }

    /// The connect failed through the member's fault; `reason` names it in the opening log.
    pub fn failure(mut self, reason: &'static str) {
        if let (Some(c), Some(admit)) = (&self.member.circuit, self.admit.take()) {
            c.on_failure(Instant::now(), admit, reason);
        }
    }
}

impl Drop for BreakerPermit {
    /// No verdict (cancelled, or failed for a reason that is not the member's): a half-open
    /// trial gives its slot back, or the member would stay half-open with no trial running.
    fn drop(&mut self) {
        if let (Some(c), Some(admit)) = (&self.member.circuit, self.admit.take()) {
            c.release(admit);
        }
    }
}

/// The token in `slot`, or a new child of `parent` when there is none or it was cancelled
/// (a cut already happened: new connections start under a fresh one).
fn fresh(
    slot: &std::sync::Mutex<Option<tokio_util::sync::CancellationToken>>,
    parent: &tokio_util::sync::CancellationToken,
) -> tokio_util::sync::CancellationToken {
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if slot.as_ref().is_some_and(|t| t.is_cancelled()) {
        *slot = None;
    }
    slot.get_or_insert_with(|| parent.child_token()).clone()
}
