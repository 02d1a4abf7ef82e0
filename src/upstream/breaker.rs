//! The circuit breaker of one member: a pure state machine over connect outcomes and time.
//!
//! The usual words, in the usual sense (linkerd's gate uses them the other way round):
//!
//! - **Closed** passes traffic and counts consecutive member failures; a success resets the
//!   count. `consecutive_failures` in a row open it.
//! - **Open** rejects every connection for the open period (`open_for` at first).
//! - **HalfOpen** admits up to `half_open_trials` probe connections ("trials") at once. When
//!   that many have succeeded it closes; when one fails it opens again for twice the last
//!   period, capped at `max_open_for`.
//!
//! No I/O and no clock reads: every method takes `now` (tokio time, so a paused test clock
//! drives it). Open → HalfOpen is lazy: it happens in the first [`Breaker::try_acquire`] after
//! the period, so an idle member changes nothing until a connection wants it. Each call returns
//! the [`Transition`] it caused, at most once, so the caller logs and counts it exactly once.
//!
//! An early close (the member accepted, then closed without a byte) is learned after the connect
//! was already reported a success, so [`Breaker::on_early_close`] turns that success back into a
//! failure: the count resumes from where the last success had reset it, plus one. This is exact
//! for one connection at a time and, with several in flight, errs towards opening. An early close
//! within `early_close` of closing from HalfOpen means a trial failed after all: it re-opens at
//! once with the doubled period, so a member that accepts and hangs up still backs off
//! exponentially instead of cycling through `open_for`.
//!
//! A silent connection (the client spoke, the member said nothing for `silent_after_request`)
//! is learned even later and counts the same way through [`Breaker::on_silent`]. Its probation
//! after closing from HalfOpen lasts twice `silent_after_request`: long enough for the trial's
//! client to speak and its period to run out.
//!
//! [`Member`](super::Member) wraps this in a short lock with a lock-free mirror for selection.

use tokio::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// A member's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    /// Consecutive member failures while Closed.
    failures: u32,
    /// The count the last success reset; an early close restores it (see the module doc).
    reset_from: u32,
    /// The current open period: `open_for`, doubled for each failed half-open round, capped.
    open_for: Duration,
    /// After closing from HalfOpen: until when an early close means a trial failed after all.
    probation_until: Option<Instant>,
    /// The same for a silent connection (`silent_after_request` set).
    silent_probation_until: Option<Instant>,
    /// Numbers half-open rounds so an outcome from an older round is not counted in this one.
    round: u64,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// `issued` trials admitted this round (released ones given back), `succeeded` of them done.
    HalfOpen {
        issued: u32,
        succeeded: u32,
    },
}

/// The breaker as an operator sees it (for `/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Also reported once an open period has ended, before a trial has been admitted.
    HalfOpen {
        trials_in_flight: u32,
    },
    Open {
        until: Instant,
    },
}

/// The three states without their details: log fields, metric labels and gauge values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Closed,
    HalfOpen,
    Open,
}

/// How a connection was let through; hand it back with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Closed: an ordinary connection.
    Pass,
    /// HalfOpen: a trial of round `round`.
    Trial { round: u64 },
}

/// Admission granted, with the lazy Open → HalfOpen transition if this call made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    pub admit: Admit,
    pub transition: Option<Transition>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Open until `until`.
    Open { until: Instant },
    /// HalfOpen with every trial taken; a trial's outcome decides what comes next.
    TrialsTaken,
}

/// When the breaker next admits, as far as it knows: what selection reads without the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admits {
    Now,
    From(Instant),
    /// Not until a trial finishes.
    NotYet,
}

/// A state change, returned once by the call that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Phase,
    pub to: Phase,
    /// When opening: consecutive failures counted (1 for a failed trial). Otherwise 0.
    pub failures: u32,
    /// When opening: the period it stays open. Otherwise zero.
    pub open_for: Duration,
}

// === impl Breaker ===

