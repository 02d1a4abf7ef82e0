//! A pool: its members, the balancer over them and the tier policy.
//!
//! `select` is the hot-path entry: it reads member state through atomics, asks the tier policy
//! for candidates and the balancer for one of them. Nothing here blocks or awaits.

use std::net::IpAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::time::{Duration, Instant};

use super::Member;
use super::balance::{self, Balancer, MemberKey};
use super::tier::{self, NoCandidates};
use crate::config::{AllDown, PoolConfig};

/// A running pool.
#[derive(Debug)]
pub struct Pool {
    name: Arc<str>,
    members: Vec<Arc<Member>>,
    balancer: Box<dyn Balancer>,
    min_healthy: usize,
    all_down: AllDown,
    slow_start: Option<Duration>,
}

/// No member could take the connection.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("no eligible member in pool {pool} ({tried} already tried)")]
pub struct NoEligibleMember {
    pub pool: Arc<str>,
    pub tried: usize,
}

// === impl Pool ===

impl Pool {
    /// Builds a pool; members start in the health check's initial state (up without checks).
    pub fn new(config: &PoolConfig, seed: u64) -> Self {
        let epoch = Instant::now();
        let initially_up = config.health.as_ref().is_none_or(|h| h.init_up);
        let members = config
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| Arc::new(Member::new(i, m, initially_up, epoch)))
            .collect();
        let keys: Vec<MemberKey<'_>> = config
            .members
            .iter()
            .map(|m| MemberKey {
                key: &m.name,
                weight: m.weight,
            })
            .collect();
        Self {
            name: config.name.as_str().into(),
            members,
            balancer: balance::build(config.balance, &keys, seed),
            min_healthy: config.min_healthy,
            all_down: config.all_down,
            slow_start: config.slow_start,
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    /// Picks the member for a new connection from `client`, skipping the `tried` indexes.
    pub fn select(&self, client: IpAddr, tried: &[usize]) -> Result<Arc<Member>, NoEligibleMember> {
        let no_member = || NoEligibleMember {
            pool: Arc::clone(&self.name),
            tried: tried.len(),
        };
        let candidates = tier::candidates(
            &self.members,
            self.min_healthy,
            self.all_down,
            self.slow_start,
            tried,
            Instant::now(),
        )
        .map_err(|NoCandidates::AllDown| no_member())?;
        let index = self
            .balancer
            .pick(&candidates, client)
            .ok_or_else(no_member)?;
        Ok(Arc::clone(&self.members[index]))
    }
}
