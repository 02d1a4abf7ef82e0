//! Transitions of the pure machine, on instants built from one base (no clock involved).

use super::*;

const OPEN_FOR: Duration = Duration::from_secs(10);

fn config(failures: u32, trials: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: failures,
        open_for: OPEN_FOR,
        max_open_for: Duration::from_secs(35),
        half_open_trials: trials,
        early_close: Duration::from_millis(200),
        silent_after_request: Duration::ZERO,
    }
}

fn pass(b: &mut Breaker, now: Instant) -> Admit {
    b.try_acquire(now).expect("admitted").admit
}

/// Opens a closed breaker with `failures` connect failures at `now`.
fn open(b: &mut Breaker, now: Instant) -> Transition {
    let mut last = None;
    for _ in 0..b.config().consecutive_failures {
        let admit = pass(b, now);
        last = b.on_failure(now, admit);
    }
    last.expect("the last failure opens it")
}

fn opened(from: Phase, failures: u32, open_for: Duration) -> Option<Transition> {
    Some(Transition {
        from,
        to: Phase::Open,
        failures,
        open_for,
    })
}

#[test]
fn opens_after_consecutive_failures_once() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(3, 1));
    for _ in 0..2 {
        let admit = pass(&mut b, t0);
        assert_eq!(admit, Admit::Pass);
        assert_eq!(b.on_failure(t0, admit), None);
    }
    assert_eq!(
        b.on_failure(t0, Admit::Pass),
        opened(Phase::Closed, 3, OPEN_FOR)
    );
    // A straggler admitted before it opened fails too: no second transition.
    assert_eq!(b.on_failure(t0, Admit::Pass), None);
    assert_eq!(
        b.state(t0),
        BreakerState::Open {
            until: t0 + OPEN_FOR
        }
    );
}

#[test]
fn success_resets_the_count() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(3, 1));
    b.on_failure(t0, Admit::Pass);
    b.on_failure(t0, Admit::Pass);
    b.on_success(t0, Admit::Pass);
    b.on_failure(t0, Admit::Pass);
    assert_eq!(b.on_failure(t0, Admit::Pass), None);
    assert_eq!(b.state(t0), BreakerState::Closed);
}

#[test]
fn open_rejects_until_its_period_ends() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(1, 1));
    open(&mut b, t0);
    let until = t0 + OPEN_FOR;
    let almost = until - Duration::from_millis(1);
    assert_eq!(b.try_acquire(almost), Err(Rejected::Open { until }));
    assert_eq!(b.admits(), Admits::From(until));
    assert_eq!(b.state(almost), BreakerState::Open { until });
    // Lazy: the state reads half-open at `until`, but nothing changed until someone asks.
    assert_eq!(
        b.state(until),
        BreakerState::HalfOpen {
            trials_in_flight: 0
        }
    );
    let acquired = b.try_acquire(until).unwrap();
    assert!(matches!(acquired.admit, Admit::Trial { .. }));
    assert_eq!(
        acquired.transition,
        Some(Transition::plain(Phase::Open, Phase::HalfOpen))
    );
}

#[test]
fn half_open_admits_exactly_its_trials_then_closes() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(1, 2));
    open(&mut b, t0);
    let t1 = t0 + OPEN_FOR;
    let first = pass(&mut b, t1);
    let second = b.try_acquire(t1).unwrap();
    assert_eq!(second.transition, None, "the transition is returned once");
    assert_eq!(b.try_acquire(t1), Err(Rejected::TrialsTaken));
    assert_eq!(b.admits(), Admits::NotYet);
    // Success of an ordinary connection from before the opening is not a trial's.
    assert_eq!(b.on_success(t1, Admit::Pass), None);
    assert_eq!(b.on_success(t1, first), None);
    assert_eq!(
        b.state(t1),
        BreakerState::HalfOpen {
            trials_in_flight: 1
        }
    );
    assert_eq!(
        b.on_success(t1, second.admit),
        Some(Transition::plain(Phase::HalfOpen, Phase::Closed))
    );
    assert_eq!(b.state(t1), BreakerState::Closed);
    assert_eq!(b.admits(), Admits::Now);
}

#[test]
fn failed_trial_reopens_for_double_capped_then_close_resets() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(1, 1));
    open(&mut b, t0);
    let mut now = t0;
    // 10s, then 20s, then 35s (cap), then 35s again.
    for expected in [20, 35, 35] {
        now += b.open_for;
        let trial = pass(&mut b, now);
        let t = b.on_failure(now, trial);
        assert_eq!(t, opened(Phase::HalfOpen, 1, Duration::from_secs(expected)));
    }
    now += b.open_for;
    let trial = pass(&mut b, now);
    assert!(b.on_success(now, trial).is_some());
    // Past probation, the next opening is back to `open_for`.
    now += Duration::from_secs(1);
    assert_eq!(
        open(&mut b, now),
        opened(Phase::Closed, 1, OPEN_FOR).unwrap()
    );
}

#[test]
fn released_trial_frees_its_slot_and_stale_rounds_are_ignored() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(1, 1));
    open(&mut b, t0);
    let t1 = t0 + OPEN_FOR;
    let old = pass(&mut b, t1);
    b.release(old);
    let trial = pass(&mut b, t1);
    b.on_failure(t1, trial);
    let t2 = t1 + Duration::from_secs(20);
    let current = pass(&mut b, t2);
    // `trial` belonged to the previous round: its late outcome decides nothing now.
    assert_eq!(b.on_success(t2, trial), None);
    assert_eq!(b.try_acquire(t2), Err(Rejected::TrialsTaken));
    assert!(b.on_success(t2, current).is_some());
}

