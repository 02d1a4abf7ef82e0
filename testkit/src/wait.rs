//! Waiting on conditions, never on durations (STYLE.md §5): every wait here is bound by a
//! deadline and looks again every [`POLL`].
//!
//! Time is tokio's, so under a paused test clock the deadline is virtual time too.

use std::future::IntoFuture;
use std::time::Duration;

use tokio::time::Instant;

/// How long a wait pauses between two looks at its condition.
pub const POLL: Duration = Duration::from_millis(5);

/// Waits until `cond` holds, looking every [`POLL`]; panics with `what` once `within` has
/// passed.
pub async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    eventually_async(within, what, async || cond()).await;
}

/// [`eventually`] for a condition that has to await (a connect, a request), which may also
/// update state it borrows between looks.
pub async fn eventually_async(within: Duration, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Looks at `probe` every [`POLL`] until `done` holds for what it returned or `within` has
/// passed, and returns the last value seen either way: the caller asserts on it, with a
/// message that says what that value means.
pub async fn settle<T>(
    within: Duration,
    mut probe: impl AsyncFnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> T {
    let start = Instant::now();
    loop {
        let seen = probe().await;
        if done(&seen) || start.elapsed() >= within {
            return seen;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `fut` to its end; panics with `what` if that takes longer than `limit`.
pub async fn within<F: IntoFuture>(limit: Duration, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn eventually_returns_once_the_condition_holds() {
        let looks = AtomicU32::new(0);
        eventually(Duration::from_secs(1), "three looks", || {
            looks.fetch_add(1, Ordering::SeqCst) == 2
        })
        .await;
        assert_eq!(looks.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 50ms waiting for never")]
    async fn eventually_panics_with_what_and_how_long() {
        eventually(Duration::from_millis(50), "never", || false).await;
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_async_may_update_what_it_borrows() {
        let mut seen = 0;
        eventually_async(Duration::from_secs(1), "five", async || {
            seen += 1;
            seen == 5
        })
        .await;
        assert_eq!(seen, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn settle_returns_the_last_value_seen() {
        let mut n = 0;
        let hit = settle(
            Duration::from_secs(1),
            async || {
                n += 1;
                n
            },
            |&n| n == 4,
        )
        .await;
        assert_eq!(hit, 4);
        let missed = settle(Duration::from_millis(20), async || 7, |&n| n == 0).await;
        assert_eq!(missed, 7);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 10ms waiting for a reply")]
    async fn within_panics_with_what_and_how_long() {
        within(
            Duration::from_millis(10),
            "a reply",
            std::future::pending::<()>(),
        )
        .await;
    }
}
