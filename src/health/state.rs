//! The health state machine of one member: rise/fall counting and probe scheduling.
//!
//! Pure: no I/O and no clock. The checker task feeds it probe outcomes and random samples, and
//! sleeps for the delays it returns, so every rule here is testable without a runtime.
//!
//! Semantics (HAProxy-like):
//! - Until the first probe result the member keeps its initial state, and that first result
//!   decides alone (HAProxy 3.1 `init-state up|down`): a failure takes an initially up member
//!   down, a success brings an initially down member up.
//! - After that, `fall` consecutive failures take an up member down and `rise` consecutive
//!   successes bring a down member up. A result that agrees with the current state resets the
//!   count, so only an unbroken streak flips the member.
//! - A member is probed every `interval` while stable (up, no failure pending) and every
//!   `fast_interval` while it is changing state or down (HAProxy `fastinter`/`downinter`).

use std::time::Duration;

use crate::config::HealthConfig;

use super::probe::ProbeFailure;

/// The reason given when a member comes up.
const PASSED: &str = "check passed";

/// A change of a member's health, returned once by [`HealthState::observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The new state: true for up.
    pub to_up: bool,
    /// The last probe's failure (for example `connect refused`), or `check passed` when up.
    pub reason: String,
    /// The consecutive results that caused it: `rise` or `fall`, or 1 for the first probe.
    pub after: u32,
}

/// Rise/fall state of one member.
#[derive(Clone, Debug)]
pub struct HealthState {
    up: bool,
    rise: u32,
    fall: u32,
    /// No probe result yet: the next one decides alone.
    fresh: bool,
    /// Consecutive results against the current state: failures while up, successes while down.
    /// One counter suffices because a result for the current state resets it.
    streak: u32,
}

// === impl HealthState ===

impl HealthState {
    /// A member that is `init_up` until its first probe. `rise` and `fall` below 1 act as 1.
    pub fn new(init_up: bool, rise: u32, fall: u32) -> Self {
        Self {
            up: init_up,
            rise: rise.max(1),
            fall: fall.max(1),
            fresh: true,
            streak: 0,
        }
    }

