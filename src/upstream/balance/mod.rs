//! Balancers: pure choices among the eligible members of a pool.
//!
//! A balancer sees only [`Candidate`]s (member index, effective weight, active connections) and
//! the client's IP; it never touches sockets, health or tiers. The pool filters members down to
//! the eligible ones of the chosen tier before asking, so every balancer skips down, drained and
//! circuit-open members for free. Internal state (round robin's current weights, the rotation
//! cursor, the seeded RNG) sits behind a short synchronous lock that is never held across an
//! `.await`.

use std::fmt::Debug;
use std::net::IpAddr;

use crate::config::BalanceKind;

mod hash;
mod least_conn;
mod p2c;
mod round_robin;

pub use hash::ConsistentHash;
pub use least_conn::LeastConn;
pub use p2c::PowerOfTwoChoices;
pub use round_robin::SmoothWeightedRoundRobin;

/// A member that may take this connection, as the balancer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The member's position in its pool; what `pick` answers with.
    pub index: usize,
    /// Effective weight (after slow start), >= 1.
    pub weight: u32,
    /// Connections currently relayed to the member.
    pub active: u64,
}

/// Picks one candidate for a new connection.
pub trait Balancer: Send + Sync + Debug {
    /// Returns the `index` of one of `candidates`, or `None` only when `candidates` is empty.
    /// `candidates` are sorted by index and may be any subset of the pool's members.
    fn pick(&self, candidates: &[Candidate], client: IpAddr) -> Option<usize>;
}

/// What a balancer is built from: each member's stable key (its configured name) and its weight,
/// in pool order. Keys let the hash ring place a member at the same points across reloads.
#[derive(Clone, Debug)]
pub struct MemberKey<'a> {
    pub key: &'a str,
    pub weight: u32,
}

/// Builds the balancer of `kind` for a pool with these members; `seed` drives any randomness.
pub fn build(kind: BalanceKind, members: &[MemberKey<'_>], seed: u64) -> Box<dyn Balancer> {
    match kind {
        BalanceKind::RoundRobin => Box::new(SmoothWeightedRoundRobin::new(members.len())),
        BalanceKind::LeastConn => Box::new(LeastConn::new()),
        BalanceKind::P2c => Box::new(PowerOfTwoChoices::new(seed)),
        BalanceKind::Hash => Box::new(ConsistentHash::new(members)),
    }
}
