//! A pool: its members, the balancer over them and the tier policy.
//!
//! `select` is the hot-path entry: it reads member state (health, drain, breaker mirror, active
//! count) through atomics, asks the tier policy for candidates and the balancer for one of them.
//! Nothing here blocks or awaits.

use std::net::IpAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::time::{Duration, Instant};

use super::Member;
use super::balance::{self, Balancer, MemberKey};
use super::tier::{self, NoCandidates};
use crate::config::{AllDown, OnMemberDown, PoolConfig};

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
        Self::rebuild(config, seed, None)
    }

    /// Builds a pool for a reload: members named as in `previous` keep their state (health,
    /// drain, active count, breaker when its settings are unchanged); new members start fresh.
    pub fn rebuild(config: &PoolConfig, seed: u64, previous: Option<&Pool>) -> Self {
        let epoch = Instant::now();
        let name: Arc<str> = config.name.as_str().into();
        let initially_up = config.health.as_ref().is_none_or(|h| h.init_up);
        // One backup-tier token holder per pool, kept across reloads so connections from
        // before one are cut too.
        let backups = (config.on_primary_return == OnMemberDown::Close).then(|| {
            previous
                .and_then(|p| p.members.first())
                .and_then(|m| m.primary_return().cloned())
                .unwrap_or_default()
        });
        let members = config
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let member = Member::new(i, m, initially_up, epoch)
                    .in_pool(name.clone())
                    .with_breaker(&config.name, config.breaker)
                    .with_max_connections(config.member_max_connections)
                    .with_early_close(config.early_close)
                    .with_silent(config.silent)
                    .with_close_on_down(config.on_member_down == OnMemberDown::Close)
                    .with_primary_return(backups.clone())
                    .with_max_lifetime(config.max_connection_lifetime);
                // By name only: another name resolving to the same address is another member.
                let before =
                    previous.and_then(|p| p.members.iter().find(|old| old.name() == m.name));
                Arc::new(match before {
                    Some(before) => member.adopt_state(before),
                    None => member,
                })
            })
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
            name,
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

    /// The member with this configured name (`host:port` as written) or resolved address.
    pub fn member(&self, name: &str) -> Option<&Arc<Member>> {
        self.members
            .iter()
            .find(|m| m.name() == name)
            .or_else(|| self.members.iter().find(|m| m.addr().to_string() == name))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BalanceKind, BreakerConfig, MemberConfig};

    fn config(breaker: Option<BreakerConfig>, cap: Option<usize>) -> PoolConfig {
        let member = |port: u16| MemberConfig {
            name: format!("127.0.0.1:{port}"),
            addr: ([127, 0, 0, 1], port).into(),
            weight: 1,
            tier: 0,
        };
        PoolConfig {
            name: "db".into(),
            balance: BalanceKind::RoundRobin,
            members: vec![member(9000), member(9001)],
            dns: Vec::new(),
            health: None,
            min_healthy: 1,
            all_down: AllDown::Reject,
            slow_start: None,
            breaker,
            member_max_connections: cap,
            early_close: None,
            socket: Default::default(),
            silent: None,
            on_member_down: Default::default(),
            on_primary_return: Default::default(),
            max_connection_lifetime: None,
        }
    }

    fn picks(pool: &Pool, n: usize) -> Vec<usize> {
        let client = IpAddr::from([10, 0, 0, 1]);
        (0..n)
            .map(|_| pool.select(client, &[]).map(|m| m.index()).unwrap_or(99))
            .collect()
    }

    #[tokio::test]
    async fn open_member_gets_no_picks() {
        let breaker = BreakerConfig {
            consecutive_failures: 2,
            ..Default::default()
        };
        let pool = Pool::new(&config(Some(breaker), None), 1);
        assert_eq!(picks(&pool, 4), [0, 1, 0, 1]);
        pool.members()[0].report_connect_failure("refused");
        pool.members()[0].report_connect_failure("timeout");
        assert_eq!(picks(&pool, 4), [1, 1, 1, 1]);
        pool.members()[1].report_connect_failure("refused");
        pool.members()[1].report_connect_failure("refused");
        let err = pool.select(IpAddr::from([10, 0, 0, 1]), &[]).unwrap_err();
        assert_eq!(err.pool.as_ref(), "db");
    }

    #[tokio::test]
    async fn early_closes_after_good_connects_open_the_breaker() {
        let breaker = BreakerConfig {
            consecutive_failures: 3,
            ..Default::default()
        };
        let pool = Pool::new(&config(Some(breaker), None), 1);
        let member = &pool.members()[0];
        for _ in 0..3 {
            // The stack saw the connect succeed; the connection task then saw the early close.
            member.acquire_breaker(Instant::now()).unwrap().success();
            member.report_connect_failure("early_close");
        }
        assert!(!member.breaker_admits(Instant::now()));
        assert!(member.acquire_breaker(Instant::now()).is_err());
    }

    #[tokio::test]
    async fn full_member_gets_no_picks_until_a_slot_frees() {
        let pool = Pool::new(&config(None, Some(1)), 1);
        let client = IpAddr::from([10, 0, 0, 1]);
        let first = pool.select(client, &[]).unwrap().track();
        let second = pool.select(client, &[]).unwrap().track();
        assert_ne!(first.member().index(), second.member().index());
        assert!(pool.select(client, &[]).is_err(), "both members are full");
        drop(first);
        assert_eq!(picks(&pool, 1), [0]);
        drop(second);
    }

    #[tokio::test]
    async fn rebuild_keeps_state_by_member_name_whatever_the_order() {
        let before = Pool::new(&config(Some(BreakerConfig::default()), None), 1);
        let (a, b) = (&before.members()[0], &before.members()[1]);
        a.set_up(false);
        b.set_drained(true);
        let live = b.track();

        let mut reordered = config(Some(BreakerConfig::default()), None);
        reordered.members.reverse();
        reordered.members.push(MemberConfig {
            name: "127.0.0.1:9002".into(),
            addr: ([127, 0, 0, 1], 9002).into(),
            weight: 1,
            tier: 0,
        });
        let after = Pool::rebuild(&reordered, 1, Some(&before));
        let new_a = after.member("127.0.0.1:9000").unwrap();
        let new_b = after.member("127.0.0.1:9001").unwrap();
        assert_eq!(
            (new_a.index(), new_b.index()),
            (1, 0),
            "positions follow the new file"
        );
        assert!(!new_a.is_up(), "health survives the reload");
        assert!(new_b.is_drained(), "drain survives the reload");
        assert_eq!(
            new_b.active(),
            1,
            "connections from before the reload still count"
        );
        drop(live);
        assert_eq!(new_b.active(), 0, "and leave the count when they end");
        let fresh = after.member("127.0.0.1:9002").unwrap();
        assert!(fresh.is_up() && !fresh.is_drained() && fresh.active() == 0);
    }
}