    /// Whether the member is up as far as probes have decided.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Results against the current state so far (failures while up, successes while down).
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Counts one probe result. Returns the transition it causes, if any, exactly once.
    pub fn observe(&mut self, outcome: Result<(), ProbeFailure>) -> Option<Transition> {
        // sluice's own shortage (EMFILE, ...) is no observation of the member: neither a
        // failure nor a pass, and the streak stays where it was.
        if matches!(outcome, Err(ProbeFailure::LocalResource { .. })) {
            return None;
        }
        let needed = match (self.fresh, self.up) {
            (true, _) => 1,
            (false, true) => self.fall,
            (false, false) => self.rise,
        };
        self.fresh = false;
        if outcome.is_ok() == self.up {
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        if self.streak < needed {
            return None;
        }
        let after = self.streak;
        self.up = !self.up;
        self.streak = 0;
        // The reason is rendered only here, so a steady stream of failures while down
        // allocates nothing.
        let reason = match outcome {
            Ok(()) => PASSED.to_string(),
            Err(failure) => failure.to_string(),
        };
        Some(Transition {
            to_up: self.up,
            reason,
            after,
        })
    }

    /// How long to wait before the next probe, measured from the end of the last one (so slow
    /// probes never overlap). `sample` is uniform in `[0, 1)`; out-of-range values are clamped.
    ///
    /// - Before the first probe: `sample × 2·jitter × min(interval, fast_interval)`, i.e. within
    ///   `[0, 2·jitter·min)`. Members started together then spread their first probes over the
    ///   same width as later jitter (a whole fast interval at the maximum jitter 0.5), while
    ///   `jitter = 0` probes at once, deterministically.
    /// - Afterwards `d × (1 - jitter + 2·jitter·sample)`, i.e. uniform in `d × (1 ± jitter)`,
    ///   where `d` is `interval` when stable and `fast_interval` when changing state or down.
    ///
    /// Results are rounded to the nanosecond.
    pub fn next_delay(&self, config: &HealthConfig, sample: f64) -> Duration {
        let sample = if sample.is_nan() {
            0.0
        } else {
            sample.clamp(0.0, 1.0)
        };
        let jitter = config.jitter.clamp(0.0, 0.5);
        if self.fresh {
            let window = config.interval.min(config.fast_interval);
            return scale(window, 2.0 * jitter * sample);
        }
        let stable = self.up && self.streak == 0;
        let base = if stable {
            config.interval
        } else {
            config.fast_interval
        };
        scale(base, 1.0 - jitter + 2.0 * jitter * sample)
    }
}

/// `d × factor` in whole nanoseconds. Float-to-int `as` saturates, so this never panics.
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::from_nanos((d.as_nanos() as f64 * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Result<(), ProbeFailure> {
        Err(ProbeFailure::Refused)
    }

    fn config(jitter: f64) -> HealthConfig {
        HealthConfig {
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_millis(500),
            jitter,
            ..HealthConfig::default()
        }
    }

    /// Feeds outcomes and returns the index and value of every transition.
    fn run(state: &mut HealthState, outcomes: &[bool]) -> Vec<(usize, Transition)> {
        let mut out = Vec::new();
        for (i, &ok) in outcomes.iter().enumerate() {
            let outcome = if ok { Ok(()) } else { fail() };
            if let Some(t) = state.observe(outcome) {
                out.push((i, t));
            }
        }
        out
    }

    #[test]
    fn sluices_own_shortage_is_no_observation_of_the_member() {
        let short = || {
            Err(ProbeFailure::LocalResource {
                error: "Too many open files (os error 24)".into(),
            })
        };
        let mut state = HealthState::new(true, 2, 3);
        for _ in 0..10 {
            assert_eq!(state.observe(short()), None);
        }
        assert!(state.is_up());
        // One real failure after them is the first of a streak, not the third.
        assert_eq!(
            state.observe(fail()),
            Some(Transition {
                to_up: false,
                reason: "connect refused".into(),
                after: 1
            })
        );
        for _ in 0..10 {
            assert_eq!(state.observe(short()), None);
        }
        assert!(!state.is_up());
    }

    #[test]
    fn first_failure_takes_init_up_member_down_at_once() {
        let mut state = HealthState::new(true, 2, 3);
        let t = state.observe(fail()).expect("transition");
        assert_eq!(
            t,
            Transition {
                to_up: false,
                reason: "connect refused".into(),
                after: 1
            }
        );
        assert!(!state.is_up());
    }

    #[test]
    fn first_success_brings_init_down_member_up_at_once() {
        let mut state = HealthState::new(false, 2, 3);
        let t = state.observe(Ok(())).expect("transition");
        assert_eq!((t.to_up, t.reason.as_str(), t.after), (true, PASSED, 1));
    }

    #[test]
    fn first_probe_agreeing_with_init_state_changes_nothing() {
        let mut up = HealthState::new(true, 2, 3);
        assert_eq!(run(&mut up, &[true, false, false]), vec![]);
        assert!(up.is_up());
        let mut down = HealthState::new(false, 2, 3);
        // After a failed first probe, rise successes are needed, not one.
        let flips = run(&mut down, &[false, true, true]);
        assert_eq!(flips.len(), 1);
        assert_eq!(
            (flips[0].0, flips[0].1.to_up, flips[0].1.after),
            (2, true, 2)
        );
    }

    #[test]
    fn falls_after_fall_consecutive_failures() {
        let mut state = HealthState::new(true, 2, 3);
        let flips = run(&mut state, &[true, false, false, false, false]);
        assert_eq!(flips.len(), 1, "transition returned exactly once");
        assert_eq!(
            (flips[0].0, flips[0].1.to_up, flips[0].1.after),
            (3, false, 3)
        );
        assert_eq!(flips[0].1.reason, "connect refused");
        assert!(!state.is_up());
    }

    #[test]
    fn success_resets_pending_failures() {
        let mut state = HealthState::new(true, 2, 3);
        assert_eq!(run(&mut state, &[true, false, false, true]), vec![]);
        assert_eq!(state.streak(), 0);
        assert_eq!(run(&mut state, &[false, false]), vec![]);
        assert!(state.is_up());
        assert_eq!(run(&mut state, &[false]).len(), 1);
    }

    #[test]
    fn failure_resets_pending_successes() {
        let mut state = HealthState::new(false, 3, 1);
        assert_eq!(
            run(&mut state, &[false, true, true, false, true, true]),
            vec![]
        );
        assert!(!state.is_up());
        let flips = run(&mut state, &[true, true]);
        assert_eq!((flips[0].0, flips[0].1.after), (0, 3));
    }

    #[test]
    fn full_cycle_with_rise_and_fall_of_one() {
        let mut state = HealthState::new(true, 1, 1);
        let flips = run(&mut state, &[true, false, false, true, true, false]);
        let at: Vec<_> = flips.iter().map(|(i, t)| (*i, t.to_up)).collect();
        assert_eq!(at, vec![(1, false), (3, true), (5, false)]);
    }

    #[test]
    fn zero_rise_and_fall_act_as_one() {
        let mut state = HealthState::new(true, 0, 0);
        assert_eq!(run(&mut state, &[true, false, true]).len(), 2);
    }

    #[test]
    fn interval_is_normal_when_stable_and_fast_otherwise() {
        let cfg = config(0.0);
        let mut state = HealthState::new(true, 2, 3);
        assert_eq!(
            state.next_delay(&cfg, 0.7),
            Duration::ZERO,
            "first probe at once"
        );
        state.observe(Ok(()));
        assert_eq!(state.next_delay(&cfg, 0.7), cfg.interval);
        state.observe(fail());
        assert_eq!(state.next_delay(&cfg, 0.7), cfg.fast_interval, "falling");
        state.observe(Ok(()));
        assert_eq!(state.next_delay(&cfg, 0.7), cfg.interval, "stable again");
        run(&mut state, &[false, false, false]);
        assert!(!state.is_up());
        assert_eq!(state.next_delay(&cfg, 0.7), cfg.fast_interval, "down");
        state.observe(Ok(()));
        assert_eq!(state.next_delay(&cfg, 0.7), cfg.fast_interval, "rising");
        state.observe(Ok(()));
        assert_eq!(state.next_delay(&cfg, 0.7), cfg.interval, "up");
    }

    #[test]
    fn jitter_bounds_are_exact() {
        let cfg = config(0.2);
        let mut state = HealthState::new(true, 2, 3);
        assert_eq!(state.next_delay(&cfg, 0.0), Duration::ZERO);
        // First probe: within 2 × 0.2 × min(2s, 500ms) = 200ms.
        assert_eq!(state.next_delay(&cfg, 1.0), Duration::from_millis(200));
        state.observe(Ok(()));
        assert_eq!(state.next_delay(&cfg, 0.0), Duration::from_millis(1600));
        assert_eq!(state.next_delay(&cfg, 0.5), Duration::from_secs(2));
        assert_eq!(state.next_delay(&cfg, 1.0), Duration::from_millis(2400));
        let near_one = state.next_delay(&cfg, 1.0 - f64::EPSILON);
        assert!(near_one <= Duration::from_millis(2400) && near_one > Duration::from_millis(2399));
        // Out-of-range samples are clamped rather than trusted.
        assert_eq!(state.next_delay(&cfg, -3.0), Duration::from_millis(1600));
        assert_eq!(
            state.next_delay(&cfg, f64::NAN),
            Duration::from_millis(1600)
        );
        assert_eq!(state.next_delay(&cfg, 7.0), Duration::from_millis(2400));
    }

    #[test]
    fn jittered_delays_stay_within_bounds() {
        use rand::{RngExt, SeedableRng, rngs::SmallRng};
        let cfg = config(0.5);
        let mut rng = SmallRng::seed_from_u64(7);
        let fresh = HealthState::new(false, 2, 3);
        let mut down = fresh.clone();
        down.observe(fail());
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for _ in 0..10_000 {
            let first = fresh.next_delay(&cfg, rng.random());
            assert!(first <= cfg.fast_interval, "{first:?}");
            let d = down.next_delay(&cfg, rng.random());
            assert!(
                d >= cfg.fast_interval / 2 && d <= cfg.fast_interval * 3 / 2,
                "{d:?}"
            );
            (lo, hi) = (lo.min(d), hi.max(d));
        }
        // The draws cover the window rather than clustering.
        assert!(lo < Duration::from_millis(260) && hi > Duration::from_millis(740));
    }
}
