//! `[bounds]`: ranges, and whether the timeline gives each bound something to measure.

use super::Validator;
use crate::faults;
use crate::scenario::{Bounds, MemberSpec, Step};
use crate::schema::BoundsFile;

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
        let bounds = Bounds {
            ejected_within: b.ejected_within.map(|d| d.0),
            returns_within: b.returns_within.map(|d| d.0),
            backup_serves_within: b.backup_serves_within.map(|d| d.0),
            max_client_failure_ratio: ratio(
                self,
                "max_client_failure_ratio",
                b.max_client_failure_ratio,
            ),
            failed_after_ejection: count(self, "failed_after_ejection", b.failed_after_ejection),
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
}
