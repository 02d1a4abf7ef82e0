//! Admission: whether a new client connection may use the route at all.
//!
//! Outermost layer of the connect stack. It owns the connection-count limits (the route's
//! `max_connections` and the server-wide `max_connections`, each a [`ConnectionLimit`]) and
//! consults the route's per-client rate limit ([`ClientRateLimit`]). Checks run cheapest
//! first: the client's rate (so one noisy client cannot occupy connection slots), then the
//! route's count, then the global count (so a route at its own limit queues without holding
//! global slots). Each permit is taken before the connect and moved into
//! [`Connected::permits`], so a limit counts connections being dialled as well as relayed, and
//! frees the slot when the relay ends; on any error the permits drop at once.
//!
//! `on_limit = reject` fails fast. `on_limit = queue { timeout }` waits, and `timeout` is one
//! deadline for all three checks, taken when the connection arrives: a connection count waits
//! for a permit; the client rate waits for the client's next token only when it comes before
//! the deadline (else fails at once). Errors: `RateLimited { scope: Client }` and
//! `LimitReached { scope: Route | Global }`. After a queued admission a client that has left
//! meanwhile (closed or reset) ends with `ClientGone` before any member is dialled.
//!
//! Readiness: the decisions need the request (the client IP), so they are made in `call`, and
//! `poll_ready` is always ready. The inner service is cloned unpolled into the response future
//! and driven ready only once admitted, so nothing below (a rate token, a breaker trial) is
//! reserved while a connection waits here. With nothing reserved per clone, `Clone` is derived.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::client_limit::ClientRateLimit;
use super::clock::queue_deadline;
use super::{ConnectError, ConnectRequest, Connected, LimitScope};
use crate::config::{OnLimit, RateLimitConfig, RouteConfig};

/// At most `max` connections at once; clones share the same permits.
#[derive(Clone, Debug)]
pub struct ConnectionLimit {
    scope: LimitScope,
    max: usize,
    semaphore: Arc<Semaphore>,
}

/// Builds [`Admission`] services that share one route's limits.
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    limits: Arc<Limits>,
}

/// Admits a [`ConnectRequest`] under its route's limits before passing it on.
#[derive(Clone, Debug)]
pub struct Admission<S> {
    limits: Arc<Limits>,
    inner: S,
}

#[derive(Debug)]
struct Limits {
    client_rate: Option<ClientRateLimit>,
    route: Option<ConnectionLimit>,
    global: Option<ConnectionLimit>,
    on_limit: OnLimit,
}

// === impl ConnectionLimit ===

impl ConnectionLimit {
    /// The server-wide limit. Create it once and give a clone to every route's layer.
    pub fn global(max: usize) -> Self {
        Self::new(LimitScope::Global, max)
    }

    /// One route's limit, shared by every connection of that route. A new one starts empty:
    /// keep the old one across a reload if live connections should still count.
    pub fn route(max: usize) -> Self {
        Self::new(LimitScope::Route, max)
    }

    /// `max = 0` admits nothing (config validation turns 0 into "no limit" before this);
    /// `max` above tokio's `Semaphore::MAX_PERMITS` is capped there.
    pub fn new(scope: LimitScope, max: usize) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        Self {
            scope,
            max,
            semaphore: Arc::new(Semaphore::new(max)),
        }
    }

    pub fn scope(&self) -> LimitScope {
        self.scope
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Free slots right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// A permit at once (`deadline = None`) or by `deadline`, else `LimitReached`.
    async fn acquire(
        &self,
        deadline: Option<Instant>,
    ) -> Result<OwnedSemaphorePermit, ConnectError> {
        let semaphore = Arc::clone(&self.semaphore);
        let permit = match deadline {
            None => semaphore.try_acquire_owned().ok(),
            Some(deadline) => tokio::time::timeout_at(deadline, semaphore.acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
        };
        // A closed semaphore (never closed today) admits nothing either: same answer.
        permit.ok_or(ConnectError::LimitReached {
            scope: self.scope,
            max: self.max,
        })
    }
}

// === impl AdmissionLayer ===

impl AdmissionLayer {
    /// A route's admission: its `max_connections`, `client_rate_limit` and `on_limit`, plus the
    /// server-wide limit (`None` when `Config::max_connections` is unset). A limit that is not
    /// configured is not checked; with none at all the layer only forwards. Build it once per
    /// route: the route's count and client buckets live in the layer, shared by its services.
    pub fn for_route(route: &RouteConfig, global: Option<ConnectionLimit>) -> Self {
        Self::new(
            route.on_limit,
            route.client_rate_limit,
            route.max_connections.map(ConnectionLimit::route),
            global,
        )
    }

    pub fn new(
        on_limit: OnLimit,
        client_rate: Option<RateLimitConfig>,
        route: Option<ConnectionLimit>,
        global: Option<ConnectionLimit>,
    ) -> Self {
        Self {
            limits: Arc::new(Limits {
                client_rate: client_rate.map(ClientRateLimit::new),
                route,
                global,
                on_limit,
            }),
        }
    }

    /// The per-client buckets, to observe their size.
    pub fn client_rate(&self) -> Option<&ClientRateLimit> {
        self.limits.client_rate.as_ref()
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            limits: Arc::clone(&self.limits),
            inner,
        }
    }
}

// === impl Admission ===

impl Limits {
    async fn admit(
        &self,
        client: IpAddr,
        deadline: Option<Instant>,
    ) -> Result<Vec<OwnedSemaphorePermit>, ConnectError> {
        if let Some(rate) = &self.client_rate {
            rate.acquire(client, deadline).await?;
        }
        // `Vec::new` allocates only once a limit gives a permit: unlimited routes pay nothing.
        let mut permits = Vec::new();
        for limit in [&self.route, &self.global].into_iter().flatten() {
            permits.push(limit.acquire(deadline).await?);
        }
        Ok(permits)
    }
}

impl<S> Service<ConnectRequest> for Admission<S>
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
        let limits = Arc::clone(&self.limits);
        let deadline = queue_deadline(limits.on_limit);
        let inner = self.inner.clone();
        Box::pin(async move {
            let permits = limits.admit(request.client.ip(), deadline).await?;
            // A client that gave up while queued must not cost a member a connection.
            if deadline.is_some() && request.client_left() {
                return Err(ConnectError::ClientGone);
            }
            let mut connected = inner.oneshot(request).await?;
            connected.permits.extend(permits);
            Ok(connected)
        })
    }
}

#[cfg(test)]
mod tests;
