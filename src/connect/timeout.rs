//! ConnectTimeout: bounds one connect attempt.
//!
//! Sits directly above the TCP connect so the time counted is the member's alone (selection
//! and backoff waits above it are not charged to the member). Fails with a
//! `ConnectError::Timeout` naming the member and the duration, never a bare elapsed error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use std::sync::Arc;

use super::{ConnectError, Connected, MemberId, MemberRequest};
use crate::telemetry::metrics as m;

#[derive(Clone, Copy, Debug)]
pub struct ConnectTimeoutLayer {
    after: Duration,
}

impl ConnectTimeoutLayer {
    pub fn new(after: Duration) -> Self {
        Self { after }
    }
}

impl<S> Layer<S> for ConnectTimeoutLayer {
    type Service = ConnectTimeout<S>;

    fn layer(&self, inner: S) -> ConnectTimeout<S> {
        ConnectTimeout {
            after: self.after,
            inner,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConnectTimeout<S> {
    after: Duration,
    inner: S,
}

impl<S> Service<MemberRequest> for ConnectTimeout<S>
where
    S: Service<MemberRequest, Response = Connected, Error = ConnectError>,
    S::Future: Send + 'static,
{
    type Response = Connected;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Connected, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: MemberRequest) -> Self::Future {
        let member = MemberId::of(request.guard.member());
        let pool = Arc::clone(request.guard.member().pool());
        let after = self.after;
        let connect = self.inner.call(request);
        Box::pin(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(after, connect).await {
                Ok(result) => result,
                Err(_) => Err(ConnectError::Timeout {
                    member: member.clone(),
                    after,
                }),
            };
            // Every attempt is counted here, the one place that sees each member's own outcome,
            // timeouts included.
            let outcome = result.as_ref().map_or_else(ConnectError::reason, |_| "ok");
            metrics::counter!(
                m::CONNECT_ATTEMPTS_TOTAL,
                "pool" => Arc::clone(&pool),
                "member" => Arc::clone(&member.name),
                "result" => outcome
            )
            .increment(1);
            if result.is_ok() {
                metrics::histogram!(
                    m::CONNECT_DURATION_SECONDS,
                    "pool" => pool,
                    "member" => Arc::clone(&member.name)
                )
                .record(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}
