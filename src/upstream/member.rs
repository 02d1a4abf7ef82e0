//! One upstream member and the state that decides whether it may take new connections.
//!
//! A member is eligible when three independent signals agree: health probes say it is up, its
//! circuit breaker admits traffic, and an operator has not drained it. Each signal lives in an
//! atomic so the balancer reads them on the accept path without taking a lock; writers (the
//! health task, the breaker, the admin API) flip them and report whether the value changed, so a
//! transition is logged exactly once by whoever caused it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::time::Instant;

use crate::config::MemberConfig;

/// A member of a pool, shared by the pool, its health task and every connection using it.
#[derive(Debug)]
pub struct Member {
    /// Position in the pool's member list; balancers answer with it.
    index: usize,
    name: Arc<str>,
    addr: SocketAddr,
    weight: u32,
    tier: u8,
    up: AtomicBool,
    drained: AtomicBool,
    active: AtomicU64,
    /// Milliseconds since `epoch` when the member last came up; drives slow start.
    up_since_ms: AtomicU64,
    epoch: Instant,
}

// === impl Member ===

impl Member {
    pub fn new(index: usize, config: &MemberConfig, initially_up: bool, epoch: Instant) -> Self {
        Self {
            index,
            name: config.name.as_str().into(),
            addr: config.addr,
            weight: config.weight,
            tier: config.tier,
            up: AtomicBool::new(initially_up),
            drained: AtomicBool::new(false),
            active: AtomicU64::new(0),
            // A member that is up from the start is not ramped: there is no cold cache to warm.
            up_since_ms: AtomicU64::new(0),
            epoch,
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// The address as the config wrote it (`host:port`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared cheaply with errors and logs.
    pub fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn tier(&self) -> u8 {
        self.tier
    }

    /// Health as last decided by probes (always true for pools without health checks).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Sets health; returns true when this call changed it.
    pub fn set_up(&self, up: bool) -> bool {
        let changed = self.up.swap(up, Ordering::AcqRel) != up;
        if changed && up {
            let since = Instant::now().saturating_duration_since(self.epoch);
            // +1 so that zero keeps meaning "never came up since the pool was built".
            self.up_since_ms
                .store(since.as_millis() as u64 + 1, Ordering::Release);
        }
        changed
    }

    /// When the member last came up, if it came up after the pool was built.
    pub fn up_since(&self) -> Option<Instant> {
        match self.up_since_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.epoch + std::time::Duration::from_millis(ms - 1)),
        }
    }

    /// Drained by an operator: takes no new connections, live ones finish.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// Sets the drain flag; returns true when this call changed it.
    pub fn set_drained(&self, drained: bool) -> bool {
        self.drained.swap(drained, Ordering::AcqRel) != drained
    }

    /// May take a new connection: up and not drained.
    pub fn is_eligible(&self) -> bool {
        self.is_up() && !self.is_drained()
    }

    /// Connections currently relayed to this member.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts one more active connection until the returned guard drops.
    pub fn track(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            member: Arc::clone(self),
        }
    }
}

/// Keeps a member's active count right however the connection ends.
#[derive(Debug)]
pub struct ActiveGuard {
    member: Arc<Member>,
}

impl ActiveGuard {
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.member.active.fetch_sub(1, Ordering::Relaxed);
    }
}
