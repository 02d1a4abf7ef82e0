//! Retry: the one place that decides every redial, seeing the whole attempt.
//!
//! Sits above `EarlyClose` and `Select`, so every attempt picks again and an attempt has failed
//! whether the member refused, reset, timed out, lost a race with its opening breaker, or
//! accepted and hung up before its first byte (pingora's `process_request` loops on
//! `Error::retry()` the same way). What is cloned per attempt is the request (client and local
//! address, tried list, a shared handle to the client socket), never a byte of the client's:
//! bytes the client sends meanwhile wait in its socket's receive buffer. Admission and the
//! route's rate limit sit above, so a redial takes no second connection slot and spends no
//! second token.
//!
//! Redials only errors with [`ConnectError::redial_allowed`] (a member's fault, or a breaker that
//! opened between pick and connect), `attempts` connects in all:
//!
//! - **Another member, at once.** A failed member's index goes into the request's `tried`
//!   list, so the next pick skips it; redialling elsewhere does not wait (haproxy #1878: a
//!   backoff before trying a *different* server only delays the client).
//! - **The same members again, after a backoff.** When no untried member is left
//!   (`NoEligibleMember` with a non-empty `tried` list: a one-member pool, or every member has
//!   failed this client), the tried list is cleared and the next connect waits: exponential
//!   from `min_backoff`, doubling up to `max_backoff`; with `jitter` each wait gets a random
//!   extra of up to 100% of itself (backon's jitter), drawn from the config's seed and the
//!   request's sequence number, so a run with the same seed and order of connections waits the
//!   same. Before dialling after a wait, a client that has left ends the request
//!   (`ClientGone`).
//!
//! It stops after `attempts` connects, or when the next wait would end past `budget` from the
//! first attempt, and returns the last member's error: "refused by 10.0.0.2:5432" tells an
//! operator more than "no eligible member (2 already tried)".
//!
//! Waits, never fails fast, but only between attempts; readiness is the inner stack's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use metrics::counter;
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt};
use tracing::{debug, field, info};

use super::{ConnectError, ConnectRequest};
use crate::config::RetryConfig;
use crate::telemetry::metrics::RETRIES_TOTAL;

/// Spreads consecutive request numbers over the seed space (2^64 / golden ratio).
const SEED_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// Adds redials to a route's stack. Clones share one request counter (for jitter seeds).
#[derive(Clone, Debug)]
pub struct RetryLayer {
    policy: Arc<Policy>,
}

#[derive(Debug)]
struct Policy {
    route: Arc<str>,
    config: RetryConfig,
    seed: u64,
    /// Requests seen so far; each draws its jitter from `seed` and its own number.
    requests: AtomicU64,
}

impl RetryLayer {
    /// `route` labels logs and `sluice_retries_total`. `config` is validated (attempts >= 1,
    /// min_backoff <= max_backoff); `attempts` of 1 never redials. `seed` is the config's seed,
    /// or the one drawn at startup.
    pub fn new(route: Arc<str>, config: RetryConfig, seed: u64) -> Self {
        Self {
            policy: Arc::new(Policy {
                route,
                config,
                seed,
                requests: AtomicU64::new(0),
            }),
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// Runs a [`ConnectRequest`] through the inner stack until it connects or may not redial.
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> Retry<S> {
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<ConnectRequest> for Retry<S>
where
    S: Service<ConnectRequest, Error = ConnectError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ConnectRequest) -> Self::Future {
        // The first attempt spends the readiness `poll_ready` reserved, so the ready service goes
        // into the future and a fresh clone stays behind (tower-service docs, "Be careful when
        // cloning inner services"). Later attempts wait for readiness on their own.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(Arc::clone(&self.policy).run(ready, request))
    }
}

// === impl Policy ===

impl Policy {
    async fn run<S>(
        self: Arc<Self>,
        mut svc: S,
        mut request: ConnectRequest,
    ) -> Result<S::Response, ConnectError>
    where
        S: Service<ConnectRequest, Error = ConnectError>,
    {
        let started = Instant::now();
        let mut backoff = self.backoff();
        // Attempts that reached a member (connected, failed or found its breaker open) so far.
        let mut attempts: u32 = 0;
        let mut last_member_error: Option<ConnectError> = None;
        loop {
            let err = match svc.call(request.clone()).await {
                Ok(connected) => return Ok(connected),
                Err(err) => err,
            };
            let err = match (err, last_member_error.take()) {
                // Every member still eligible has failed this client: try them again, after
                // a backoff, if attempts and budget allow.
                (ConnectError::NoEligibleMember(_), Some(previous))
                    if !request.tried.is_empty() =>
                {
                    let Some(wait) = self.wait(&mut backoff, attempts, started) else {
                        return Err(previous);
                    };
                    debug!(attempts, backoff = ?wait, "every member tried; retrying after a backoff");
                    sleep(wait).await;
                    if request.client_left() {
                        return Err(ConnectError::ClientGone);
                    }
                    request.tried.clear();
                    last_member_error = Some(previous);
                    svc.ready().await?;
                    continue;
                }
                (ConnectError::NoEligibleMember(_), Some(previous)) => return Err(previous),
                (err, _) if !err.redial_allowed() => return Err(err),
                (err, _) => err,
            };
            attempts += 1;
            if attempts >= self.config.attempts || started.elapsed() >= self.config.budget {
                return Err(err);
            }
            let member = err.member();
            if let Some(index) = member.map(|m| m.index)
                && !request.tried.contains(&index)
            {
                request.tried.push(index);
            }
            info!(
                attempt = attempts,
                member = member.map(field::display),
                reason = err.reason(),
                "connect failed; redialling"
            );
            counter!(RETRIES_TOTAL, "route" => self.route.to_string()).increment(1);
            last_member_error = Some(err);
            svc.ready().await?;
        }
    }

    /// The wait before retrying members already tried, or `None` when `attempts` attempts have
    /// been made or the wait would end past `budget`.
    fn wait(
        &self,
        backoff: &mut ExponentialBackoff,
        attempts: u32,
        started: Instant,
    ) -> Option<Duration> {
        if attempts >= self.config.attempts {
            return None;
        }
        let wait = backoff.next().map(to_micros)?;
        let elapsed = started.elapsed();
        if elapsed + wait > self.config.budget {
            debug!(attempts, ?elapsed, budget = ?self.config.budget, "retry budget spent");
            return None;
        }
        Some(wait)
    }

    fn backoff(&self) -> ExponentialBackoff {
        let c = &self.config;
        let builder = ExponentialBuilder::new()
            .with_min_delay(c.min_backoff)
            .with_max_delay(c.max_backoff)
            .with_max_times(c.attempts.saturating_sub(1) as usize);
        if !c.jitter {
            return builder.build();
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        builder
            .with_jitter()
            .with_jitter_seed(self.seed.wrapping_add(n.wrapping_mul(SEED_STEP)))
            .build()
    }
}

/// Rounds to the nearest microsecond. backon computes in `f32`, so 25ms doubled comes out as
/// 50.0000007ms, which tokio's millisecond timer would round up to 51ms; rounding gives back the
/// schedule an operator configured (exact up to several seconds, and within microseconds above).
fn to_micros(d: Duration) -> Duration {
    Duration::from_micros(
        u64::try_from(d.as_nanos().saturating_add(500) / 1000).unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
mod tests;
