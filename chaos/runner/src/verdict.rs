//! Bounds against measurements: one [`Verdict`] per bound the scenario sets.
//!
//! A bound that has nothing to measure fails rather than passes (a member that was never
//! ejected has not been "ejected within 2s"), so a drill cannot pass by not happening.

use std::time::Duration;

use serde::Serialize;

use super::measure::Measures;
use super::scenario::{Bounds, MemberSpec, TimeBound};
use super::traffic::{ClientRecord, Outcome};

/// One bound, what was measured, and whether it was met.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub bound: &'static str,
    pub limit: String,
    pub measured: String,
    pub pass: bool,
}

pub fn verdicts(bounds: &Bounds, m: &Measures, members: &[MemberSpec]) -> Vec<Verdict> {
    let name = |i: usize| members.get(i).map_or("?", |m| m.name.as_str());
    let mut out = Vec::new();
    if let Some(limit) = bounds.ejected_within {
        let worst = worst(m.ejections.iter().map(|e| (e.after, name(e.member))));
        out.push(within(
            "ejected_within",
            limit,
            worst,
            "ejected",
            "not ejected",
        ));
    }
    if let Some(limit) = bounds.returns_within {
        let worst = worst(m.returns.iter().map(|r| (r.serves_after, name(r.member))));
        let v = within(
            "returns_within",
            limit,
            worst,
            "serving again",
            "never served again",
        );
        out.push(v);
    }
    if let Some(limit) = bounds.backup_serves_within {
        let worst = worst(m.backup.iter().map(|b| (b.served_after, "backup tier")));
        let v = within(
            "backup_serves_within",
            limit,
            worst,
            "first served",
            "never served",
        );
        out.push(v);
    }
    if let Some(limit) = bounds.max_client_failure_ratio {
        let c = &m.clients;
        out.push(failure_ratio(limit, c.failed, c.total));
    }
    if let Some(limit) = bounds.failed_after_ejection {
        out.push(Verdict {
            bound: "failed_after_ejection",
            limit: limit.to_string(),
            measured: format!(
                "{} clients failed after every faulted member was ejected",
                m.failed_after_ejection
            ),
            pass: m.failed_after_ejection <= limit,
        });
    }
    if let Some(limit) = bounds.max_refused {
        out.push(Verdict {
            bound: "max_refused",
            limit: limit.to_string(),
            measured: format!(
                "{} clients refused or closed by sluice before any member answered",
                m.refused
            ),
            pass: m.refused <= limit,
        });
    }
    if let Some(limit) = bounds.max_transitions {
        let (member, most) = m
            .transitions
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)
            .map_or(("-", 0), |(i, n)| (name(i), *n));
        out.push(Verdict {
            bound: "max_transitions",
            limit: limit.to_string(),
            measured: format!("{most} health transitions ({member}, the most of any member)"),
            pass: most <= limit as usize,
        });
    }
    if bounds.all_bytes_intact {
        let b = &m.bytes;
        out.push(Verdict {
            bound: "all_bytes_intact",
            limit: "true".into(),
            measured: format!(
                "{} corrupt; access log disagrees on {} of {} verified connections",
                b.corrupt, b.access_disagrees, b.verified
            ),
            pass: b.intact() && b.verified > 0,
        });
    }
    if let Some(limit) = bounds.load_share_of_slow_member_below {
        let worst = m
            .slow_shares
            .iter()
            .max_by(|a, b| a.share.total_cmp(&b.share));
        out.push(Verdict {
            bound: "load_share_of_slow_member_below",
            limit: format!("{limit}"),
            measured: worst.map_or("no slow period measured".into(), |s| {
                format!(
                    "{} took {:.3} of {} connections while slow",
                    name(s.member),
                    s.share,
                    s.of
                )
            }),
            pass: worst.is_some_and(|s| s.share < limit && s.of > 0),
        });
    }
    out
}

/// The slowest of several measurements, `None` (never happened) counting as the slowest.
fn worst<'a>(
    items: impl Iterator<Item = (Option<Duration>, &'a str)>,
) -> Option<(Option<Duration>, &'a str)> {
    items.max_by_key(|(d, _)| d.map_or(u128::MAX, |d| d.as_nanos()))
}

fn within(
    bound: &'static str,
    limit: TimeBound,
    worst: Option<(Option<Duration>, &str)>,
    did: &str,
    never: &str,
) -> Verdict {
    let (measured, pass) = match worst {
        None => ("nothing to measure".to_string(), false),
        Some((None, who)) => (format!("{who} {never}"), false),
        Some((Some(d), who)) => (
            format!("{who} {did} after {} (slowest)", fmt_ms(d)),
            d <= limit.limit,
        ),
    };
    Verdict {
        bound,
        limit: limit_text(limit),
        measured,
        pass,
    }
}

/// `1s` as written, or `explain (6.366s)`: where an explained bound came from and its value,
/// as `sluice check --explain` prints it.
pub fn limit_text(limit: TimeBound) -> String {
    if limit.explained {
        format!("explain ({})", sluice::budget::format_duration(limit.limit))
    } else {
        humantime::format_duration(limit.limit).to_string()
    }
}

/// A `[traffic] command` without `every` is one run of the user's own test (a benchmark, an
/// integration suite): its exit status is a verdict of its own, whatever the bounds say.
pub fn workload_exit(command: &str, runs: &[ClientRecord]) -> Verdict {
    let (measured, pass) = match runs {
        [run] => match (&run.outcome, &run.detail) {
            (Outcome::Ok, _) => ("exit status: 0".to_string(), true),
            (_, Some(detail)) => (detail.clone(), false),
            (outcome, None) => (format!("{outcome:?}"), false),
        },
        _ => (format!("{} runs instead of one", runs.len()), false),
    };
    Verdict {
        bound: "workload_exit",
        limit: format!("`{command}` exits 0"),
        measured,
        pass,
    }
}

/// `max_client_failure_ratio`, shared by drills and soaks. No client at all fails the bound:
/// a run that served nobody proves nothing.
pub fn failure_ratio(limit: f64, failed: u64, total: u64) -> Verdict {
    let ratio = if total == 0 {
        1.0
    } else {
        failed as f64 / total as f64
    };
    Verdict {
        bound: "max_client_failure_ratio",
        limit: format!("{limit}"),
        measured: format!("{ratio:.4} ({failed} of {total} clients failed)"),
        pass: total > 0 && ratio <= limit,
    }
}

/// `8s`, `1.234s` or `87ms`.
pub fn fmt_ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d >= Duration::from_secs(1) {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
