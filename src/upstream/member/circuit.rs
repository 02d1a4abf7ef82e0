//! A member's breaker as the rest of sluice shares it.
//!
//! The pure [`Breaker`] sits behind a `std::sync::Mutex` held only for one method call (never
//! across an `.await`, never while logging). Selection does not take that lock: after every
//! change the lock holder publishes "when does it admit" into one atomic, and the balancer's
//! filter reads that. The mirror can be a moment stale; the [`CircuitBreaker`] layer then decides
//! under the lock, so a stale read costs at most one fast `CircuitOpen` (which Retry redials).
//!
//! Transitions are logged and counted here, once, by the call that caused them, so they land in
//! the span of the connection whose outcome tripped the breaker.
//!
//! [`CircuitBreaker`]: crate::connect::CircuitBreaker

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use metrics::{counter, gauge};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::BreakerConfig;
use crate::telemetry::metrics::{BREAKER_STATE, BREAKER_TRANSITIONS_TOTAL};
use crate::upstream::breaker::{Admit, Admits, Breaker, BreakerState, Phase, Rejected, Transition};

/// Encoding of [`Admits`] in [`Circuit::admits`].
const ADMITS_NOW: u64 = 0;
const ADMITS_NOT_YET: u64 = 1;
/// Values from here on mean "from `epoch` + (value - ADMITS_FROM) nanoseconds" (584 years).
const ADMITS_FROM: u64 = 2;

#[derive(Debug)]
pub(super) struct Circuit {
    pool: Arc<str>,
    member: Arc<str>,
    epoch: Instant,
    /// A copy of the machine's, readable without the lock.
    config: BreakerConfig,
    machine: Mutex<Breaker>,
    /// Lock-free mirror of `machine.admits()`, written under the lock.
    admits: AtomicU64,
}

impl Circuit {
    pub(super) fn new(
        pool: Arc<str>,
        member: Arc<str>,
        epoch: Instant,
        config: BreakerConfig,
    ) -> Self {
        let circuit = Self {
            pool,
            member,
            epoch,
            config,
            machine: Mutex::new(Breaker::new(config)),
            admits: AtomicU64::new(ADMITS_NOW),
        };
        // Export the state from the start, not only after the first transition.
        circuit.gauge(Phase::Closed);
        circuit
    }

    /// Sets the state gauge again: a reload builds a fresh circuit (which exports "closed")
    /// before deciding to keep this one, so the kept one restates where it really is.
    pub(super) fn republish(&self, now: Instant) {
        self.gauge(self.state(now).phase());
    }

    pub(super) fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Whether a connection at `now` would be admitted, without the lock.
    pub(super) fn admits(&self, now: Instant) -> bool {
        match self.admits.load(Ordering::Acquire) {
            ADMITS_NOW => true,
            ADMITS_NOT_YET => false,
            from => now >= self.epoch + std::time::Duration::from_nanos(from - ADMITS_FROM),
        }
    }

    pub(super) fn state(&self, now: Instant) -> BreakerState {
        self.lock().state(now)
    }

    pub(super) fn try_acquire(&self, now: Instant) -> Result<Admit, Rejected> {
        let (result, transition) = self.update(|b| match b.try_acquire(now) {
            Ok(acquired) => (Ok(acquired.admit), acquired.transition),
            Err(rejected) => (Err(rejected), None),
        });
        self.report(transition, None);
        result
    }

    pub(super) fn on_success(&self, now: Instant, admit: Admit) {
        let t = self.update(|b| b.on_success(now, admit));
        self.report(t, None);
    }

    pub(super) fn on_failure(&self, now: Instant, admit: Admit, reason: &'static str) {
        let t = self.update(|b| b.on_failure(now, admit));
        self.report(t, Some(reason));
    }

    pub(super) fn on_early_close(&self, now: Instant) {
        let t = self.update(|b| b.on_early_close(now));
        self.report(t, Some("early_close"));
    }

    pub(super) fn on_silent(&self, now: Instant) {
        let t = self.update(|b| b.on_silent(now));
        self.report(t, Some("silent"));
    }

    /// Health probes brought the member up: close (see [`Breaker::reset`]).
    pub(super) fn on_health_up(&self) {
        let t = self.update(Breaker::reset);
        self.report(t, Some("member up by health checks"));
    }

    pub(super) fn release(&self, admit: Admit) {
        self.update(|b| b.release(admit));
    }

    fn lock(&self) -> MutexGuard<'_, Breaker> {
        // Every method leaves the machine consistent before it could panic; keep serving.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the machine and republishes the mirror before the lock is released, so
    /// mirror writes happen in the same order as the changes they describe.
    fn update<T>(&self, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut machine = self.lock();
        let out = f(&mut machine);
        let encoded = match machine.admits() {
            Admits::Now => ADMITS_NOW,
            Admits::NotYet => ADMITS_NOT_YET,
            Admits::From(until) => {
                let nanos = until.saturating_duration_since(self.epoch).as_nanos();
                ADMITS_FROM.saturating_add(u64::try_from(nanos).unwrap_or(u64::MAX - ADMITS_FROM))
            }
        };
        self.admits.store(encoded, Ordering::Release);
        out
    }

    /// Logs and counts a transition; `reason` names the failure that caused an opening.
    fn report(&self, transition: Option<Transition>, reason: Option<&'static str>) {
        let Some(t) = transition else { return };
        self.gauge(t.to);
        counter!(
            BREAKER_TRANSITIONS_TOTAL,
            "pool" => self.pool.to_string(),
            "member" => self.member.to_string(),
            "to" => t.to.as_str(),
        )
        .increment(1);
        let (pool, member) = (&*self.pool, &*self.member);
        match t.to {
            Phase::Open => warn!(
                pool,
                member,
                from = t.from.as_str(),
                failures = t.failures,
                reason = reason.unwrap_or("unknown"),
                open_for = ?t.open_for,
                "circuit opened"
            ),
            Phase::HalfOpen => info!(pool, member, "circuit half-open"),
            Phase::Closed => match reason {
                Some(reason) => info!(pool, member, reason, "circuit closed"),
                None => info!(pool, member, "circuit closed"),
            },
        }
    }

    fn gauge(&self, phase: Phase) {
        gauge!(
            BREAKER_STATE,
            "pool" => self.pool.to_string(),
            "member" => self.member.to_string(),
        )
        .set(phase.gauge());
    }
}
