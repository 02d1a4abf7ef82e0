//! Deadlines that cannot overflow. `Instant + Duration` panics past what the clock holds; the
//! config caps every duration at a year, and the runtime adds with [`later`] anyway, so no
//! input (a config, an admin request, a test) can panic a connection or a checker.

use std::time::Duration;

use tokio::time::Instant;

/// Stand-in for a deadline past what the clock can hold (tokio uses the same ~30 years).
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + d`, or as good as never when that does not fit the clock.
pub fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_duration_is_far_future_not_a_panic() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
