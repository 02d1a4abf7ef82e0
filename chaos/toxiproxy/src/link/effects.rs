//! The arithmetic of the toxics, kept apart from I/O so it can be tested directly.
//!
//! Each function mirrors one computation of Toxiproxy's `toxics/*.go`: how long a chunk is held,
//! how bandwidth debt accrues, where a slicer cuts. `direction` does the waiting and writing.
//! Negative attributes are treated as 0, where Go would sleep a negative time (return at once).

use std::time::Duration;

use rand::RngExt;

use crate::toxic::kind::{Latency, Slicer};

/// The delay for one chunk: `latency` ± a uniform draw below `jitter`, never below zero.
pub fn latency_delay(l: &Latency, rng: &mut impl RngExt) -> Duration {
    let mut ms = l.latency;
    if l.jitter > 0 {
        // Go: rand.Int63n(jitter*2) - jitter, so the spread is [-jitter, jitter).
        ms += rng.random_range(0..l.jitter.saturating_mul(2)) - l.jitter;
    }
    Duration::from_millis(ms.max(0) as u64)
}

/// Time `len` bytes take at `rate` KB/s, in nanoseconds (Toxiproxy: `len * 1ms / rate`).
pub fn bandwidth_cost_ns(len: usize, rate: i64) -> i64 {
    debug_assert!(rate > 0);
    let ns = (len as i128) * 1_000_000 / (rate as i128);
    ns.min(i64::MAX as i128) as i64
}

/// Bytes a bandwidth toxic sends per 100 ms step for chunks larger than that (`rate * 100`).
pub fn bandwidth_step(rate: i64) -> usize {
    usize::try_from(rate.saturating_mul(100)).unwrap_or(usize::MAX)
}

/// Where the slicer cuts a chunk of `len` bytes: consecutive `(start, end)` ranges covering it.
///
/// Toxiproxy halves the range until a piece is within `size_variation` of `average_size`,
/// moving each cut by up to ±`size_variation`. Two guards it lacks: an `average_size` below 1
/// counts as 1 (Go recurses forever on a 1-byte chunk with 0/0), and a moved cut stays strictly
/// inside its range (Go can cut outside and panic when the variation is large).
pub fn slice_bounds(len: usize, s: &Slicer, rng: &mut impl RngExt) -> Vec<(usize, usize)> {
    let average = s.average_size.max(1) as usize;
    let variation = s.size_variation.max(0) as usize;
    let mut out = Vec::new();
    // Depth-first over ranges with an explicit stack, so order is left to right.
    let mut stack = vec![(0, len)];
    while let Some((start, end)) = stack.pop() {
        let size = end - start;
        if size <= average + variation || size < 2 {
            if size > 0 {
                out.push((start, end));
            }
            continue;
        }
        let mut mid = (start + size / 2) as i64;
        if variation > 0 {
            let v = variation as i64;
            mid += rng.random_range(0..2 * v) - v;
        }
        let mid = (mid as usize).clamp(start + 1, end - 1);
        stack.push((mid, end));
        stack.push((start, mid));
    }
    out
}

/// Whether a toxic with this toxicity acts on a connection (Toxiproxy: `rand.Float32() < t`).
pub fn roll(toxicity: f32, rng: &mut impl RngExt) -> bool {
    rng.random::<f32>() < toxicity
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn latency_jitter_stays_in_range_and_never_negative() {
        let mut rng = StdRng::seed_from_u64(7);
        let l = Latency {
            latency: 100,
            jitter: 20,
        };
        for _ in 0..1000 {
            let d = latency_delay(&l, &mut rng).as_millis();
            assert!((80..120).contains(&d), "{d}");
        }
        let wide = Latency {
            latency: 5,
            jitter: 50,
        };
        for _ in 0..1000 {
            assert!(latency_delay(&wide, &mut rng) <= Duration::from_millis(55));
        }
    }

    #[test]
    fn bandwidth_cost_is_len_over_rate_milliseconds() {
        assert_eq!(bandwidth_cost_ns(1000, 1), 1_000_000_000);
        assert_eq!(bandwidth_cost_ns(32_768, 100), 327_680_000);
        assert_eq!(bandwidth_step(100), 10_000);
    }

    #[test]
    fn slices_cover_the_chunk_in_order() {
        let mut rng = StdRng::seed_from_u64(1);
        for (len, avg, var) in [
            (1000, 10, 0),
            (1000, 10, 4),
            (7, 0, 0),
            (1, 0, 0),
            (50, 3, 40),
        ] {
            let s = Slicer {
                average_size: avg,
                size_variation: var,
                delay: 0,
            };
            let bounds = slice_bounds(len, &s, &mut rng);
            let mut next = 0;
            for (a, b) in &bounds {
                assert_eq!(*a, next);
                assert!(b > a);
                next = *b;
            }
            assert_eq!(next, len, "{len} {avg} {var}");
        }
        let s = Slicer {
            average_size: 10,
            size_variation: 0,
            delay: 0,
        };
        assert!(
            slice_bounds(1000, &s, &mut rng)
                .iter()
                .all(|(a, b)| b - a <= 10)
        );
    }

    #[test]
    fn toxicity_bounds() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..100).all(|_| roll(1.0, &mut rng)));
        assert!((0..100).all(|_| !roll(0.0, &mut rng)));
    }
}
