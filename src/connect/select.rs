//! Select: picks the member for one connect attempt.
//!
//! Fails fast with `NoEligibleMember` when the pool has nothing to offer; never waits. The
//! member's active count is taken here, before the connect, so balancers that count
//! connections (least_conn, p2c) see in-flight connects and do not pile onto a slow member.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use tower::{Layer, Service};

use super::{ConnectError, ConnectRequest, Connected, MemberRequest};
use crate::upstream::Pool;

/// Adds member selection from `pool` in front of a per-member connector.
#[derive(Clone, Debug)]
pub struct SelectLayer {
    pool: Arc<Pool>,
}

impl SelectLayer {
    pub fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }
}

impl<S> Layer<S> for SelectLayer {
    type Service = Select<S>;

    fn layer(&self, inner: S) -> Select<S> {
        Select {
            pool: Arc::clone(&self.pool),
            inner,
        }
    }
}

/// Turns a [`ConnectRequest`] into a [`MemberRequest`] for the member the pool picks.
#[derive(Clone, Debug)]
pub struct Select<S> {
    pool: Arc<Pool>,
    inner: S,
}

impl<S> Service<ConnectRequest> for Select<S>
where
    S: Service<MemberRequest, Response = Connected, Error = ConnectError>,
{
    type Response = Connected;
    type Error = ConnectError;
    type Future = Either<S::Future, Ready<Result<Connected, ConnectError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ConnectRequest) -> Self::Future {
        match self.pool.select(request.client.ip(), &request.tried) {
            Ok(member) => {
                request
                    .attempts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Either::Left(self.inner.call(MemberRequest {
                    guard: member.track(),
                    client: request.client,
                    local: request.local,
                }))
            }
            Err(e) => Either::Right(ready(Err(e.into()))),
        }
    }
}
