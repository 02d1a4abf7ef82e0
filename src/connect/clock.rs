//! TokioClock: the time source of every `governor` limiter in sluice.
//!
//! governor's default clock reads `quanta`, which a paused tokio test clock does not reach, so
//! a test could not refill a bucket by advancing time and production would read a second clock
//! beside tokio's. This module owns the bridge: a governor [`Clock`] over
//! `tokio::time::Instant`, the limiter types built on it, the quota of a [`RateLimitConfig`],
//! and the waiting rules shared by the limit layers: [`queue_deadline`] turns `on_limit` into
//! a deadline and [`take_token`] waits for a token by it. Which bucket and which error are left
//! to `rate_limit`, `client_limit` and `admission`.

use std::net::IpAddr;
use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};
use tokio::time::Instant;

use crate::config::{OnLimit, RateLimitConfig};

/// Reads `tokio::time::Instant::now()`, so it follows a paused runtime clock (and outside a
/// runtime, falls back to the monotonic std clock, as tokio does).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

/// A tokio instant as a governor [`Reference`]. A newtype because neither the trait nor the
/// type is ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokioInstant(pub Instant);

/// A route-wide token bucket on tokio time.
pub type DirectLimiter =
    RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// One token bucket per client IP on tokio time, in a sharded concurrent map.
pub type KeyedLimiter =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, TokioClock, NoOpMiddleware<TokioInstant>>;

/// `per_second` tokens refill continuously (one every `1s / per_second`), at most `burst` banked.
pub fn quota(config: &RateLimitConfig) -> Quota {
    Quota::per_second(config.per_second).allow_burst(config.burst)
}

/// How long an idle bucket takes to refill from empty: past this, its state is the same as a
/// fresh one and may be forgotten.
pub fn refill_horizon(config: &RateLimitConfig) -> Duration {
    let interval = Duration::from_secs(1) / config.per_second.get();
    interval * config.burst.get().saturating_add(1)
}

/// When a connection arriving now gives up under `on_limit`: `None` (fail fast) for `Reject`.
/// A `Queue` timeout too large for the clock waits as good as forever instead of panicking.
pub fn queue_deadline(on_limit: OnLimit) -> Option<Instant> {
    match on_limit {
        OnLimit::Reject => None,
        OnLimit::Queue { timeout } => Some(crate::time::later(Instant::now(), timeout)),
    }
}

/// Takes one token through `check`. Without a deadline it fails fast: a token now or `false`.
/// With one, it sleeps until the bucket's next token when that comes no later than `deadline`
/// (failing at once, without sleeping, when it comes later), then checks again: another
/// connection may have taken the token meanwhile, so waiters are not served in arrival order.
pub async fn take_token<F>(check: F, deadline: Option<Instant>) -> bool
where
    F: Fn() -> Result<(), NotUntil<TokioInstant>>,
{
    loop {
        let not_until = match check() {
            Ok(()) => return true,
            Err(not_until) => not_until,
        };
        let ready_at = not_until.earliest_possible().0;
        match deadline {
            Some(deadline) if ready_at <= deadline => tokio::time::sleep_until(ready_at).await,
            _ => return false,
        }
    }
}

// === impl TokioInstant ===

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

// === impl TokioClock ===

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn config(per_second: u32, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follows_the_paused_tokio_clock() {
        let before = TokioClock.now();
        tokio::time::advance(Duration::from_millis(250)).await;
        let after = TokioClock.now();
        assert_eq!(
            after.duration_since(before),
            Duration::from_millis(250).into()
        );
        // Saturating both ways: an earlier instant is zero time after a later one.
        assert_eq!(before.duration_since(after), Nanos::from(Duration::ZERO));
        assert_eq!(
            after.saturating_sub(Duration::from_millis(250).into()),
            before
        );
        assert_eq!(before + Nanos::from(Duration::from_millis(250)), after);
    }

    #[tokio::test(start_paused = true)]
    async fn direct_limiter_refills_on_advance() {
        let limiter = DirectLimiter::direct_with_clock(quota(&config(10, 1)), TokioClock);
        assert!(limiter.check().is_ok());
        let denied = limiter.check().unwrap_err();
        assert_eq!(
            denied.wait_time_from(TokioClock.now()),
            Duration::from_millis(100)
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limiter.check().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn queue_deadline_from_on_limit() {
        assert_eq!(queue_deadline(OnLimit::Reject), None);
        let timeout = Duration::from_secs(1);
        let deadline = queue_deadline(OnLimit::Queue { timeout });
        assert_eq!(deadline, Some(Instant::now() + timeout));
        let forever = queue_deadline(OnLimit::Queue {
            timeout: Duration::MAX,
        });
        assert_eq!(forever, Some(Instant::now() + crate::time::FAR_FUTURE));
    }

    #[test]
    fn refill_horizon_covers_a_full_burst() {
        assert_eq!(refill_horizon(&config(20, 20)), Duration::from_millis(1050));
        assert_eq!(refill_horizon(&config(1, 1)), Duration::from_secs(2));
    }
}
