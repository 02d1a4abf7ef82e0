//! ClientRateLimit: new connections per second from one client IP, with bounded memory.
//!
//! Owns one token bucket per client IP (governor's keyed limiter on [`TokioClock`]) and the
//! eviction that keeps that map from growing with every address ever seen. `Admission` decides
//! when to consult it and what `on_limit` means; this type only takes tokens.
//!
//! Memory bound: every [`CLEANUP_EVERY`] checks, the check that reaches the multiple drops the
//! buckets that have refilled completely (governor's `retain_recent`, which keeps exactly the
//! keys whose state differs from a fresh bucket) and shrinks the map. A key is therefore held at
//! most one [`refill_horizon`] after its last connection, plus up to `CLEANUP_EVERY` checks, so
//! the map holds at most the distinct clients seen within one horizon plus `CLEANUP_EVERY`.
//! The cleanup runs inline on the connection path (amortized O(len / CLEANUP_EVERY) per check)
//! because a background task would need its own shutdown; no traffic means no growth anyway.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::ConnectError;
use super::LimitScope;
use super::clock::{KeyedLimiter, TokioClock, quota, refill_horizon, take_token};
use crate::config::RateLimitConfig;

/// Checks between two evictions of refilled buckets.
pub const CLEANUP_EVERY: u64 = 1024;

/// Per-client-IP token buckets, shared by every connection of a route.
pub struct ClientRateLimit {
    limiter: KeyedLimiter,
    config: RateLimitConfig,
    checks: AtomicU64,
}

impl ClientRateLimit {
    /// Each client IP gets `config.burst` tokens, refilled at `config.per_second`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            limiter: KeyedLimiter::dashmap_with_clock(quota(&config), TokioClock),
            config,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token for `client`: at once or not at all when `deadline` is `None`, otherwise
    /// waiting for the next token if it comes by `deadline`. Fails with
    /// `RateLimited { scope: Client, per_second }`.
    pub async fn acquire(
        &self,
        client: IpAddr,
        deadline: Option<Instant>,
    ) -> Result<(), ConnectError> {
        // One key per host: a dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`.
        let client = client.to_canonical();
        self.maybe_evict();
        if take_token(|| self.limiter.check_key(&client), deadline).await {
            Ok(())
        } else {
            Err(ConnectError::RateLimited {
                scope: LimitScope::Client,
                per_second: self.config.per_second.get(),
            })
        }
    }

    /// Client IPs currently holding a bucket (approximate under concurrent use).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    pub fn config(&self) -> RateLimitConfig {
        self.config
    }

    /// How long a client's bucket outlives its last connection (before the next cleanup).
    pub fn refill_horizon(&self) -> Duration {
        refill_horizon(&self.config)
    }

    fn maybe_evict(&self) {
        let n = self.checks.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(CLEANUP_EVERY) {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

impl fmt::Debug for ClientRateLimit {
    // Not derived: the derived form would print every client's bucket.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRateLimit")
            .field("config", &self.config)
            .field("clients", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::num::NonZeroU32;

    use super::*;

    fn limit(per_second: u32, burst: u32) -> ClientRateLimit {
        ClientRateLimit::new(RateLimitConfig {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_bounds_memory_after_a_wide_burst() {
        let limit = limit(20, 20);
        for n in 0..100_000 {
            limit.acquire(ip(n), None).await.unwrap();
        }
        // Every bucket is still partly drained, so none may be forgotten yet.
        assert_eq!(limit.len(), 100_000);

        // Past the horizon every one of them is as good as fresh. Eight clients keep coming;
        // within `CLEANUP_EVERY` checks a cleanup leaves only them.
        tokio::time::advance(limit.refill_horizon() + Duration::from_millis(1)).await;
        for n in 0..CLEANUP_EVERY as u32 {
            let _ = limit.acquire(ip(1_000_000 + n % 8), None).await;
        }
        let len = limit.len();
        assert!(len <= 8, "{len} buckets left after eviction");
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_keeps_drained_buckets() {
        let limit = limit(1, 1);
        limit.acquire(ip(1), None).await.unwrap();
        // Enough other clients to trigger a cleanup while client 1 is still drained.
        for n in 2..=CLEANUP_EVERY as u32 {
            limit.acquire(ip(n), None).await.unwrap();
        }
        let err = limit.acquire(ip(1), None).await.unwrap_err();
        assert!(matches!(
            err,
            ConnectError::RateLimited {
                scope: LimitScope::Client,
                per_second: 1
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn ipv4_mapped_clients_share_a_bucket() {
        let limit = limit(1, 1);
        limit.acquire(ip(0x0a00_0001), None).await.unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert!(limit.acquire(mapped, None).await.is_err());
        assert!(
            limit
                .acquire(IpAddr::V6(Ipv6Addr::LOCALHOST), None)
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn queue_waits_for_the_next_token_within_the_deadline() {
        let limit = limit(20, 1);
        let start = Instant::now();
        limit.acquire(ip(1), None).await.unwrap();
        // The next token is 50ms away: a 10ms queue refuses at once, a 1s queue waits 50ms.
        assert!(
            limit
                .acquire(ip(1), Some(start + Duration::from_millis(10)))
                .await
                .is_err()
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        limit
            .acquire(ip(1), Some(start + Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(50));
    }
}
