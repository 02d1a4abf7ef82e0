//! `[bounds]`: ranges, and whether the timeline gives each bound something to measure; a
//! timing bound written `"explain"` takes its value from the sluice config's failover budget.

use std::time::Duration;

use sluice::budget::{self, Failover, PoolBudget};
use sluice::config::Config;

use super::{Validator, quote};
use crate::faults;
use crate::scenario::{Bounds, MemberSpec, Step, TimeBound};
use crate::schema::BoundsFile;

/// The value that asks for `sluice check --explain`'s number.
const EXPLAIN: &str = "explain";

impl Validator {
    pub(super) fn bounds(
        &mut self,
        b: &BoundsFile,
        members: &[MemberSpec],
        steps: &[Step],
    ) -> Bounds {
        let ratio = |v: &mut Self, key: &str, r: Option<f64>| {
            if let Some(r) = r
                && !(0.0..=1.0).contains(&r)
            {
                v.error(
                    format!("bounds.{key}"),
                    Some(r.to_string()),
                    "must be between 0.0 and 1.0",
                );
            }
            r
        };
        let count = |v: &mut Self, key: &str, n: Option<i64>| {
            n.and_then(|n| {
                u32::try_from(n).map(u64::from).ok().or_else(|| {
                    v.error(
                        format!("bounds.{key}"),
                        Some(n.to_string()),
                        "must be between 0 and 4294967295",
                    );
                    None
                })
            })
        };
        let time = |v: &mut Self, key: &str, raw: &Option<String>| {
            let raw = raw.as_deref()?;
            if raw == EXPLAIN {
                // The value is filled in by `explained` once the sluice config is valid.
                return Some(TimeBound {
                    limit: Duration::ZERO,
                    explained: true,
                });
            }
            match humantime::parse_duration(raw) {
                Ok(d) => Some(TimeBound::fixed(d)),
                Err(_) => {
                    v.error(
                        format!("bounds.{key}"),
                        Some(quote(raw)),
                        "expected a duration like \"1s\" or \"explain\"",
                    );
                    None
                }
            }
        };
        let bounds = Bounds {
            ejected_within: time(self, "ejected_within", &b.ejected_within),
            returns_within: time(self, "returns_within", &b.returns_within),
            backup_serves_within: time(self, "backup_serves_within", &b.backup_serves_within),
            max_client_failure_ratio: ratio(
                self,
                "max_client_failure_ratio",
                b.max_client_failure_ratio,
            ),
            failed_after_ejection: count(self, "failed_after_ejection", b.failed_after_ejection),
            max_refused: count(self, "max_refused", b.max_refused),
            max_transitions: count(self, "max_transitions", b.max_transitions).map(|n| n as u32),
            all_bytes_intact: b.all_bytes_intact.unwrap_or(false),
            load_share_of_slow_member_below: ratio(
                self,
                "load_share_of_slow_member_below",
                b.load_share_of_slow_member_below,
            ),
        };
        let planned = || steps.iter().map(|s| (s.at, &s.action));
        let windows = faults::windows(members.len(), planned());
        let needs = |v: &mut Self, set: bool, key: &str, ok: bool, why: &str| {
            if set && !ok {
                v.error(format!("bounds.{key}"), None, why.to_string());
            }
        };
        needs(
            self,
            bounds.ejected_within.is_some() || bounds.failed_after_ejection.is_some(),
            "ejected_within",
            !windows.is_empty(),
            "the timeline never faults a member (disable, kill or add_toxic)",
        );
        needs(
            self,
            bounds.returns_within.is_some(),
            "returns_within",
            windows.iter().any(|w| w.end.is_some()),
            "the timeline never restores a faulted member (enable, restart, remove_toxic or reset)",
        );
        let primaries: Vec<usize> = (0..members.len())
            .filter(|&m| members[m].tier == 0)
            .collect();
        let backups = members.iter().any(|m| m.tier > 0);
        needs(
            self,
            bounds.backup_serves_within.is_some(),
            "backup_serves_within",
            backups && !faults::all_faulted(&windows, &primaries).is_empty(),
            "needs a backup member (tier > 0) and a moment when every primary is faulted",
        );
        needs(
            self,
            bounds.load_share_of_slow_member_below.is_some(),
            "load_share_of_slow_member_below",
            !faults::toxic_windows(members.len(), planned()).is_empty(),
            "the timeline adds no toxic, so no member is slow",
        );
        bounds
    }

