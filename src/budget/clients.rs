//! The client part of a budget: what a route's clients pay for a dead member the pool still
//! offers, from the route's `connect_timeout` and its retry policy (connect/retry.rs).

use std::time::Duration;

use super::{ByFault, ClientWait, Line, format_duration};
use crate::config::{RetryConfig, RouteConfig};

/// What one route's clients pay for a dead member the pool still offers.
pub(super) fn client_wait(route: &RouteConfig, lines: &mut Vec<Line>) -> ClientWait {
    let timeout = route.connect_timeout;
    let retry = &route.retry;
    let after = if retry.attempts > 1 {
        "then redialled at once to an untried member"
    } else {
        "then it fails (attempts 1: no redial)"
    };
    lines.push(Line::bound(
        "client",
        timeout,
        format!(
            "route {}: per dead member picked = connect_timeout {} (blackhole; refused: a round trip), {after}",
            route.name,
            format_duration(timeout),
        ),
    ));
    let no_live = ByFault {
        refused: no_live_member(Duration::ZERO, retry),
        blackhole: no_live_member(timeout, retry),
    };
    let waits = backoff_text(retry);
    let uncapped = timeout * retry.attempts + backoff_total(retry);
    let cap = if uncapped > no_live.blackhole {
        format!(
            ", capped at budget {} + connect_timeout {}",
            format_duration(retry.budget),
            format_duration(timeout)
        )
    } else {
        String::new()
    };
    lines.push(Line::bound(
        "",
        no_live.blackhole,
        format!(
            "route {}: no live member = attempts {} × connect_timeout {}{waits}{cap}, then fails (refused: {})",
            route.name,
            retry.attempts,
            format_duration(timeout),
            format_duration(no_live.refused),
        ),
    ));
    ClientWait {
        route: route.name.clone(),
        per_dead_pick: timeout,
        no_live_member: no_live,
    }
}

/// The retry policy's waits when every attempt fails and no untried member is left, so it
/// backs off before each attempt after the first (retry.rs: exponential from `min_backoff`,
/// doubling up to `max_backoff`, as backon computes them), before jitter.
fn backoffs(retry: &RetryConfig) -> Vec<Duration> {
    let mut waits = Vec::new();
    let mut current = retry.min_backoff;
    for _ in 1..retry.attempts {
        waits.push(current);
        current = current.saturating_mul(2).min(retry.max_backoff);
    }
    waits
}

/// ` + backoffs (25ms + 50ms) × 2 jitter`; past four waits only the first two, the last, their
/// count and sum, so `attempts = 100` still fits a line.
fn backoff_text(retry: &RetryConfig) -> String {
    let waits = backoffs(retry);
    let list = match waits.as_slice() {
        [] => return String::new(),
        [first, second, .., last] if waits.len() > 4 => format!(
            "{} + {} + … + {}: {} waits, {}",
            format_duration(*first),
            format_duration(*second),
            format_duration(*last),
            waits.len(),
            format_duration(waits.iter().sum()),
        ),
        _ => {
            let each: Vec<String> = waits.iter().map(|w| format_duration(*w)).collect();
            each.join(" + ")
        }
    };
    let jitter = if retry.jitter { " × 2 jitter" } else { "" };
    format!(" + backoffs ({list}){jitter}")
}

/// All backoffs, each at its largest: jitter adds up to 100% of a wait.
fn backoff_total(retry: &RetryConfig) -> Duration {
    let factor = if retry.jitter { 2 } else { 1 };
    backoffs(retry).iter().sum::<Duration>() * factor
}

/// Every attempt takes `per_attempt` and fails. retry.rs starts no attempt once `budget` has
/// passed and no backoff that would end past it, so the last attempt ends by `budget` plus
/// one connect.
fn no_live_member(per_attempt: Duration, retry: &RetryConfig) -> Duration {
    let schedule = per_attempt * retry.attempts + backoff_total(retry);
    schedule.min(retry.budget + per_attempt)
}
