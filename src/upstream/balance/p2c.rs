//! Power of two random choices (Mitzenmacher, "The Power of Two Choices in Randomized Load
//! Balancing", 2001; Envoy's `LEAST_REQUEST` with `choice_count: 2`, Finagle's P2C).
//!
//! Sample two distinct candidates uniformly at random and send the connection to the less loaded
//! one, load being active connections per unit of weight (the same exact comparison as
//! [`LeastConn`](super::LeastConn)). Two random choices keep the maximum load within
//! `O(log log n)` of the mean, nearly as good as a full least-connections scan, while avoiding its
//! herd behaviour: when several proxies (or several threads) read the same stale counts, a full
//! scan sends them all to the same idle member, whereas random pairs spread them out.
//!
//! Ties (equal load, typical of an idle pool) go to the heavier member of the pair, so weights
//! still count when there is no load to compare; at equal weight they go to the first sampled,
//! which is itself uniformly random, so no extra random draw is needed. The busier of the pair is
//! never chosen. One candidate is returned without consuming randomness.
//!
//! The RNG is a seeded [`SmallRng`] behind a mutex held for two draws: the seed makes tests and
//! incident replays reproducible, and the generator is not security-sensitive.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::least_conn::load_cmp;
use super::{Balancer, Candidate};

/// Power of two choices on active connections per weight, with a seeded RNG.
#[derive(Debug)]
pub struct PowerOfTwoChoices {
    rng: Mutex<SmallRng>,
}

// === impl PowerOfTwoChoices ===

impl PowerOfTwoChoices {
    /// A balancer whose random pairs are fully determined by `seed`: the same seed and the same
    /// candidates give the same sequence of picks.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }
    }
}

impl Balancer for PowerOfTwoChoices {
    fn pick(&self, candidates: &[Candidate], _client: IpAddr) -> Option<usize> {
        match candidates {
            [] => None,
            [only] => Some(only.index),
            _ => {
                let (i, j) = {
                    // A poisoned RNG is still a fine RNG.
                    let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                    pick_pair(&mut rng, candidates.len())
                };
                Some(choose(&candidates[i], &candidates[j]).index)
            }
        }
    }
}

/// Two distinct positions in `0..len`, uniform over ordered pairs. `len` must be at least 2.
fn pick_pair(rng: &mut SmallRng, len: usize) -> (usize, usize) {
    let first = rng.random_range(0..len);
    // Draw from the other `len - 1` positions and skip over `first`: no rejection loop.
    let mut second = rng.random_range(0..len - 1);
    if second >= first {
        second += 1;
    }
    (first, second)
}

/// The less loaded of the two; on equal load the heavier; then the first.
fn choose<'a>(first: &'a Candidate, second: &'a Candidate) -> &'a Candidate {
    match load_cmp(first, second) {
        Ordering::Less => first,
        Ordering::Greater => second,
        Ordering::Equal if second.weight > first.weight => second,
        Ordering::Equal => first,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const SEED: u64 = 0x05ee_d1ce;

    fn cand(index: usize, weight: u32, active: u64) -> Candidate {
        Candidate {
            index,
            weight,
            active,
        }
    }

    #[test]
    fn empty_and_single() {
        let p2c = PowerOfTwoChoices::new(SEED);
        assert_eq!(p2c.pick(&[], CLIENT), None);
        assert_eq!(p2c.pick(&[cand(3, 1, 100)], CLIENT), Some(3));
    }

    #[test]
    fn never_picks_the_busier_of_the_pair() {
        // A second RNG with the same seed replays the balancer's draws, making each pair visible.
        let p2c = PowerOfTwoChoices::new(SEED);
        let mut mirror = SmallRng::seed_from_u64(SEED);
        let mut loads = SmallRng::seed_from_u64(7);
        let mut decided = 0;
        for round in 0..10_000 {
            let n = 2 + round % 7;
            let cands: Vec<_> = (0..n)
                .map(|i| cand(i * 3, loads.random_range(1..=4), loads.random_range(0..20)))
                .collect();
            let (i, j) = pick_pair(&mut mirror, n);
            assert_ne!(i, j);
            let (a, b) = (cands[i], cands[j]);
            let picked = p2c.pick(&cands, CLIENT).unwrap();
            assert!(
                picked == a.index || picked == b.index,
                "{picked} not in {a:?} {b:?}"
            );
            let (picked, other) = if picked == a.index { (a, b) } else { (b, a) };
            assert_ne!(
                load_cmp(&picked, &other),
                Ordering::Greater,
                "{picked:?} over {other:?}"
            );
            if load_cmp(&picked, &other) == Ordering::Equal {
                assert!(picked.weight >= other.weight);
            } else {
                decided += 1;
            }
        }
        // The random loads mostly differ, so the property was exercised, not vacuous.
        assert!(decided > 8_000, "{decided}");
    }

    #[test]
    fn equal_load_is_uniform() {
        let p2c = PowerOfTwoChoices::new(SEED);
        let cands: Vec<_> = (0..4).map(|i| cand(i, 1, 5)).collect();
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[p2c.pick(&cands, CLIENT).unwrap()] += 1;
        }
        // Each share within 2 points of 25% (binomial sd is 0.43 points, so this is seed-proof).
        for c in counts {
            assert!((2_300..=2_700).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn simulated_load_tracks_weights() {
        let p2c = PowerOfTwoChoices::new(SEED);
        let weights = [1u32, 2, 3, 4];
        let mut cands: Vec<_> = (0..4).map(|i| cand(i, weights[i], 0)).collect();
        for _ in 0..10_000 {
            let picked = p2c.pick(&cands, CLIENT).unwrap();
            cands[picked].active += 1;
        }
        for (c, want) in cands.iter().zip([1000.0, 2000.0, 3000.0, 4000.0]) {
            assert!((c.active as f64 - want).abs() / want <= 0.02, "{cands:?}");
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let cands: Vec<_> = (0..5).map(|i| cand(i, 1, 0)).collect();
        let run = |seed| {
            let p2c = PowerOfTwoChoices::new(seed);
            (0..200)
                .map(|_| p2c.pick(&cands, CLIENT).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(SEED), run(SEED));
        assert_ne!(run(SEED), run(SEED + 1));
    }

    #[test]
    fn ties_prefer_the_heavier() {
        let light = cand(0, 1, 0);
        let heavy = cand(1, 3, 0);
        assert_eq!(choose(&light, &heavy).index, 1);
        assert_eq!(choose(&heavy, &light).index, 1);
        assert_eq!(choose(&cand(0, 1, 1), &cand(1, 1, 2)).index, 0);
    }
}
