//! At most one log line per period for an event that can repeat thousands of times a second
//! (accept failing with EMFILE on every worker, every connect of a descriptor-starved
//! process), with the count of the ones it held back, so the log says how often without
//! drowning everything else in it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One throttled event kind; usable in a `static`.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    /// Milliseconds since [`origin`] of the last admitted line, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub const fn new(period: Duration) -> Self {
        Self {
            period,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when a line may be logged now, else `None` (and
    /// the event is counted as held back). Concurrent callers admit at most one per period.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(origin().elapsed().as_millis() as u64 + 1)
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.period.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_secs(1));
        assert_eq!(t.admit_at(1), Some(0));
        for ms in [2, 500, 1000] {
            assert_eq!(t.admit_at(ms), None);
        }
        assert_eq!(t.admit_at(1001), Some(3));
        assert_eq!(t.admit_at(1002), None);
        assert_eq!(t.admit_at(5000), Some(1));
    }
}
