//! Tier choice: which members may take the next connection.
//!
//! Tiers are tried from 0 (primary) up. The eligible members of each tier are added until at
//! least `min_healthy` are in hand (HAProxy's `backup`, Envoy's priorities): while the primaries
//! are healthy enough the backups see nothing, and as soon as they recover new connections go
//! back to them. Connections already on a backup are not moved. A member with an open breaker or
//! at its connection cap is not eligible either, so a tier that is tripped or full lets the next
//! one take the overflow. When no member of any tier is eligible, `AllDown::Panic` balances over
//! every member regardless of health (Envoy's panic mode) but still honours breakers and caps:
//! those come from real traffic and hard limits, not from probes that may be wrong, and a
//! member with an open breaker would only fail the connection at once.

use std::sync::Arc;

use tokio::time::{Duration, Instant};

use super::Member;
use super::balance::Candidate;
use crate::config::AllDown;

/// Why no candidate could be offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoCandidates {
    /// Every member is down, drained, tripped, full or already tried, and the pool rejects in
    /// that case (in panic mode: every member is tripped, full or already tried).
    AllDown,
}

/// The eligible members of the lowest tiers that together hold `min_healthy` of them.
/// `tried` lists member indexes this connection has already failed on; they are skipped.
pub fn candidates(
    members: &[Arc<Member>],
    min_healthy: usize,
    all_down: AllDown,
    slow_start: Option<Duration>,
    tried: &[usize],
    now: Instant,
) -> Result<Vec<Candidate>, NoCandidates> {
    let usable = |m: &Arc<Member>| !tried.contains(&m.index());
    let mut chosen = Vec::new();
    // Members are few and tiers fewer: scanning per tier beats sorting or allocating per tier.
    let max_tier = members.iter().map(|m| m.tier()).max().unwrap_or(0);
    for tier in 0..=max_tier {
        chosen.extend(
            members
                .iter()
                .filter(|m| m.tier() == tier && usable(m) && m.is_eligible(now))
                .map(|m| candidate(m, slow_start, now)),
        );
        if chosen.len() >= min_healthy {
            break;
        }
    }
    if !chosen.is_empty() {
        chosen.sort_unstable_by_key(|c| c.index);
        return Ok(chosen);
    }
    match all_down {
        AllDown::Reject => Err(NoCandidates::AllDown),
        AllDown::Panic => {
            let all: Vec<Candidate> = members
                .iter()
                .filter(|m| usable(m) && m.breaker_admits(now) && m.has_room())
                .map(|m| candidate(m, None, now))
                .collect();
            if all.is_empty() {
                Err(NoCandidates::AllDown)
            } else {
                Ok(all)
            }
        }
    }
}

/// A member as the balancer sees it, with its weight ramped during slow start: from 10% of the
/// configured weight just after it came up to 100% at the end of the window (never below 1).
fn candidate(member: &Member, slow_start: Option<Duration>, now: Instant) -> Candidate {
    let mut weight = member.weight();
    if let (Some(window), Some(since)) = (slow_start, member.up_since()) {
        let elapsed = now.saturating_duration_since(since);
        if elapsed < window {
            let fraction = 0.1 + 0.9 * elapsed.as_secs_f64() / window.as_secs_f64();
            weight = ((weight as f64 * fraction).round() as u32).max(1);
        }
    }
    Candidate {
        index: member.index(),
        weight,
        active: member.active(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemberConfig;

    fn pool(tiers: &[u8]) -> Vec<Arc<Member>> {
        pool_with(tiers, |m| m)
    }

    /// Members of the given tiers, each passed through `setup` (breaker, cap) before sharing.
    fn pool_with(tiers: &[u8], setup: impl Fn(Member) -> Member) -> Vec<Arc<Member>> {
        let now = Instant::now();
        tiers
            .iter()
            .enumerate()
            .map(|(i, &tier)| {
                let config = MemberConfig {
                    name: format!("127.0.0.1:{}", 9000 + i),
                    addr: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    weight: 10,
                    tier,
                };
                Arc::new(setup(Member::new(i, &config, true, now)))
            })
            .collect()
    }

    fn indexes(r: Result<Vec<Candidate>, NoCandidates>) -> Vec<usize> {
        r.map(|c| c.iter().map(|c| c.index).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn primaries_only_while_enough_are_healthy() {
        let m = pool(&[0, 0, 1]);
        let now = Instant::now();
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], now)),
            [0, 1]
        );
        m[0].set_up(false);
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], now)),
            [1]
        );
        // Two required, one primary left: the backup tier is added, not substituted.
        assert_eq!(
            indexes(candidates(&m, 2, AllDown::Reject, None, &[], now)),
            [1, 2]
        );
        m[1].set_up(false);
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], now)),
            [2]
        );
        m[0].set_up(true);
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], now)),
            [0]
        );
    }

    #[tokio::test]
    async fn drained_and_tried_members_are_skipped() {
        let m = pool(&[0, 0, 1]);
        let now = Instant::now();
        m[0].set_drained(true);
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[1], now)),
            [2]
        );
    }

    #[tokio::test]
    async fn all_down_rejects_or_panics() {
        let m = pool(&[0, 1]);
        let now = Instant::now();
        m[0].set_up(false);
        m[1].set_up(false);
        assert_eq!(
            candidates(&m, 1, AllDown::Reject, None, &[], now),
            Err(NoCandidates::AllDown)
        );
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Panic, None, &[], now)),
            [0, 1]
        );
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Panic, None, &[0], now)),
            [1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_weight_from_ten_percent() {
        let m = pool(&[0]);
        let window = Duration::from_secs(30);
        m[0].set_up(false);
        m[0].set_up(true);
        let weight =
            |now| candidates(&m, 1, AllDown::Reject, Some(window), &[], now).unwrap()[0].weight;
        let start = Instant::now();
        assert_eq!(weight(start), 1);
        assert_eq!(weight(start + Duration::from_secs(15)), 6);
        assert_eq!(weight(start + Duration::from_secs(30)), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn open_breaker_is_skipped_until_its_period_ends() {
        let breaker = crate::config::BreakerConfig {
            consecutive_failures: 1,
            ..Default::default()
        };
        let m = pool_with(&[0, 0], |m| m.with_breaker("db", Some(breaker)));
        let now = Instant::now();
        m[0].report_connect_failure("refused");
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], now)),
            [1]
        );
        // Panic mode ignores health, not the breaker: the down member 1 is offered, 0 is not.
        m[1].set_up(false);
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Panic, None, &[], now)),
            [1]
        );
        // Open past its period, it admits a trial again (lazily: nothing changed state yet).
        let later = now + breaker.open_for;
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], later)),
            [0]
        );
    }

    #[tokio::test]
    async fn capped_member_is_skipped_while_full() {
        let m = pool_with(&[0, 0, 1], |m| m.with_max_connections(Some(2)));
        let now = Instant::now();
        let held = [m[0].track(), m[0].track()];
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], now)),
            [1]
        );
        // A full primary tier lets the backup take the overflow.
        let more = [m[1].track(), m[1].track()];
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], now)),
            [2]
        );
        drop(held);
        assert_eq!(
            indexes(candidates(&m, 1, AllDown::Reject, None, &[], now)),
            [0]
        );
        drop(more);
    }
}
