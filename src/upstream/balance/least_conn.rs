//! Least connections, weighted: the candidate with the fewest active connections per unit of
//! weight takes the next connection (nginx `least_conn`, HAProxy `leastconn`).
//!
//! Loads are compared as `a.active / a.weight < b.active / b.weight` by cross-multiplying in
//! `u128`, so there is no rounding and no overflow whatever the counts. The rank is the current
//! load, not the load after adding this connection: a weight-2 member with 2 connections ties
//! with a weight-1 member with 1.
//!
//! Ties are common (an idle pool is all zeros) and must not always fall to the lowest index, or
//! that member would take every connection of a burst of short-lived ones. HAProxy rotates among
//! equal servers and nginx falls back to weighted round robin among them; we keep a rotation
//! cursor: the scan starts just after the member picked last time (by member index, so the
//! rotation survives changes to the candidate set) and the first of the least loaded wins.
//! The cursor is an atomic read and written without a lock; two picks racing on it may tie-break
//! the same way, which costs a little evenness and no correctness.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use super::{Balancer, Candidate};

/// Weighted least connections with rotating tie-breaks.
#[derive(Debug, Default)]
pub struct LeastConn {
    /// Member index at which the next scan starts: one past the last pick.
    next: AtomicUsize,
}

// === impl LeastConn ===

impl LeastConn {
    /// A balancer whose first scan starts at member 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for LeastConn {
    fn pick(&self, candidates: &[Candidate], _client: IpAddr) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let next = self.next.load(AtomicOrdering::Relaxed);
        // Candidates are sorted by index: start at the first at or past the cursor, wrapping.
        let start = candidates.partition_point(|c| c.index < next) % candidates.len();
        let mut best = &candidates[start];
        for c in candidates[start..]
            .iter()
            .chain(&candidates[..start])
            .skip(1)
        {
            // Strictly less: among equals the first in rotation order keeps it.
            if load_cmp(c, best) == Ordering::Less {
                best = c;
            }
        }
        self.next
            .store(best.index.wrapping_add(1), AtomicOrdering::Relaxed);
        Some(best.index)
    }
}

/// Orders two candidates by `active / weight` without dividing. A weight of 0 (outside the
/// contract) is read as 1 rather than making a member look infinitely loaded or idle.
pub(super) fn load_cmp(a: &Candidate, b: &Candidate) -> Ordering {
    let lhs = u128::from(a.active) * u128::from(b.weight.max(1));
    let rhs = u128::from(b.active) * u128::from(a.weight.max(1));
    lhs.cmp(&rhs)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn cand(index: usize, weight: u32, active: u64) -> Candidate {
        Candidate {
            index,
            weight,
            active,
        }
    }

    #[test]
    fn empty_candidates_pick_nothing() {
        assert_eq!(LeastConn::new().pick(&[], CLIENT), None);
    }

    #[test]
    fn picks_the_least_loaded() {
        let lc = LeastConn::new();
        let cands = [cand(0, 1, 5), cand(1, 1, 2), cand(2, 1, 9), cand(3, 1, 3)];
        for _ in 0..4 {
            assert_eq!(lc.pick(&cands, CLIENT), Some(1));
        }
    }

    #[test]
    fn load_is_relative_to_weight() {
        // 2 connections on weight 2 is the same load as 1 on weight 1: a tie, so both get turns.
        let lc = LeastConn::new();
        let cands = [cand(0, 2, 2), cand(1, 1, 1)];
        let picks: Vec<_> = (0..4).map(|_| lc.pick(&cands, CLIENT).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        // 3 on weight 4 (0.75) beats 1 on weight 1.
        assert_eq!(lc.pick(&[cand(0, 1, 1), cand(1, 4, 3)], CLIENT), Some(1));
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let lc = LeastConn::new();
        let cands = [cand(0, u32::MAX, u64::MAX), cand(1, 1, u64::MAX / 2)];
        assert_eq!(lc.pick(&cands, CLIENT), Some(0));
    }

    #[test]
    fn ties_rotate() {
        let lc = LeastConn::new();
        let cands: Vec<_> = (0..4).map(|i| cand(i, 1, 7)).collect();
        let mut picks: Vec<_> = (0..4).map(|_| lc.pick(&cands, CLIENT).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 3]);
        picks.sort_unstable();
        assert_eq!(picks, [0, 1, 2, 3]);
    }

    #[test]
    fn rotation_survives_a_changing_candidate_set() {
        let lc = LeastConn::new();
        let all: Vec<_> = (0..4).map(|i| cand(i, 1, 0)).collect();
        assert_eq!(lc.pick(&all, CLIENT), Some(0));
        assert_eq!(lc.pick(&all, CLIENT), Some(1));
        // Member 2 leaves: the rotation goes on to 3, then wraps to 0.
        let without_2 = [all[0], all[1], all[3]];
        assert_eq!(lc.pick(&without_2, CLIENT), Some(3));
        assert_eq!(lc.pick(&without_2, CLIENT), Some(0));
    }

    #[test]
    fn simulated_load_matches_weights() {
        let lc = LeastConn::new();
        let weights = [1u32, 2, 3, 4];
        let mut cands: Vec<_> = (0..4).map(|i| cand(i, weights[i], 0)).collect();
        for _ in 0..10_000 {
            let picked = lc.pick(&cands, CLIENT).unwrap();
            cands[picked].active += 1;
        }
        let total: u64 = cands.iter().map(|c| c.active).sum();
        assert_eq!(total, 10_000);
        // Measured: exactly 1000:2000:3000:4000 (the 2% bound is the requirement).
        for (c, want) in cands.iter().zip([1000.0, 2000.0, 3000.0, 4000.0]) {
            let got = c.active as f64;
            assert!((got - want).abs() / want <= 0.02, "{cands:?}");
        }
    }
}
