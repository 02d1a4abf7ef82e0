//! The failover budget of each pool: worst-case times, from a validated [`Config`], for a dead
//! member to be detected and ejected, for traffic to reach the next tier, and for the member to
//! return, each with the arithmetic that gives it.
//!
//! Pure: no I/O and no clock. `sluice check --explain` prints it, and drills can hold reality
//! to it (see [`PoolBudget`] for which number is which drill bound).
//!
//! Every number is an upper bound on what sluice's own schedule can take. The health part is
//! not restated here but read from the checker's code: [`HealthState::next_delay`] at its
//! largest sample gives the longest wait while a member is stable and while it is failing or
//! down, and the probe grid gives the rounding added to each wait. Two things are not counted:
//! network round trips (a refused probe or connect fails within one) and time the host takes
//! to run sluice at all (a CPU starved for seconds delays everything).
//!
//! Two faults are told apart because probes see them differently: a member that **refuses**
//! (nothing listens: a RST) fails a probe at once, a **blackholed** one (SYNs dropped, or, for a
//! send/expect check, no reply) makes each probe wait its whole `timeout`.
//!
//! - `schedule`: detect and return from the health config and the checker's state machine.
//! - `clients`: what a route's clients pay meanwhile, from `connect_timeout` and `retry`.
//! - `render`: the printed block, durations as the config writes them, and the JSON.
//! - here: the types, eject, failover to the next tier, the breaker's part, and notes.
//!
//! [`HealthState::next_delay`]: crate::health::HealthState::next_delay

mod clients;
mod render;
mod schedule;

use std::time::Duration;

use crate::config::{BreakerConfig, Config, PoolConfig, RouteConfig};

use self::clients::client_wait;
use self::schedule::ProbeSchedule;

pub use render::{Bound, Line, format_duration};

/// tokio rounds every timer's deadline up to the next millisecond, so each wait (a sleep until
/// the next probe, a probe's timeout) may end up to this much after the instant it was set for.
pub const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// A time bound for each way a member can die.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByFault {
    /// Nothing listens: connects and probes are refused at once.
    pub refused: Duration,
    /// Connects and probes get no answer and wait out their timeouts.
    pub blackhole: Duration,
}

impl ByFault {
    /// The larger of the two: the bound that holds whatever the fault.
    pub fn worst(&self) -> Duration {
        self.refused.max(self.blackhole)
    }
}

/// How long until new connections go to the next tier once the primaries die.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failover {
    /// The pool has one tier: there is nothing to fail over to.
    SingleTier,
    /// New connections pick from the next tier within this, whatever the fault.
    Within(Duration),
    /// Health checks are off: only breakers, opened by clients' failed connects, move new
    /// connections on, so how soon depends on traffic.
    NoBound,
}

/// What a client of one route pays while a member is dead and not yet ejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientWait {
    pub route: String,
    /// Extra wait for each dead member the client picks: its `connect_timeout` when the member
    /// is blackholed (a refused connect costs a round trip). The client is then redialled at
    /// once to a member it has not tried, so with a live member left this is all it pays. Zero
    /// redials (`attempts = 1`): the client fails after it instead.
    pub per_dead_pick: Duration,
    /// The longest a client waits, then fails, when no live member is left to redial to (a
    /// one-member pool, or every member dead and not yet ejected): every attempt fails and the
    /// retry policy backs off between them, within `budget` plus one last connect.
    pub no_live_member: ByFault,
}

