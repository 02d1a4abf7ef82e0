//! RateLimit: new connections per second across a whole route.
//!
//! Owns the route's token bucket (`rate_limit = { per_second, burst }`, governor's direct
//! limiter on [`TokioClock`]). It sits under Admission, so only connections that got their
//! connection slots spend a route token, and above Retry, so a redial does not spend a second
//! one: the bucket counts client connections, not connect attempts.
//!
//! `on_limit = reject` fails fast with `RateLimited { scope: Route, per_second }`.
//! `on_limit = queue { timeout }` waits for the next token when it comes within `timeout` of
//! the connection reaching this layer, and fails at once otherwise. Waiters are not served in
//! arrival order: each re-checks when the token it waited for is due. The wait here is bounded
//! separately from Admission's, so a connection queued by both may wait up to twice `timeout`.
//!
//! Readiness: tower's own `RateLimit` waits in `poll_ready`, but ours must also fail fast, and
//! tower treats an error from `poll_ready` as a failed service rather than a refused request.
//! So the token is taken in `call` (a clone polled ready but never called spends nothing),
//! `poll_ready` is always ready, and the unpolled inner service is cloned into the response
//! future and driven ready only after the token, so nothing below is reserved while queued.
//! Nothing is reserved per clone either, so `Clone` is derived.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::clock::{DirectLimiter, TokioClock, queue_deadline, quota, take_token};
use super::{ConnectError, ConnectRequest, Connected, LimitScope};
use crate::config::{OnLimit, RateLimitConfig, RouteConfig};

/// Builds [`RateLimit`] services that share one route's bucket.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Option<Arc<Bucket>>,
}

/// Spends one route token per [`ConnectRequest`] before passing it on.
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    bucket: Option<Arc<Bucket>>,
    inner: S,
}

#[derive(Debug)]
struct Bucket {
    limiter: DirectLimiter,
    per_second: u32,
    on_limit: OnLimit,
}

// === impl RateLimitLayer ===

impl RateLimitLayer {
    /// The route's `rate_limit` under its `on_limit`; forwards everything when the route has no
    /// `rate_limit`, so every route's stack has the same type.
    pub fn for_route(route: &RouteConfig) -> Self {
        match route.rate_limit {
            Some(config) => Self::new(config, route.on_limit),
            None => Self::unlimited(),
        }
    }

    /// A bucket of `config.burst` tokens refilled at `config.per_second`, starting full.
    pub fn new(config: RateLimitConfig, on_limit: OnLimit) -> Self {
        Self {
            bucket: Some(Arc::new(Bucket {
                limiter: DirectLimiter::direct_with_clock(quota(&config), TokioClock),
                per_second: config.per_second.get(),
                on_limit,
            })),
        }
    }

    pub fn unlimited() -> Self {
        Self { bucket: None }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            bucket: self.bucket.clone(),
            inner,
        }
    }
}

// === impl RateLimit ===

impl Bucket {
    async fn take(&self, deadline: Option<Instant>) -> Result<(), ConnectError> {
        if take_token(|| self.limiter.check(), deadline).await {
            Ok(())
        } else {
            Err(ConnectError::RateLimited {
                scope: LimitScope::Route,
                per_second: self.per_second,
            })
        }
    }
}

impl<S> Service<ConnectRequest> for RateLimit<S>
where
    S: Service<ConnectRequest, Response = Connected, Error = ConnectError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Connected;
    type Error = ConnectError;
    type Future = BoxFuture<'static, Result<Connected, ConnectError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ConnectRequest) -> Self::Future {
        let bucket = self.bucket.clone();
        let deadline = bucket.as_ref().and_then(|b| queue_deadline(b.on_limit));
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(bucket) = bucket {
                bucket.take(deadline).await?;
            }
            inner.oneshot(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use tokio_test::{assert_pending, assert_ready_err, task};

    use super::*;
    use crate::connect::testing::{mock, request};

    fn layer(per_second: u32, burst: u32, on_limit: OnLimit) -> RateLimitLayer {
        let config = RateLimitConfig {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        };
        RateLimitLayer::new(config, on_limit)
    }

    /// Calls the stack once; true when the request reached the inner service.
    async fn passes<S>(
        svc: &S,
        handle: &mut tower_test::mock::Handle<ConnectRequest, Connected>,
    ) -> bool
    where
        S: Service<ConnectRequest, Response = Connected, Error = ConnectError> + Clone,
    {
        let mut call = task::spawn(svc.clone().oneshot(request("10.0.0.1:4000")));
        let Poll::Ready(result) = call.poll() else {
            handle
                .next_request()
                .await
                .expect("request reached the inner service");
            return true;
        };
        let err = result.expect_err("refused before the inner service");
        assert!(
            matches!(
                err,
                ConnectError::RateLimited {
                    scope: LimitScope::Route,
                    per_second: 10
                }
            ),
            "{err}"
        );
        false
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_refills_up_to_burst() {
        let (inner, mut handle) = mock();
        let svc = layer(10, 3, OnLimit::Reject).layer(inner);
        for _ in 0..3 {
            assert!(passes(&svc, &mut handle).await);
        }
        assert!(!passes(&svc, &mut handle).await);

        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(passes(&svc, &mut handle).await);
        assert!(!passes(&svc, &mut handle).await);

        // A full second refills ten tokens' worth, but the bucket banks only three.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..3 {
            assert!(passes(&svc, &mut handle).await);
        }
        assert!(!passes(&svc, &mut handle).await);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_waits_for_a_token_within_timeout() {
        let (inner, mut handle) = mock();
        let queue = OnLimit::Queue {
            timeout: Duration::from_millis(150),
        };
        let svc = layer(10, 1, queue).layer(inner);
        assert!(passes(&svc, &mut handle).await);

        let start = Instant::now();
        let mut queued = task::spawn(svc.clone().oneshot(request("10.0.0.1:4000")));
        assert_pending!(queued.poll());
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_pending!(queued.poll());
        assert!(
            handle.poll_request().is_pending(),
            "passed before its token"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_pending!(queued.poll());
        handle.next_request().await.expect("queued request passed");
        assert_eq!(start.elapsed(), Duration::from_millis(100));

        // Two more at 100ms, both due a token at 200ms (within their 250ms deadline). Waiting
        // reserves nothing: whichever re-checks first takes it, and the other's next token
        // (300ms) is past its deadline, so it fails without waiting further.
        let mut second = task::spawn(svc.clone().oneshot(request("10.0.0.1:4000")));
        let mut third = task::spawn(svc.clone().oneshot(request("10.0.0.1:4000")));
        assert_pending!(second.poll());
        assert_pending!(third.poll());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_pending!(second.poll());
        handle.next_request().await.expect("second passed");
        let err = assert_ready_err!(third.poll());
        assert!(matches!(
            err,
            ConnectError::RateLimited {
                scope: LimitScope::Route,
                ..
            }
        ));
        assert_eq!(start.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_forwards() {
        let (inner, mut handle) = mock();
        let svc = RateLimitLayer::unlimited().layer(inner);
        for _ in 0..100 {
            assert!(passes(&svc, &mut handle).await);
        }
    }
}