impl Breaker {
    /// A closed breaker. `config` is validated: thresholds >= 1, `open_for <= max_open_for`.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::Closed,
            failures: 0,
            reset_from: 0,
            open_for: config.open_for,
            probation_until: None,
            silent_probation_until: None,
            round: 0,
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Asks to let one connection through at `now`; a trial slot is taken when HalfOpen.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Acquired, Rejected> {
        let transition = self.advance(now);
        let admit = match &mut self.state {
            State::Closed => Admit::Pass,
            State::Open { until } => return Err(Rejected::Open { until: *until }),
            State::HalfOpen { issued, .. } if *issued < self.config.half_open_trials => {
                *issued += 1;
                Admit::Trial { round: self.round }
            }
            State::HalfOpen { .. } => return Err(Rejected::TrialsTaken),
        };
        Ok(Acquired { admit, transition })
    }

    /// Whether [`try_acquire`](Self::try_acquire) would admit, without changing anything.
    pub fn admits(&self) -> Admits {
        match self.state {
            State::Closed => Admits::Now,
            State::Open { until } => Admits::From(until),
            State::HalfOpen { issued, .. } if issued < self.config.half_open_trials => Admits::Now,
            State::HalfOpen { .. } => Admits::NotYet,
        }
    }

    /// The state at `now`, with a finished open period reported as HalfOpen.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open { until },
            State::Open { .. } => BreakerState::HalfOpen {
                trials_in_flight: 0,
            },
            State::HalfOpen { issued, succeeded } => BreakerState::HalfOpen {
                trials_in_flight: issued - succeeded,
            },
        }
    }

    /// The connection admitted as `admit` connected.
    pub fn on_success(&mut self, now: Instant, admit: Admit) -> Option<Transition> {
        match (&mut self.state, admit) {
            (State::Closed, _) => {
                self.reset_from = self.failures;
                self.failures = 0;
                None
            }
            (State::HalfOpen { succeeded, .. }, Admit::Trial { round }) if round == self.round => {
                *succeeded += 1;
                if *succeeded < self.config.half_open_trials {
                    return None;
                }
                self.state = State::Closed;
                self.failures = 0;
                self.reset_from = 0;
                // The open period stays doubled through probation; `open` resets it after.
                self.probation_until = (!self.config.early_close.is_zero())
                    .then(|| crate::time::later(now, self.config.early_close));
                let silent = self.config.silent_after_request;
                self.silent_probation_until =
                    (!silent.is_zero()).then(|| crate::time::later(now, silent.saturating_mul(2)));
                Some(Transition::plain(Phase::HalfOpen, Phase::Closed))
            }
            // Outcomes of connections admitted before the breaker opened, or in an older
            // half-open round, say nothing about the member now.
            _ => None,
        }
    }

    /// The connection admitted as `admit` failed through the member's fault.
    pub fn on_failure(&mut self, now: Instant, admit: Admit) -> Option<Transition> {
        match (self.state, admit) {
            (State::Closed, _) => {
                self.failures = self.failures.saturating_add(1);
                self.open_if_over(now)
            }
            (State::HalfOpen { .. }, Admit::Trial { round }) if round == self.round => {
                Some(self.open(now, Phase::HalfOpen, 1, true))
            }
            _ => None,
        }
    }

    /// A connection whose connect was reported a success closed early (see the module doc).
    pub fn on_early_close(&mut self, now: Instant) -> Option<Transition> {
        let probation = self.probation_until;
        self.late_failure(now, probation)
    }

    /// A connection whose connect was reported a success stayed silent after its client spoke
    /// (see the module doc): counted like an early close, with its own probation.
    pub fn on_silent(&mut self, now: Instant) -> Option<Transition> {
        let probation = self.silent_probation_until;
        self.late_failure(now, probation)
    }

    /// A failure learned after the connect was reported a success; within `probation` of
    /// closing from HalfOpen it means the trial failed after all.
    fn late_failure(&mut self, now: Instant, probation: Option<Instant>) -> Option<Transition> {
        match self.state {
            State::Closed if probation.is_some_and(|p| now < p) => {
                Some(self.open(now, Phase::Closed, 1, true))
            }
            State::Closed => {
                self.failures = self
                    .failures
                    .saturating_add(self.reset_from)
                    .saturating_add(1);
                self.reset_from = 0;
                self.open_if_over(now)
            }
            // Only trials were admitted since the open period, so an early close now is a
            // trial's (a round with none issued has nobody to blame).
            State::HalfOpen { issued, .. } if issued > 0 => {
                Some(self.open(now, Phase::HalfOpen, 1, true))
            }
            State::HalfOpen { .. } | State::Open { .. } => None,
        }
    }

    /// Health probes brought the member back up after it was down: the failures this breaker
    /// counted belong to the outage the probes have just seen end, so it closes with a fresh
    /// count and its first period (Envoy's `successful_active_health_check_uneject_host` does the
    /// same). Without this a member that died with clients arriving stays open after it returns,
    /// up and never picked, for the rest of `open_for`. Outcomes of connections admitted before
    /// (an older round) are ignored from now on.
    pub fn reset(&mut self) -> Option<Transition> {
        let from = match self.state {
            State::Closed => None,
            State::Open { .. } => Some(Phase::Open),
            State::HalfOpen { .. } => Some(Phase::HalfOpen),
        };
        self.state = State::Closed;
        self.failures = 0;
        self.reset_from = 0;
        self.open_for = self.config.open_for;
        self.probation_until = None;
        self.silent_probation_until = None;
        self.round += 1;
        from.map(|from| Transition::plain(from, Phase::Closed))
    }

    /// The connection admitted as `admit` ended with no verdict on the member (cancelled, or
    /// refused by sluice itself): a trial gives its slot back.
    pub fn release(&mut self, admit: Admit) {
        match (&mut self.state, admit) {
            (State::HalfOpen { issued, .. }, Admit::Trial { round }) if round == self.round => {
                *issued = issued.saturating_sub(1);
            }
            _ => {}
        }
    }

    /// Open → HalfOpen once the period is over.
    fn advance(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            State::Open { until } if now >= until => {
                self.round += 1;
                self.state = State::HalfOpen {
                    issued: 0,
                    succeeded: 0,
                };
                Some(Transition::plain(Phase::Open, Phase::HalfOpen))
            }
            _ => None,
        }
    }

    fn open_if_over(&mut self, now: Instant) -> Option<Transition> {
        (self.failures >= self.config.consecutive_failures)
            .then(|| self.open(now, Phase::Closed, self.failures, false))
    }

    /// Opens for the current period doubled (`escalate`, a failed trial) or for `open_for`.
    fn open(&mut self, now: Instant, from: Phase, failures: u32, escalate: bool) -> Transition {
        self.open_for = if escalate {
            self.open_for
                .saturating_mul(2)
                .min(self.config.max_open_for)
        } else {
            self.config.open_for
        };
        self.state = State::Open {
            until: crate::time::later(now, self.open_for),
        };
        self.failures = 0;
        self.reset_from = 0;
        self.probation_until = None;
        self.silent_probation_until = None;
        Transition {
            from,
            to: Phase::Open,
            failures,
            open_for: self.open_for,
        }
    }
}

// === impl Phase ===

impl Phase {
    /// Label value of `sluice_breaker_transitions_total{to}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    /// Value of the `sluice_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

impl BreakerState {
    pub fn phase(&self) -> Phase {
        match self {
            Self::Closed => Phase::Closed,
            Self::HalfOpen { .. } => Phase::HalfOpen,
            Self::Open { .. } => Phase::Open,
        }
    }
}

impl Transition {
    fn plain(from: Phase, to: Phase) -> Self {
        Self {
            from,
            to,
            failures: 0,
            open_for: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests;
