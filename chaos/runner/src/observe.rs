//! What sluice did, seen from inside the process: member health and breaker state sampled
//! every [`SAMPLE_EVERY`], kept as a list of changes per member.
//!
//! Sampling reads the same atomics selection reads (`is_up`, `breaker_state`), so what the drill
//! sees is what the balancer saw, give or take one sampling period. A state that flips and flips
//! back within one period is missed; the health and breaker machines never do that faster than
//! their probe interval or open period, which scenarios keep above it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::admin::Admin;
use sluice::upstream::{Phase, Pool};

/// How often member state is read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// A member's breaker as the drill reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Breaker {
    Closed,
    HalfOpen,
    Open,
    /// The pool has no breakers.
    None,
}

impl Breaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
            Self::None => "none",
        }
    }
}

/// One sample of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MemberState {
    pub up: bool,
    pub breaker: Breaker,
}

impl MemberState {
    /// Out of rotation: health says down, or the breaker rejects.
    pub fn ejected(self) -> bool {
        !self.up || self.breaker == Breaker::Open
    }
}

/// Every change of every member, times from the start of traffic.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Per member (pool order): the first sample, then each change.
    pub changes: Vec<Vec<(Duration, MemberState)>>,
}

// === impl History ===

impl History {
    /// The first time in `[from, to)` the member was ejected (`from` itself if it already was).
    pub fn ejected_in(
        &self,
        member: usize,
        from: Duration,
        to: Option<Duration>,
    ) -> Option<Duration> {
        self.first(member, from, to, MemberState::ejected)
    }

    /// The first time at or after `from` the member was back: up, breaker not open.
    pub fn back_after(&self, member: usize, from: Duration) -> Option<Duration> {
        self.first(member, from, None, |s| !s.ejected())
    }

    /// Health flips (up to down or back) of a member.
    pub fn health_transitions(&self, member: usize) -> usize {
        self.changes.get(member).map_or(0, |c| {
            c.windows(2).filter(|w| w[0].1.up != w[1].1.up).count()
        })
    }

    fn first(
        &self,
        member: usize,
        from: Duration,
        to: Option<Duration>,
        pred: impl Fn(MemberState) -> bool,
    ) -> Option<Duration> {
        let changes = self.changes.get(member)?;
        // The state in force at `from` is the last change at or before it.
        let current = changes.iter().rev().find(|(t, _)| *t <= from);
        if current.is_some_and(|(_, s)| pred(*s)) {
            return Some(from);
        }
        changes
            .iter()
            .filter(|(t, _)| *t > from && to.is_none_or(|to| *t < to))
            .find(|(_, s)| pred(*s))
            .map(|(t, _)| *t)
    }
}

/// Where member states are read.
pub enum Observed {
    /// The pool of the sluice in this process: its atomics, every [`SAMPLE_EVERY`].
    Pool(Arc<Pool>),
    /// A running sluice (`[target]`): its admin API's `/status`, every [`ADMIN_EVERY`].
    Admin {
        admin: Admin,
        pool: Option<String>,
        listen: SocketAddr,
        proxies: Vec<SocketAddr>,
    },
}

/// How often a `[target]` drill asks the admin API: one request on loopback takes well under
/// a millisecond, and 20 ms keeps the drill's own load on the sluice under drill small.
pub const ADMIN_EVERY: Duration = Duration::from_millis(20);

/// Samples member states from `t0` until `stop`; the history starts with one sample each.
pub async fn sample(observed: Observed, t0: Instant, stop: CancellationToken) -> History {
    match observed {
        Observed::Pool(pool) => sample_pool(pool, t0, stop).await,
        Observed::Admin {
            admin,
            pool,
            listen,
            proxies,
        } => {
            let mut history = History {
                changes: vec![Vec::new(); proxies.len()],
            };
            let mut ticks = tokio::time::interval_at(t0, ADMIN_EVERY);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return history,
                    _ = ticks.tick() => {}
                }
                // A failed request is a missing sample, not a state: the next tick asks again.
                let Ok(view) = admin.pool(pool.as_deref(), listen, &proxies).await else {
                    continue;
                };
                let at = Instant::now().saturating_duration_since(t0);
                for (state, changes) in view.members.into_iter().zip(&mut history.changes) {
                    if let Some(state) = state {
                        record(changes, at, state);
                    }
                }
            }
        }
    }
}

fn record(changes: &mut Vec<(Duration, MemberState)>, at: Duration, state: MemberState) {
    if changes.last().is_none_or(|(_, last)| *last != state) {
        changes.push((at, state));
    }
}

async fn sample_pool(pool: Arc<Pool>, t0: Instant, stop: CancellationToken) -> History {
    let members = pool.members();
    let mut history = History {
        changes: vec![Vec::new(); members.len()],
    };
    let mut ticks = tokio::time::interval_at(t0, SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => return history,
            _ = ticks.tick() => {}
        }
        let now = Instant::now();
        let at = now.saturating_duration_since(t0);
        for (m, changes) in members.iter().zip(&mut history.changes) {
            let state = MemberState {
                up: m.is_up(),
                breaker: match m.breaker_state(now).map(|s| s.phase()) {
                    Some(Phase::Closed) => Breaker::Closed,
                    Some(Phase::HalfOpen) => Breaker::HalfOpen,
                    Some(Phase::Open) => Breaker::Open,
                    None => Breaker::None,
                },
            };
            record(changes, at, state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(up: bool, breaker: Breaker) -> MemberState {
        MemberState { up, breaker }
    }

    #[test]
    fn ejection_and_return_are_read_from_changes() {
        let ms = Duration::from_millis;
        let h = History {
            changes: vec![vec![
                (ms(0), st(true, Breaker::Closed)),
                (ms(2100), st(true, Breaker::Open)),
                (ms(2300), st(false, Breaker::Open)),
                (ms(5400), st(true, Breaker::HalfOpen)),
                (ms(5500), st(true, Breaker::Closed)),
            ]],
        };
        assert_eq!(h.ejected_in(0, ms(2000), Some(ms(5000))), Some(ms(2100)));
        assert_eq!(h.ejected_in(0, ms(2200), None), Some(ms(2200)));
        assert_eq!(h.ejected_in(0, ms(0), Some(ms(2000))), None);
        assert_eq!(h.back_after(0, ms(5000)), Some(ms(5400)));
        assert_eq!(h.health_transitions(0), 2);
    }
}
