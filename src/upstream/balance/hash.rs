//! Consistent hashing on the client IP: a hash ring with virtual nodes (Karger et al., 1997;
//! the `ketama` layout used by HAProxy `hash-type consistent` and Envoy's `RING_HASH`).
//!
//! The ring is built once, over all members of the pool, and never changes with health: each
//! member gets `VNODES_PER_WEIGHT × weight` points, each point the hash of the member's key (its
//! configured name) and the point's number. A client's IP hashes to a position, and the client
//! goes to the owner of the first point at or after it, skipping points whose owner is not among
//! the candidates. So when one of N members goes down only the clients on its arcs move, each to
//! the next eligible point (about 1/N of clients, spread over the others), and when it returns
//! exactly those clients move back. Points depend on keys, not on pool order, so a reload that
//! keeps a member's name and weight keeps its clients.
//!
//! A ring rather than Maglev: Maglev's table is built for one member set, so honouring any
//! candidate subset at pick time would mean a table per subset; the ring just walks on.
//!
//! The hash is FNV-1a 64 finished with murmur3's `fmix64`: stable across builds, platforms and
//! processes (std's `DefaultHasher` is not promised stable), the finalizer fixing FNV's weak
//! avalanche on short inputs such as IPv4 addresses.
//!
//! Weights are the configured ones, not slow start's effective weights: re-weighting the ring as
//! a member ramps up would move clients, which is what hashing exists to avoid.

use std::net::IpAddr;

use super::{Balancer, Candidate, MemberKey};

/// Ring points per unit of weight. 160 is ketama's figure: a member's share then deviates from
/// its due by about 1/√160 ≈ 8% (one standard deviation).
const VNODES_PER_WEIGHT: u64 = 160;
/// Cap on ring points (12 bytes each): 100 members of the maximum weight 256 would otherwise need
/// 4M points. Past it every member's count is scaled down alike, keeping the weights' ratio.
const MAX_RING_POINTS: u64 = 1 << 17;

/// Consistent hashing of client IPs onto a ring built from member keys and weights.
pub struct ConsistentHash {
    /// Ring positions, sorted ascending.
    points: Vec<u64>,
    /// Member index owning `points[i]`; a separate vector keeps the binary search dense.
    owners: Vec<u32>,
    members: usize,
}

// === impl ConsistentHash ===