#[test]
fn early_close_undoes_its_connect_success() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(3, 1));
    // One connection at a time, each connects then hangs up: opens on the third.
    for i in 1..=3 {
        let admit = pass(&mut b, t0);
        b.on_success(t0, admit);
        let t = b.on_early_close(t0);
        assert_eq!(t.is_some(), i == 3, "early close #{i}");
    }
    // Isolated early closes among successes do not add up.
    let mut b = Breaker::new(config(3, 1));
    for _ in 0..10 {
        b.on_success(t0, Admit::Pass);
        b.on_success(t0, Admit::Pass);
        assert_eq!(b.on_early_close(t0), None);
    }
}

#[test]
fn early_close_in_probation_reopens_doubled() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(5, 1));
    open(&mut b, t0);
    let t1 = t0 + OPEN_FOR;
    let trial = pass(&mut b, t1);
    assert!(b.on_success(t1, trial).is_some());
    let t2 = t1 + Duration::from_millis(150);
    assert_eq!(
        b.on_early_close(t2),
        opened(Phase::Closed, 1, Duration::from_secs(20))
    );
    // And an early close of a trial still in HalfOpen re-opens it too.
    let t3 = t2 + Duration::from_secs(20);
    pass(&mut b, t3);
    assert_eq!(
        b.on_early_close(t3),
        opened(Phase::HalfOpen, 1, Duration::from_secs(35))
    );
}

#[test]
fn silent_connections_open_it_like_early_closes() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(3, 1));
    // One connection at a time: each connect succeeds, then its member stays silent.
    for i in 1..=3 {
        let admit = pass(&mut b, t0);
        b.on_success(t0, admit);
        let t = b.on_silent(t0);
        assert_eq!(t.is_some(), i == 3, "silent connection #{i}");
    }
    // Connections that answered in between reset the count.
    let mut b = Breaker::new(config(3, 1));
    for _ in 0..10 {
        b.on_success(t0, Admit::Pass);
        b.on_success(t0, Admit::Pass);
        assert_eq!(b.on_silent(t0), None);
    }
}

#[test]
fn silent_trial_reopens_doubled_within_twice_the_period() {
    let silent = Duration::from_secs(2);
    let t0 = Instant::now();
    let mut b = Breaker::new(BreakerConfig {
        silent_after_request: silent,
        ..config(5, 1)
    });
    open(&mut b, t0);
    let t1 = t0 + OPEN_FOR;
    let trial = pass(&mut b, t1);
    assert!(b.on_success(t1, trial).is_some(), "the trial connected");
    // Its client spoke a moment later; the member stayed silent for the period.
    let t2 = t1 + silent + Duration::from_millis(300);
    assert!(
        t2 > t1 + Duration::from_millis(200),
        "past early_close's probation"
    );
    assert_eq!(
        b.on_silent(t2),
        opened(Phase::Closed, 1, Duration::from_secs(20))
    );
    // Past the probation a silent connection is one failure among others.
    let t3 = t2 + Duration::from_secs(20);
    let trial = pass(&mut b, t3);
    assert!(b.on_success(t3, trial).is_some());
    assert_eq!(b.on_silent(t3 + silent * 2), None);
    // Without the option set there is no silent probation.
    let mut b = Breaker::new(config(5, 1));
    open(&mut b, t0);
    let trial = pass(&mut b, t1);
    b.on_success(t1, trial);
    assert_eq!(b.on_silent(t2), None);
}

#[test]
fn reset_closes_from_any_state_with_a_fresh_count_and_period() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(2, 1));
    // Open, fail a trial (period doubled), then the probes see the member come back.
    open(&mut b, t0);
    let t1 = t0 + OPEN_FOR;
    let trial = pass(&mut b, t1);
    assert!(b.on_failure(t1, trial).is_some());
    assert!(matches!(b.state(t1), BreakerState::Open { until } if until == t1 + 2 * OPEN_FOR));
    assert_eq!(
        b.reset(),
        Some(Transition::plain(Phase::Open, Phase::Closed))
    );
    assert_eq!(b.state(t1), BreakerState::Closed);
    // A fresh count: one failure does not open a breaker that needs two...
    let admit = pass(&mut b, t1);
    assert_eq!(b.on_failure(t1, admit), None);
    // ...and the next opening is for the first period, not the doubled one.
    let admit = pass(&mut b, t1);
    assert_eq!(b.on_failure(t1, admit), opened(Phase::Closed, 2, OPEN_FOR));
    // Half-open resets too; a closed breaker reports no transition but forgets its count.
    let t2 = t1 + OPEN_FOR;
    pass(&mut b, t2);
    assert_eq!(
        b.reset(),
        Some(Transition::plain(Phase::HalfOpen, Phase::Closed))
    );
    let admit = pass(&mut b, t2);
    assert_eq!(b.on_failure(t2, admit), None);
    assert_eq!(b.reset(), None);
    let admit = pass(&mut b, t2);
    assert_eq!(b.on_failure(t2, admit), None, "the count restarted at zero");
}