/// The worst-case failover budget of one pool, as `sluice check --explain` prints it.
///
/// The three drill bounds a scenario can take from it (`ejected_within = "explain"` and so on):
///
/// | drill bound | method | field |
/// |---|---|---|
/// | `ejected_within` | [`ejected_within`](Self::ejected_within) | [`detect`](Self::detect)`.worst()` |
/// | `backup_serves_within` | [`backup_serves_within`](Self::backup_serves_within) | [`failover`](Self::failover) |
/// | `returns_within` | [`returns_within`](Self::returns_within) | [`returns`](Self::returns)`.worst()` |
///
/// `ejected_within` and `backup_serves_within` are `None` where sluice promises no time (health
/// checks off; one tier for the latter). A drill sees `ejected_within` as the state change
/// itself, but measures `backup_serves_within` and `returns_within` to the first client served,
/// which adds that client's own connect and exchange to these numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolBudget {
    pub pool: String,
    /// The routes that forward to this pool, in config order.
    pub routes: Vec<String>,
    /// From a member dying right after a passed probe until health checks mark it down.
    /// `None`: health checks are off.
    pub detect: Option<ByFault>,
    /// Failed connects in a row that open a member's breaker (clients can eject a member before
    /// health does); `None`: the breaker is off.
    pub breaker_opens_after: Option<u32>,
    /// One per route using the pool.
    pub clients: Vec<ClientWait>,
    pub failover: Failover,
    /// From the member answering again until it is eligible for new connections again: rise
    /// probes with health checks; without, the breaker's longest open period (zero with no
    /// breaker either: nothing took the member out).
    pub returns: ByFault,
    /// `returns` plus the `slow_start` ramp: when the member takes its full share again.
    /// `None` without slow start.
    pub full_weight: Option<Duration>,
    /// The arithmetic, one line per number, in print order.
    pub lines: Vec<Line>,
}

impl PoolBudget {
    /// Bound for `ejected_within`: a dead member is out of rotation (health down) within this,
    /// whether it refuses or is blackholed. Clients' failed connects may open its breaker
    /// sooner; that only makes it earlier.
    pub fn ejected_within(&self) -> Option<Duration> {
        self.detect.map(|d| d.worst())
    }

    /// Bound for `backup_serves_within`: once every primary has died, new connections pick
    /// from the next tier within this. `None` with one tier or with health checks off.
    pub fn backup_serves_within(&self) -> Option<Duration> {
        match self.failover {
            Failover::Within(d) => Some(d),
            Failover::SingleTier | Failover::NoBound => None,
        }
    }

    /// Bound for `returns_within`: a member that answers again is eligible for new connections
    /// within this (with slow start at 10% of its weight at first; see
    /// [`full_weight`](Self::full_weight)). `Some` for every config: an `Option` like the
    /// other two so a drill reads all three alike.
    pub fn returns_within(&self) -> Option<Duration> {
        Some(self.returns.worst())
    }
}

/// The failover budget of every pool of `config`, in the config's pool order.
pub fn explain(config: &Config) -> Vec<PoolBudget> {
    config
        .pools
        .iter()
        .map(|pool| {
            let routes: Vec<&RouteConfig> = config
                .routes
                .iter()
                .filter(|r| r.pool == pool.name)
                .collect();
            pool_budget(pool, &routes)
        })
        .collect()
}

fn pool_budget(pool: &PoolConfig, routes: &[&RouteConfig]) -> PoolBudget {
    let mut lines = Vec::new();
    let health = pool.health.as_ref().map(|h| {
        let schedule = ProbeSchedule::of(h);
        lines.push(schedule.slack_line());
        schedule
    });
    let detect = health.as_ref().map(|s| s.detect(&mut lines));
    if detect.is_none() {
        lines.push(Line::unbounded(
            "detect",
            "health checks are off: nothing probes the members",
        ));
    }
    eject_line(detect, pool.breaker.as_ref(), &mut lines);
    let clients: Vec<ClientWait> = routes.iter().map(|r| client_wait(r, &mut lines)).collect();
    if routes.is_empty() {
        lines.push(Line::note("client", "no route forwards to this pool"));
    }
    let failover = failover(pool, detect, &mut lines);
    let returns = match &health {
        Some(s) => s.returns(&mut lines),
        None => breaker_return(pool.breaker.as_ref(), &mut lines),
    };
    let full_weight = full_weight(pool.slow_start, returns, &mut lines);
    notes(pool, detect, &mut lines);
    PoolBudget {
        pool: pool.name.clone(),
        routes: routes.iter().map(|r| r.name.clone()).collect(),
        detect,
        breaker_opens_after: pool.breaker.map(|b| b.consecutive_failures),
        clients,
        failover,
        returns,
        full_weight,
        lines,
    }
}

fn eject_line(detect: Option<ByFault>, breaker: Option<&BreakerConfig>, lines: &mut Vec<Line>) {
    let by_clients = breaker.map(|b| {
        format!(
            "the breaker opens on consecutive_failures {} failed connects in a row",
            b.consecutive_failures
        )
    });
    lines.push(match (detect, by_clients) {
        (Some(d), Some(by_clients)) => Line::bound(
            "eject",
            d.worst(),
            format!("= detect (blackhole); sooner with traffic: {by_clients}"),
        ),
        (Some(d), None) => Line::bound(
            "eject",
            d.worst(),
            "= detect (blackhole); breaker off, so clients never eject a member",
        ),
        (None, Some(by_clients)) => Line::unbounded(
            "eject",
            format!("only clients eject a member: {by_clients}, as fast as clients make them"),
        ),
        (None, None) => Line::unbounded(
            "eject",
            "never: health checks and breaker are off, so a dead member stays in rotation",
        ),
    });
}

