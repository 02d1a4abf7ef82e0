//! Smooth weighted round robin, as nginx does it (`ngx_http_upstream_get_peer` in
//! `ngx_http_upstream_round_robin.c`).
//!
//! Every member carries a `current` weight. On each pick every candidate's `current` grows by its
//! effective weight, the candidate with the largest `current` wins (ties go to the lowest index),
//! and the winner's `current` drops by the sum of the candidates' weights. Over any window of
//! `total weight` picks each member is chosen exactly `weight` times, and the picks of a heavy
//! member are spread out instead of bunched: weights 5,1,1 give `a a b a c a a`, not
//! `a a a a a b c`. That interleaving is why we prefer it to plain weighted round robin: a burst
//! of new connections never lands on one member in a row.
//!
//! Members outside the candidate set (down, drained, circuit-open, other tier) keep their
//! `current`, as in nginx, which skips such peers without touching them. Why not reset them:
//! - the sum of `current` over all members stays exactly zero (each pick adds the candidates'
//!   total and takes it back from the winner), so no member builds up credit while away;
//! - what a member carries stays within the pool's total weight (checked under random churn in
//!   the tests), so on return it is at most about one round early or late, never a long burst
//!   or a long starvation;
//! - a member that steps out for a few picks (a half-open breaker, a tier flap) resumes the exact
//!   interleaving it left, instead of restarting from zero and repeating its first picks.
//!
//! Weights are the candidates' effective weights, so slow start ramps a member in smoothly.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use super::{Balancer, Candidate};

/// nginx's smooth weighted round robin over whatever subset of members is eligible.
#[derive(Debug)]
pub struct SmoothWeightedRoundRobin {
    /// `current` weight per member, indexed by member index. Signed: it dips below zero after
    /// every win. i64 is far from overflow: values stay within the pool's total weight.
    current: Mutex<Vec<i64>>,
}

// === impl SmoothWeightedRoundRobin ===

impl SmoothWeightedRoundRobin {
    /// A balancer for a pool of `member_count` members, all starting at `current = 0`.
    /// Candidates with an index at or past `member_count` are still served (the state grows).
    pub fn new(member_count: usize) -> Self {
        Self {
            current: Mutex::new(vec![0; member_count]),
        }
    }
}

impl Balancer for SmoothWeightedRoundRobin {
    fn pick(&self, candidates: &[Candidate], _client: IpAddr) -> Option<usize> {
        let last = candidates.last()?;
        // Any state left by a panicking holder is still a valid set of counters.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.len() <= last.index {
            current.resize(last.index + 1, 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for c in candidates {
            let weight = i64::from(c.weight.max(1));
            total += weight;
            current[c.index] += weight;
            // Strictly greater: candidates come sorted by index, so ties keep the lowest index.
            if best.is_none_or(|b| current[c.index] > current[b]) {
                best = Some(c.index);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn candidates(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(index, &weight)| Candidate {
                index,
                weight,
                active: 0,
            })
            .collect()
    }

    fn count(rr: &SmoothWeightedRoundRobin, cands: &[Candidate], picks: usize, out: &mut [u64]) {
        for _ in 0..picks {
            out[rr.pick(cands, CLIENT).unwrap()] += 1;
        }
    }

    #[test]
    fn empty_candidates_pick_nothing() {
        let rr = SmoothWeightedRoundRobin::new(3);
        assert_eq!(rr.pick(&[], CLIENT), None);
    }

    #[test]
    fn nginx_example_sequence() {
        let rr = SmoothWeightedRoundRobin::new(3);
        let cands = candidates(&[5, 1, 1]);
        let seq: Vec<usize> = (0..14).map(|_| rr.pick(&cands, CLIENT).unwrap()).collect();
        // a a b a c a a, twice: the state is back to all zeros after each round.
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn two_to_one_is_exact() {
        let rr = SmoothWeightedRoundRobin::new(2);
        let mut counts = [0; 2];
        count(&rr, &candidates(&[2, 1]), 300, &mut counts);
        assert_eq!(counts, [200, 100]);
    }

    #[test]
    fn weights_honoured_over_many_picks() {
        let rr = SmoothWeightedRoundRobin::new(4);
        let weights = [1, 2, 3, 4];
        let mut counts = [0; 4];
        count(&rr, &candidates(&weights), 10_000, &mut counts);
        // 10_000 is a whole number of rounds of 10, so the split is exact (well inside 2%).
        assert_eq!(counts, [1000, 2000, 3000, 4000]);
    }

    #[test]
    fn heavy_member_is_interleaved() {
        let rr = SmoothWeightedRoundRobin::new(2);
        let cands = candidates(&[3, 1]);
        let seq: Vec<usize> = (0..8).map(|_| rr.pick(&cands, CLIENT).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn removed_member_gets_nothing_and_the_rest_keep_their_ratio() {
        let rr = SmoothWeightedRoundRobin::new(4);
        let all = candidates(&[1, 2, 3, 4]);
        let mut counts = [0; 4];
        // Stop mid-round so the leaving member carries a non-zero `current` away with it.
        count(&rr, &all, 1_003, &mut counts);
        let before = counts;
        let without_2: Vec<Candidate> = all.iter().copied().filter(|c| c.index != 2).collect();
        count(&rr, &without_2, 7_000, &mut counts);
        let after: Vec<i64> = (0..4).map(|i| (counts[i] - before[i]) as i64).collect();
        assert_eq!(after[2], 0);
        // 7_000 picks over weights 1:2:4 -> 1000:2000:4000, give or take what the carried
        // state shifts (less than one round).
        for (i, want) in [(0, 1000), (1, 2000), (3, 4000)] {
            assert!((after[i] - want).abs() <= 7, "member {i}: {after:?}");
        }
        // Back in: it rejoins the rotation and the full ratio holds again.
        let mut counts = [0; 4];
        count(&rr, &all, 10_000, &mut counts);
        for (i, want) in [1000, 2000, 3000, 4000].into_iter().enumerate() {
            assert!((counts[i] as i64 - want).abs() <= 10, "{counts:?}");
        }
    }

    #[test]
    fn state_stays_balanced_and_bounded_under_churn() {
        // Random weights and a random candidate subset on every pick, the worst case for the
        // choice to keep absent members' `current`.
        let mut rng = SmallRng::seed_from_u64(1);
        let weights: Vec<u32> = (0..8).map(|_| rng.random_range(1..=256)).collect();
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let rr = SmoothWeightedRoundRobin::new(8);
        for _ in 0..100_000 {
            let cands: Vec<Candidate> = candidates(&weights)
                .into_iter()
                .filter(|_| rng.random_bool(0.6))
                .collect();
            rr.pick(&cands, CLIENT);
            let current = rr.current.lock().unwrap();
            assert_eq!(current.iter().sum::<i64>(), 0);
            // Measured: at most 980 against a total weight of 1205.
            assert!(current.iter().all(|c| c.abs() <= total), "{current:?}");
        }
    }

    #[test]
    fn index_past_member_count_is_served() {
        let rr = SmoothWeightedRoundRobin::new(1);
        let cands = [Candidate {
            index: 4,
            weight: 1,
            active: 0,
        }];
        assert_eq!(rr.pick(&cands, CLIENT), Some(4));
    }
}