    /// Fills in every timing bound written `"explain"` from `budget::explain` of the drilled
    /// pool in `config` (the scenario's sluice config, validated). Each method already takes
    /// the worse of a refused and a blackholed member (`ByFault::worst`): a timeline's fault
    /// does not say cleanly which of the two the probes see, so the bound holds for both.
    pub(super) fn explained(&mut self, bounds: &mut Bounds, config: &Config, pool: &str) {
        let Some(budget) = budget::explain(config).into_iter().find(|b| b.pool == pool) else {
            return;
        };
        type Pick = fn(&PoolBudget) -> Option<Duration>;
        let keys: [(&str, &mut Option<TimeBound>, Pick, &str); 3] = [
            (
                "ejected_within",
                &mut bounds.ejected_within,
                PoolBudget::ejected_within,
                "no ejection time",
            ),
            (
                "returns_within",
                &mut bounds.returns_within,
                PoolBudget::returns_within,
                "no return time",
            ),
            (
                "backup_serves_within",
                &mut bounds.backup_serves_within,
                PoolBudget::backup_serves_within,
                "no failover time",
            ),
        ];
        for (key, bound, pick, promise) in keys {
            let Some(b) = bound.as_mut().filter(|b| b.explained) else {
                continue;
            };
            match pick(&budget) {
                Some(limit) => b.limit = limit,
                None => {
                    let why = if budget.failover == Failover::SingleTier && key != "ejected_within"
                    {
                        format!("pool {pool} has one tier")
                    } else {
                        format!("health checks are off for pool {pool}")
                    };
                    self.error(
                        format!("bounds.{key}"),
                        Some(quote(EXPLAIN)),
                        format!("{why}, so --explain promises {promise}"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::scenario::{Scenario, TimeBound};

    /// Two tiers, health checks on (probing every 200ms) or off, member a killed at 1s and
    /// restarted at 2s.
    fn scenario(health: bool, bounds: &str) -> Result<Scenario, String> {
        let health = if health {
            "[sluice.pools.app.health]\ninterval = \"200ms\"\nfast_interval = \"100ms\"\n\
             timeout = \"200ms\"\nrise = 2\nfall = 2\n"
        } else {
            "[sluice.pools.app.health]\nenabled = false\n"
        };
        let text = format!(
            "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n{health}\
             [[members]]\nname = \"a\"\n[[members]]\nname = \"b\"\ntier = 1\n\
             [traffic]\nduration = \"3s\"\n\
             [[timeline]]\nat = \"1s\"\naction = \"kill\"\nmember = \"a\"\n\
             [[timeline]]\nat = \"2s\"\naction = \"restart\"\nmember = \"a\"\n\
             [bounds]\n{bounds}"
        );
        Scenario::from_str(&text, Path::new("x.toml")).map_err(|e| {
            e.iter()
                .map(|e| e.unlocated())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn explain_takes_the_budget_of_the_drilled_pool() {
        let s = scenario(
            true,
            "ejected_within = \"explain\"\nreturns_within = \"explain\"\n\
             backup_serves_within = \"explain\"\n",
        )
        .unwrap();
        let addrs = [([127, 0, 0, 1], 1).into(), ([127, 0, 0, 1], 2).into()];
        let config = s
            .sluice
            .as_ref()
            .unwrap()
            .config(&s.members, &addrs, 0)
            .unwrap();
        let budget = &sluice::budget::explain(&config)[0];
        let explained = |d: Option<Duration>| {
            Some(TimeBound {
                limit: d.unwrap(),
                explained: true,
            })
        };
        assert_eq!(s.bounds.ejected_within, explained(budget.ejected_within()));
        assert_eq!(s.bounds.returns_within, explained(budget.returns_within()));
        assert_eq!(
            s.bounds.backup_serves_within,
            explained(budget.backup_serves_within())
        );
        assert!(s.bounds.ejected_within.unwrap().limit > Duration::ZERO);
    }

    #[test]
    fn a_duration_stays_as_written() {
        let s = scenario(true, "ejected_within = \"750ms\"\n").unwrap();
        let fixed = TimeBound::fixed(Duration::from_millis(750));
        assert_eq!(s.bounds.ejected_within, Some(fixed));
    }

    #[test]
    fn a_bad_value_and_a_missing_promise_are_reported_together() {
        let err = scenario(
            false,
            "ejected_within = \"explain\"\nreturns_within = \"soon\"\n\
             backup_serves_within = \"explain\"\nmax_client_failure_ratio = 2.0\n",
        )
        .unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        for expected in [
            "x.toml: bounds.returns_within = \"soon\": expected a duration like \"1s\" or \"explain\"",
            "x.toml: bounds.max_client_failure_ratio = 2: must be between 0.0 and 1.0",
            "x.toml: bounds.ejected_within = \"explain\": health checks are off for pool app, \
             so --explain promises no ejection time",
            "x.toml: bounds.backup_serves_within = \"explain\": health checks are off for pool \
             app, so --explain promises no failover time",
        ] {
            assert!(lines.contains(&expected), "{expected:?} not in:\n{err}");
        }
    }

    #[test]
    fn one_tier_promises_no_failover() {
        let text = "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n\
                    [sluice.pools.app.health]\ninterval = \"1s\"\n\
                    [[members]]\nname = \"a\"\n[[members]]\nname = \"b\"\n[traffic]\n\
                    [[timeline]]\nat = \"1s\"\naction = \"kill\"\nmember = \"a\"\n\
                    [bounds]\nbackup_serves_within = \"explain\"\n";
        let err = Scenario::from_str(text, Path::new("x.toml")).unwrap_err();
        let expected = "x.toml: bounds.backup_serves_within = \"explain\": pool app has one \
                        tier, so --explain promises no failover time (line 16, column 24)";
        assert!(err.to_string().lines().any(|l| l == expected), "{err}");
    }
}