fn failover(pool: &PoolConfig, detect: Option<ByFault>, lines: &mut Vec<Line>) -> Failover {
    let tiers = pool.members.iter().map(|m| m.tier).max().unwrap_or(0);
    if tiers == 0 {
        lines.push(Line::note(
            "failover",
            "one tier: nothing to fail over to (all_down decides what clients get)",
        ));
        return Failover::SingleTier;
    }
    let primaries = pool.members.iter().filter(|m| m.tier == 0).count();
    // Validation keeps min_healthy <= primaries, so the next tier is added only once this
    // many primaries are out; their checkers run side by side, so it takes one detect.
    let must_fail = primaries + 1 - pool.min_healthy.min(primaries);
    let when = format!(
        "once {must_fail} of {primaries} primaries are down (min_healthy {})",
        pool.min_healthy
    );
    match detect {
        Some(d) => {
            lines.push(Line::bound(
                "failover",
                d.worst(),
                format!("= detect (blackhole) {when}: the tier is chosen per connection, no timer"),
            ));
            lines.push(Line::note(
                "",
                "sooner per client: one that failed on every primary is redialled to the next tier at once",
            ));
            Failover::Within(d.worst())
        }
        None => {
            lines.push(Line::unbounded(
                "failover",
                format!("{when}, but with health checks off only open breakers count them down"),
            ));
            Failover::NoBound
        }
    }
}

/// Without health checks, only a breaker keeps a member out: it admits a trial again at the
/// end of its open period, at most `max_open_for` (the period doubles per failed trial).
fn breaker_return(breaker: Option<&BreakerConfig>, lines: &mut Vec<Line>) -> ByFault {
    let Some(b) = breaker else {
        lines.push(Line::bound(
            "return",
            Duration::ZERO,
            "at once: with health checks and breaker off nothing took the member out",
        ));
        return ByFault {
            refused: Duration::ZERO,
            blackhole: Duration::ZERO,
        };
    };
    lines.push(Line::bound(
        "return",
        b.max_open_for,
        format!(
            "= max_open_for {} (the breaker re-opened just before the member came back; open_for {} doubles per failed trial), then half_open_trials {} client connect(s) close it",
            format_duration(b.max_open_for),
            format_duration(b.open_for),
            b.half_open_trials,
        ),
    ));
    ByFault {
        refused: b.max_open_for,
        blackhole: b.max_open_for,
    }
}

fn full_weight(
    slow_start: Option<Duration>,
    returns: ByFault,
    lines: &mut Vec<Line>,
) -> Option<Duration> {
    let ramp = slow_start?;
    let back = returns.worst();
    let full = back + ramp;
    lines.push(Line::bound(
        "full",
        full,
        format!(
            "= return {} + slow_start {} (weight ramps from 10% to 100% once up)",
            format_duration(back),
            format_duration(ramp)
        ),
    ));
    Some(full)
}

fn notes(pool: &PoolConfig, detect: Option<ByFault>, lines: &mut Vec<Line>) {
    if let Some(h) = &pool.health
        && h.send.is_none()
        && h.expect.is_none()
        && h.http.is_none()
        && pool.silent.is_none()
    {
        lines.push(Line::note(
            "note",
            "a member that accepts, then hangs passes a connect check: set send/expect (or \
             http) to catch it, or breaker.silent_after_request to catch it from traffic",
        ));
    }
    if let (Some(d), Some(b)) = (detect, pool.breaker) {
        lines.push(Line::note(
            "note",
            format!(
                "a fault shorter than detect {} may open the breaker unseen by health: back after open_for {} (× 2 per failed trial, at most max_open_for {})",
                format_duration(d.worst()),
                format_duration(b.open_for),
                format_duration(b.max_open_for),
            ),
        ));
    }
    lines.push(Line::note(
        "note",
        "round trips are not counted (a refused probe or connect fails within one)",
    ));
}

#[cfg(test)]
mod tests;
