//! CircuitBreaker: asks the chosen member's breaker before connecting, and feeds it the outcome.
//!
//! Usual words: a Closed breaker passes connections, an Open one rejects them, a HalfOpen one
//! admits a few probe connections (trials) whose outcomes decide whether it closes again. The
//! rules live in [`upstream::breaker`](crate::upstream::breaker) (a pure state machine); each
//! member carries its own, so this layer holds no state and only consults it.
//!
//! Fails fast, never waits: a refused admission is `ConnectError::CircuitOpen` at once, without
//! reaching the connect. Selection already skips members whose breaker is open, so this only
//! catches the race where a breaker opens (or its last trial slot goes) between pick and
//! connect; Retry then redials another member.
//!
//! Admission cannot be reserved in `poll_ready` as other limits are: which member, and so which
//! breaker, is known only from the request. `poll_ready` passes the inner readiness through.
//!
//! Outcomes: success → the breaker's success; an error that is the member's fault
//! ([`ConnectError::is_member_failure`]) → a failure; any other error, or the future dropped
//! before it finished (the client left), releases a half-open trial without a verdict.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::{Layer, Service};

use super::{ConnectError, MemberId, MemberRequest};

/// Consults each member's own breaker; carries no configuration (pools build the breakers).
#[derive(Clone, Copy, Debug, Default)]
pub struct CircuitBreakerLayer {
    _priv: (),
}

impl CircuitBreakerLayer {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker { inner }
    }
}

/// Gates a per-member connector on that member's breaker.
#[derive(Clone, Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
}

impl<S> CircuitBreaker<S> {
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<MemberRequest> for CircuitBreaker<S>
where
    S: Service<MemberRequest, Error = ConnectError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: MemberRequest) -> Self::Future {
        let member = Arc::clone(request.guard.member());
        let permit = match member.acquire_breaker(Instant::now()) {
            Ok(permit) => permit,
            Err(_) => {
                let member = MemberId::of(&member);
                return Box::pin(async move { Err(ConnectError::CircuitOpen { member }) });
            }
        };
        let connect = self.inner.call(request);
        Box::pin(async move {
            // If this future is dropped mid-connect, `permit` drops too and gives a trial back.
            let result = connect.await;
            match &result {
                Ok(_) => permit.success(),
                Err(e) if e.is_member_failure() => permit.failure(e.reason()),
                Err(_) => drop(permit),
            }
            result
        })
    }
}

#[cfg(test)]
mod tests;
