//! The health part of a budget: the longest waits of a member's heartbeat, read from the
//! checker's own state machine, turned into detect and return times for both faults.

use std::time::Duration;

use super::{ByFault, Line, TIMER_RESOLUTION, format_duration};
use crate::config::HealthConfig;
use crate::health::{HealthState, ProbeFailure, probe_grid_tick};

/// The longest waits of a member's heartbeat, as the checker computes them.
pub(super) struct ProbeSchedule<'a> {
    config: &'a HealthConfig,
    /// Longest wait after a passed probe while the member is up and stable.
    stable: Duration,
    /// Longest wait while the member is failing (up with failures pending), down, or rising.
    fast: Duration,
    /// Added to each wait at most: the probe grid's rounding plus the timer's.
    slack: Duration,
    grid: Duration,
}

impl<'a> ProbeSchedule<'a> {
    pub(super) fn of(config: &'a HealthConfig) -> Self {
        // The largest sample gives the longest delay (uniform in `d × (1 ± jitter)`); driving
        // the real state machine rather than restating its rules keeps the two in step. A
        // failing, down or rising member all wait the same (state.rs), so the delay after one
        // failure serves detect and return alike.
        const LONGEST: f64 = 1.0;
        let mut state = HealthState::new(true, config.rise, config.fall);
        state.observe(Ok(()));
        let stable = state.next_delay(config, LONGEST);
        state.observe(Err(ProbeFailure::Refused));
        let fast = state.next_delay(config, LONGEST);
        let grid = probe_grid_tick(config);
        Self {
            config,
            stable,
            fast,
            slack: grid + TIMER_RESOLUTION,
            grid,
        }
    }

    pub(super) fn slack_line(&self) -> Line {
        Line::bound(
            "slack",
            self.slack,
            format!(
                "per wait = probe grid {} (a 16th of the shorter interval, at most 20ms) + timer {}",
                format_duration(self.grid),
                format_duration(TIMER_RESOLUTION)
            ),
        )
    }

    /// `interval 2s × 1.1`: a base interval and its largest jitter factor.
    fn jittered(&self, name: &str, base: Duration) -> String {
        let j = self.config.jitter;
        if j == 0.0 {
            format!("{name} {}", format_duration(base))
        } else {
            format!("{name} {} × {}", format_duration(base), 1.0 + j)
        }
    }

    /// A member that dies right after a passed probe: the next probe comes after the stable
    /// interval, and every later one after the fast interval, until `fall` have failed.
    pub(super) fn detect(&self, lines: &mut Vec<Line>) -> ByFault {
        let fall = self.config.fall;
        let refused = self.stable + self.fast * (fall - 1) + self.slack * fall;
        let per_probe = self.config.timeout + TIMER_RESOLUTION;
        let blackhole = refused + per_probe * fall;
        lines.push(Line::bound(
            "detect",
            refused,
            format!(
                "refused   = {} + (fall {fall} − 1) × {} + fall {fall} × slack {}",
                self.jittered("interval", self.config.interval),
                self.jittered("fast_interval", self.config.fast_interval),
                format_duration(self.slack),
            ),
        ));
        lines.push(Line::bound(
            "",
            blackhole,
            format!(
                "blackhole = {} + fall {fall} × (timeout {} + timer {})",
                format_duration(refused),
                format_duration(self.config.timeout),
                format_duration(TIMER_RESOLUTION),
            ),
        ));
        ByFault { refused, blackhole }
    }

    /// A member that answers again right after a failed probe: `rise` passed probes, each
    /// after the fast interval (down and rising both use it). Blackholed, the probe in flight
    /// when it returns still waits out its timeout first.
    pub(super) fn returns(&self, lines: &mut Vec<Line>) -> ByFault {
        let rise = self.config.rise;
        let refused = (self.fast + self.slack) * rise;
        let blackhole = self.config.timeout + TIMER_RESOLUTION + refused;
        lines.push(Line::bound(
            "return",
            refused,
            format!(
                "refused   = rise {rise} × ({} + slack {})",
                self.jittered("fast_interval", self.config.fast_interval),
                format_duration(self.slack),
            ),
        ));
        lines.push(Line::bound(
            "",
            blackhole,
            format!(
                "blackhole = timeout {} + timer {} + {}; coming up resets its breaker: picked at once",
                format_duration(self.config.timeout),
                format_duration(TIMER_RESOLUTION),
                format_duration(refused),
            ),
        ));
        ByFault { refused, blackhole }
    }
}