impl ConsistentHash {
    /// Builds the ring for `members` in pool order (their position is the index `pick` returns).
    /// A member weight of 0 counts as 1; an empty slice gives an empty ring, on which `pick` still
    /// answers (by hashing onto the candidates directly).
    pub fn new(members: &[MemberKey<'_>]) -> Self {
        let wanted: Vec<u64> = members
            .iter()
            .map(|m| VNODES_PER_WEIGHT * u64::from(m.weight.max(1)))
            .collect();
        let total: u64 = wanted.iter().sum();
        let mut ring: Vec<(u64, u32)> = Vec::with_capacity(total.min(MAX_RING_POINTS) as usize);
        for (index, (member, &want)) in members.iter().zip(&wanted).enumerate() {
            let count = if total > MAX_RING_POINTS {
                (want * MAX_RING_POINTS / total).max(1)
            } else {
                want
            };
            // Point n of a member is the same whatever its weight, so (below the cap) a weight
            // change only adds or removes that member's own points: no other client moves.
            let seed = fnv1a(FNV_OFFSET, member.key.as_bytes());
            for n in 0..count {
                let point = fmix64(fnv1a(seed, &n.to_le_bytes()));
                ring.push((point, index as u32));
            }
        }
        // Owner as the second key: two members colliding on a point resolve the same way always.
        ring.sort_unstable();
        let (points, owners) = ring.into_iter().unzip();
        Self {
            points,
            owners,
            members: members.len(),
        }
    }
}

impl Balancer for ConsistentHash {
    fn pick(&self, candidates: &[Candidate], client: IpAddr) -> Option<usize> {
        match candidates {
            [] => return None,
            // Whatever the client's position, the walk could only end on this one.
            [only] => return Some(only.index),
            _ => {}
        }
        let hash = hash_ip(client);
        // Every member owns at least one point, so the walk below ends as soon as one candidate
        // is a member; only if none is (a pool grown without rebuilding us) do we fall back.
        if candidates.iter().any(|c| c.index < self.members) {
            let start = self.points.partition_point(|&p| p < hash);
            let eligible = |owner: u32| {
                candidates
                    .binary_search_by_key(&(owner as usize), |c| c.index)
                    .is_ok()
            };
            // Clockwise from the client's position, wrapping past the end of the ring.
            let (wrapped, ahead) = self.owners.split_at(start);
            if let Some(&owner) = ahead.iter().chain(wrapped).find(|&&o| eligible(o)) {
                return Some(owner as usize);
            }
        }
        Some(candidates[(hash % candidates.len() as u64) as usize].index)
    }
}

// Not derived: pools get logged, and the ring can hold 100k points.
impl std::fmt::Debug for ConsistentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsistentHash")
            .field("members", &self.members)
            .field("points", &self.points.len())
            .finish()
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 continued from `state` over `bytes`.
fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(state, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// murmur3's 64-bit finalizer: every input bit flips each output bit with probability ~1/2.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// An IPv4 client seen through a dual-stack socket (`::ffff:a.b.c.d`) hashes as plain IPv4, so
/// it sticks to the same member whichever listener accepted it.
fn hash_ip(ip: IpAddr) -> u64 {
    let h = match ip.to_canonical() {
        IpAddr::V4(v4) => fnv1a(FNV_OFFSET, &v4.octets()),
        IpAddr::V6(v6) => fnv1a(FNV_OFFSET, &v6.octets()),
    };
    fmix64(h)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const CLIENTS: usize = 10_000;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:8080", i + 1)).collect()
    }

    fn keys<'a>(names: &'a [String], weights: &[u32]) -> Vec<MemberKey<'a>> {
        names
            .iter()
            .zip(weights)
            .map(|(key, &weight)| MemberKey { key, weight })
            .collect()
    }

    fn ring(weights: &[u32]) -> ConsistentHash {
        ConsistentHash::new(&keys(&names(weights.len()), weights))
    }

    fn cand(index: usize) -> Candidate {
        Candidate {
            index,
            weight: 1,
            active: 0,
        }
    }

    fn all(n: usize) -> Vec<Candidate> {
        (0..n).map(cand).collect()
    }

    /// 8 000 IPv4 clients spread over 172.16.0.0/12 and 2 000 IPv6 clients in 2001:db8::/32.
    fn clients() -> Vec<IpAddr> {
        (0..CLIENTS as u32)
            .map(|i| {
                if i % 5 == 4 {
                    let host = u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | host))
                } else {
                    IpAddr::V4(Ipv4Addr::from(
                        0xac10_0000 | (i.wrapping_mul(2_654_435_761) >> 12),
                    ))
                }
            })
            .collect()
    }

    fn assign(ring: &ConsistentHash, cands: &[Candidate]) -> Vec<usize> {
        clients()
            .into_iter()
            .map(|ip| ring.pick(cands, ip).unwrap())
            .collect()
    }

    fn shares(assigned: &[usize], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &m in assigned {
            counts[m] += 1;
        }
        counts
    }

    #[test]
    fn same_ip_same_member() {
        let ring = ring(&[1; 5]);
        assert_eq!(assign(&ring, &all(5)), assign(&ring, &all(5)));
    }

    #[test]
    fn mapped_ipv4_hashes_as_ipv4() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            hash_ip(IpAddr::V4(v4)),
            hash_ip(IpAddr::V6(v4.to_ipv6_mapped()))
        );
    }

    #[test]
    fn shares_are_even() {
        let ring = ring(&[1; 5]);
        let counts = shares(&assign(&ring, &all(5)), 5);
        let mean = (CLIENTS / 5) as f64;
        let spread = counts
            .iter()
            .map(|&c| (c as f64 - mean).abs() / mean)
            .fold(0.0, f64::max);
        assert!(spread <= 0.30, "{counts:?}: spread {spread:.3}");
    }

    #[test]
    fn only_the_leaving_members_clients_move_and_they_come_back() {
        let ring = ring(&[1; 5]);
        let before = assign(&ring, &all(5));
        let without_2: Vec<_> = all(5).into_iter().filter(|c| c.index != 2).collect();
        let during = assign(&ring, &without_2);
        let mut moved = 0;
        for (b, d) in before.iter().zip(&during) {
            if b != d {
                assert_eq!(*b, 2, "a client of member {b} moved to {d}");
                moved += 1;
            }
        }
        assert!(moved <= CLIENTS * 13 / 50, "{moved} of {CLIENTS} moved");
        // Its clients are spread over the others rather than dumped on one neighbour.
        let gained = shares(&during, 5);
        let had = shares(&before, 5);
        for m in [0, 1, 3, 4] {
            assert!(gained[m] > had[m], "{had:?} -> {gained:?}");
        }
        assert_eq!(assign(&ring, &all(5)), before);
    }

    #[test]
    fn weights_scale_shares() {
        let counts = shares(&assign(&ring(&[2, 1]), &all(2)), 2);
        let heavy = counts[0] as f64 / CLIENTS as f64;
        assert!((heavy - 2.0 / 3.0).abs() <= 0.05, "{counts:?}");
    }

    #[test]
    fn a_weight_change_only_moves_clients_to_that_member() {
        let before = assign(&ring(&[1, 1, 1]), &all(3));
        let after = assign(&ring(&[2, 1, 1]), &all(3));
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a);
        assert!(moved.clone().all(|(_, &a)| a == 0));
        assert!(moved.count() > CLIENTS / 10);
    }

    #[test]
    fn placement_follows_keys_not_order() {
        let names = names(4);
        let forward = ConsistentHash::new(&keys(&names, &[1; 4]));
        let reversed: Vec<String> = names.iter().rev().cloned().collect();
        let backward = ConsistentHash::new(&keys(&reversed, &[1; 4]));
        for ip in clients() {
            let f = forward.pick(&all(4), ip).unwrap();
            let b = backward.pick(&all(4), ip).unwrap();
            assert_eq!(names[f], reversed[b]);
        }
    }

    #[test]
    fn ring_size_is_capped() {
        let names: Vec<String> = (0..100).map(|i| format!("m{i}:1")).collect();
        let ring = ConsistentHash::new(&keys(&names, &[256; 100]));
        assert!(ring.points.len() as u64 <= MAX_RING_POINTS);
        let counts = shares(&assign(&ring, &all(100)), 100);
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    }

    #[test]
    fn edge_cases_still_answer() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ring = ring(&[1; 3]);
        assert_eq!(ring.pick(&[], ip), None);
        assert_eq!(ring.pick(&[cand(2)], ip), Some(2));
        // Indexes the ring does not know (a pool grown without a rebuild): hashed directly.
        let empty = ConsistentHash::new(&[]);
        let unknown = empty.pick(&[cand(7), cand(9)], ip);
        assert!(matches!(unknown, Some(7 | 9)));
        assert_eq!(empty.pick(&[cand(7), cand(9)], ip), unknown);
    }
}
