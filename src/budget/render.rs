//! How a budget reads: durations in the config's own units, one aligned block per pool for
//! `sluice check --explain`, and a JSON value for `--json`.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use super::{ByFault, Failover, PoolBudget};

/// One number of a budget and the arithmetic behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// What the number is (`detect`, `eject`, `client`, ...); empty when it continues the
    /// line above (the blackhole case under the refused one).
    pub label: &'static str,
    pub bound: Bound,
    /// The formula with the config's values, or the reason there is no bound.
    pub text: String,
}

/// The value column of a [`Line`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// `<= d`: sluice's schedule takes at most this.
    AtMost(Duration),
    /// No time bound: it depends on traffic, or never happens.
    Unbounded,
    /// Context for the numbers around it.
    Note,
}

impl Line {
    pub(super) fn bound(label: &'static str, d: Duration, text: impl Into<String>) -> Self {
        Self {
            label,
            bound: Bound::AtMost(d),
            text: text.into(),
        }
    }

    pub(super) fn unbounded(label: &'static str, text: impl Into<String>) -> Self {
        Self {
            label,
            bound: Bound::Unbounded,
            text: text.into(),
        }
    }

    pub(super) fn note(label: &'static str, text: impl Into<String>) -> Self {
        Self {
            label,
            bound: Bound::Note,
            text: text.into(),
        }
    }

    fn value_text(&self) -> String {
        match self.bound {
            Bound::AtMost(d) => format!("<= {}", format_duration(d)),
            Bound::Unbounded => "no bound".to_string(),
            Bound::Note => String::new(),
        }
    }
}

/// `3.363s`, `621.75ms`, `21ms`, `2m`: exact (trailing zeros dropped), in the largest unit
/// that keeps the number at least 1, minutes only for whole seconds past a minute.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos >= 60_000_000_000 && nanos.is_multiple_of(1_000_000_000) {
        // "1m 30s" → "1m30s", as the config file writes it.
        return humantime::format_duration(d).to_string().replace(' ', "");
    }
    let (scale, digits, unit) = match nanos {
        1_000_000_000.. => (1_000_000_000, 9, "s"),
        1_000_000.. => (1_000_000, 6, "ms"),
        1_000.. => (1_000, 3, "µs"),
        _ => (1, 0, "ns"),
    };
    let (whole, frac) = (nanos / scale, nanos % scale);
    if frac == 0 {
        return format!("{whole}{unit}");
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}{unit}", frac.trim_end_matches('0'))
}

impl fmt::Display for PoolBudget {
    /// The block `sluice check --explain` prints: a header, then one aligned line per number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.routes.is_empty() {
            writeln!(f, "pool {} (no route)", self.pool)?;
        } else {
            writeln!(f, "pool {} (routes: {})", self.pool, self.routes.join(", "))?;
        }
        let label_width = self.lines.iter().map(|l| l.label.len()).max().unwrap_or(0);
        let values: Vec<String> = self.lines.iter().map(Line::value_text).collect();
        let value_width = values.iter().map(|v| v.chars().count()).max().unwrap_or(0);
        for (line, value) in self.lines.iter().zip(&values) {
            let row = format!(
                "  {:label_width$}  {:value_width$}  {}",
                line.label, value, line.text
            );
            writeln!(f, "{}", row.trim_end())?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

fn by_fault(b: Option<ByFault>) -> Value {
    b.map_or(
        Value::Null,
        |b| json!({ "refused": ms(b.refused), "blackhole": ms(b.blackhole) }),
    )
}

impl PoolBudget {
    /// The budget as JSON for `sluice check --json`: milliseconds (fractional where the
    /// arithmetic is), `null` where there is no bound, and the lines with `bound_ms` a number,
    /// `"none"` (no time bound) or `null` (a note).
    pub fn to_json(&self) -> Value {
        let failover = match self.failover {
            Failover::SingleTier => "single_tier",
            Failover::Within(_) => "within",
            Failover::NoBound => "no_bound",
        };
        let clients: Vec<Value> = self
            .clients
            .iter()
            .map(|c| {
                json!({
                    "route": c.route,
                    "per_dead_pick_ms": ms(c.per_dead_pick),
                    "no_live_member_ms": by_fault(Some(c.no_live_member)),
                })
            })
            .collect();
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                let bound = match l.bound {
                    Bound::AtMost(d) => json!(ms(d)),
                    Bound::Unbounded => json!("none"),
                    Bound::Note => Value::Null,
                };
                json!({ "label": l.label, "bound_ms": bound, "text": l.text })
            })
            .collect();
        json!({
            "pool": self.pool,
            "routes": self.routes,
            "ejected_within_ms": self.ejected_within().map(ms),
            "backup_serves_within_ms": self.backup_serves_within().map(ms),
            "returns_within_ms": self.returns_within().map(ms),
            "detect_ms": by_fault(self.detect),
            "returns_ms": by_fault(Some(self.returns)),
            "full_weight_ms": self.full_weight.map(ms),
            "breaker_opens_after": self.breaker_opens_after,
            "failover": failover,
            "clients": clients,
            "lines": lines,
        })
    }
}
