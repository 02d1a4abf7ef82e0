//! The heartbeat task of one member: sleep, probe, feed the state machine, apply transitions.
//!
//! This is the only part of health checking that touches the clock, the member and telemetry.
//! The rules live in [`HealthState`] and the socket work in [`probe`](super::probe()). The task
//! is generic over the probe so tests can script outcomes under a paused clock.

use std::future::Future;
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::HealthConfig;
use crate::telemetry::metrics::{
    HEALTH_CHECK_DURATION_SECONDS, MEMBER_HEALTH_TRANSITIONS_TOTAL, MEMBER_UP,
};
use crate::upstream::Member;

use super::grid::ProbeGrid;
use super::probe::ProbeFailure;
use super::state::{HealthState, Transition};

/// Everything one member's heartbeat needs, built before the task is spawned.
pub(crate) struct Checker {
    pool: Arc<str>,
    member: Arc<Member>,
    config: Arc<HealthConfig>,
    state: HealthState,
    rng: SmallRng,
    grid: ProbeGrid,
    metrics: CheckerMetrics,
}

/// Handles registered once, so a probe records without building labels each time.
struct CheckerMetrics {
    duration: Histogram,
    up: Gauge,
    to_up: Counter,
    to_down: Counter,
}

// === impl Checker ===

impl Checker {
    /// Starts from the member's current health rather than `config.init_up`: the pool built the
    /// member from `init_up`, and a checker restarted by a reload then carries on from where
    /// the old one left the member instead of flipping it back.
    pub(crate) fn new(
        pool: Arc<str>,
        member: Arc<Member>,
        config: Arc<HealthConfig>,
        seed: u64,
    ) -> Self {
        let labels = [
            ("pool", pool.to_string()),
            ("member", member.name().to_string()),
        ];
        let transitions = |to: &'static str| {
            let [pool, member] = labels.clone();
            counter!(
                MEMBER_HEALTH_TRANSITIONS_TOTAL,
                &[pool, member, ("to", to.to_string())]
            )
        };
        let metrics = CheckerMetrics {
            duration: histogram!(HEALTH_CHECK_DURATION_SECONDS, &labels),
            up: gauge!(MEMBER_UP, &labels),
            to_up: transitions("up"),
            to_down: transitions("down"),
        };
        let init_up = member.is_up();
        // Export the state from the start, not only after the first transition.
        metrics.up.set(f64::from(u8::from(init_up)));
        Self {
            state: HealthState::new(init_up, config.rise, config.fall),
            pool,
            member,
            config,
            rng: SmallRng::seed_from_u64(seed),
            grid: ProbeGrid::off(),
            metrics,
        }
    }

    /// Starts each probe on `grid` (see [`ProbeGrid`]) instead of at the exact instant its
    /// delay ends. Off by default, so paused-clock tests can name exact probe times.
    pub(crate) fn aligned_to(mut self, grid: ProbeGrid) -> Self {
        self.grid = grid;
        self
    }

    /// Probes until `shutdown` is cancelled, which stops it at once, even mid-probe (a probe
    /// holds nothing that needs an orderly stop: dropping it closes its socket).
    pub(crate) async fn run<P, F>(mut self, mut probe: P, shutdown: CancellationToken)
    where
        P: FnMut() -> F,
        F: Future<Output = Result<(), ProbeFailure>>,
    {
        loop {
            let delay = self.state.next_delay(&self.config, self.rng.random());
            let start_at = self.grid.align(crate::time::later(Instant::now(), delay));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = sleep_until(start_at) => {}
            }
            let started = Instant::now();
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                outcome = probe() => outcome,
            };
            let took = started.elapsed();
            // The probe's descriptor is free again: if shedding lost its spare, take it back.
            let _ = crate::resources::restore_spare_fd();
            self.metrics.duration.record(took.as_secs_f64());
            if let Err(ProbeFailure::LocalResource { error }) = &outcome {
                let error = std::io::Error::other(error.clone());
                crate::resources::report_shortage(crate::resources::ShortageAt::Probe, &error);
            } else if let Err(failure) = &outcome {
                debug!(
                    pool = %self.pool,
                    member = %self.member.name(),
                    reason = %failure,
                    was_up = self.state.is_up(),
                    "health probe failed"
                );
            }
            if let Some(transition) = self.state.observe(outcome) {
                self.apply(transition);
            }
        }
    }

    fn apply(&self, t: Transition) {
        self.metrics.up.set(f64::from(u8::from(t.to_up)));
        // One checker runs per member, so this only reports "unchanged" if something else
        // flipped the member; that writer logged it, and we must not log it twice.
        if !self.member.set_up(t.to_up) {
            return;
        }
        // `reason` is passed as &str so text logs quote it and JSON logs keep it a plain string.
        if t.to_up {
            self.metrics.to_up.increment(1);
            info!(
                pool = %self.pool,
                member = %self.member.name(),
                reason = t.reason.as_str(),
                after = t.after,
                "member up"
            );
        } else {
            self.metrics.to_down.increment(1);
            warn!(
                pool = %self.pool,
                member = %self.member.name(),
                reason = t.reason.as_str(),
                after = t.after,
                "member down"
            );
        }
    }
}

#[cfg(test)]
mod tests;
