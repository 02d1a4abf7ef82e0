//! The connect stack: how a new client connection gets an upstream socket.
//!
//! Built once per route with tower. The order, outermost first, and why each layer sits there:
//!
//! 1. `Admission` — connection counts (global, route) and the per-client rate; outermost so a
//!    refused connection costs nothing below and its permits span the connect and the relay.
//! 2. `RateLimit` — the route-wide new-connection rate; under Admission so only admitted
//!    connections spend a token, above Retry so a redial does not spend another.
//! 3. `Retry` — the one place that decides every redial (refused, reset, timeout, breaker
//!    race, early close): at once to another member, after a backoff only to one already
//!    tried; above Select so every attempt picks again, excluding the members that already
//!    failed this client.
//! 4. `EarlyClose` — an attempt succeeds only once the member has not hung up within its
//!    `early_close` window while the client is silent; under Retry so an early close is an
//!    attempt failure like any other, above Select so the redial picks again.
//! 5. `Select` — picks a member from the pool (tier policy + balancer; down, drained, open
//!    and full members are not eligible) and counts it active from here on.
//! 6. `CircuitBreaker` — per member; admits (or refuses a race with an opening breaker) and
//!    learns from the outcome of the attempt below it.
//! 7. `ConnectTimeout` — bounds one attempt; right above the connect so it times the member
//!    alone and names it in the error.
//! 8. `TcpConnect` — the handshake itself, with `TCP_NODELAY` and the PROXY header.
//!
//! The stack never reads or writes the client socket; it may look at it (a `peek`) to see
//! whether the client has spoken or left ([`ConnectRequest::socket`]). It returns an upstream [`Connected`] (or a typed
//! [`ConnectError`]) and the route's connection task hands both sockets to the relay.

mod admission;
mod breaker;
mod client_limit;
mod clock;
mod early_close;
mod error;
pub mod proxy_protocol;
mod rate_limit;
mod retry;
mod select;
pub(crate) mod socket_options;
mod tcp;
#[cfg(test)]
mod testing;
mod timeout;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tower::ServiceBuilder;

pub use admission::{Admission, AdmissionLayer, ConnectionLimit};
pub use breaker::{CircuitBreaker, CircuitBreakerLayer};
pub use client_limit::{CLEANUP_EVERY, ClientRateLimit};
pub use clock::{TokioClock, TokioInstant};
pub use early_close::{EarlyClose, EarlyCloseLayer};
pub use error::{ConnectError, Fault, LimitScope, MemberId};
pub use rate_limit::{RateLimit, RateLimitLayer};
pub use retry::{Retry, RetryLayer};
pub use select::{Select, SelectLayer};
pub use tcp::TcpConnect;
pub use timeout::{ConnectTimeout, ConnectTimeoutLayer};

use crate::config::RouteConfig;
use crate::upstream::{ActiveGuard, Member, Pool};

/// A client waiting for an upstream.
#[derive(Clone, Debug)]
pub struct ConnectRequest {
    pub client: SocketAddr,
    /// The sluice address the client connected to (the PROXY header's destination).
    pub local: SocketAddr,
    /// Member indexes already tried for this client (skipped by `Select`).
    pub tried: Vec<usize>,
    /// Members picked for this client so far, shared by every retry's copy of the request:
    /// the access log reports it whether the connection succeeded or not.
    pub attempts: Arc<AtomicU32>,
    /// The client's socket, shared so the stack can see whether the client has spoken (no
    /// redial after an early close then) or left (no dial after a wait). Never read from or
    /// written to. `None` in tests of the stack alone: no such checks.
    pub socket: Option<Arc<TcpStream>>,
}

impl ConnectRequest {
    pub fn new(client: SocketAddr, local: SocketAddr) -> Self {
        Self {
            client,
            local,
            tried: Vec::new(),
            attempts: Arc::default(),
            socket: None,
        }
    }

    /// The request of the client on `socket`, which the stack may watch (see `socket`).
    pub fn with_socket(mut self, socket: Arc<TcpStream>) -> Self {
        self.socket = Some(socket);
        self
    }

    /// Whether the client is known to have left (see [`early_close::client_left`]).
    pub(crate) fn client_left(&self) -> bool {
        self.socket.as_deref().is_some_and(early_close::client_left)
    }

    /// Connect attempts made so far (members picked).
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }
}

/// One attempt at one member; the guard already counts it as active.
#[derive(Debug)]
pub struct MemberRequest {
    pub guard: ActiveGuard,
    pub client: SocketAddr,
    pub local: SocketAddr,
}

/// A connected upstream.
#[derive(Debug)]
pub struct Connected {
    pub stream: TcpStream,
    /// Keeps the member's active count until the relay ends.
    pub guard: ActiveGuard,
    /// Handshake time of the attempt that succeeded.
    pub connect_time: Duration,
    /// Admission permits (global, route connection limits) held until the relay ends.
    pub permits: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl Connected {
    pub fn member(&self) -> &Arc<Member> {
        self.guard.member()
    }
}

/// The concrete stack type of a route.
pub type ConnectStack =
    Admission<RateLimit<Retry<EarlyClose<Select<CircuitBreaker<ConnectTimeout<TcpConnect>>>>>>>;

/// A route's limit layers. Their counters and token buckets live behind `Arc`s, so a reload
/// that keeps the route's limit settings hands the same `RouteLimits` to the new stack: live
/// connections keep counting and buckets keep their level.
#[derive(Clone, Debug)]
pub struct RouteLimits {
    admission: AdmissionLayer,
    rate: RateLimitLayer,
    /// The settings they were built from, to tell whether a reload may keep them.
    settings: LimitSettings,
}

#[derive(Clone, Debug, PartialEq)]
struct LimitSettings {
    max_connections: Option<usize>,
    rate_limit: Option<crate::config::RateLimitConfig>,
    client_rate_limit: Option<crate::config::RateLimitConfig>,
    on_limit: crate::config::OnLimit,
    /// The global limit is shared by every route: a new one means new layers.
    global: Option<usize>,
}

impl RouteLimits {
    /// The limits of `route` under the process-wide `global` limit.
    pub fn new(route: &RouteConfig, global: Option<ConnectionLimit>) -> Self {
        Self {
            settings: LimitSettings::of(route, global.as_ref()),
            admission: AdmissionLayer::for_route(route, global),
            rate: RateLimitLayer::for_route(route),
        }
    }

    /// Whether these limits can serve `route` (after a reload) as they are.
    pub fn fits(&self, route: &RouteConfig, global: Option<&ConnectionLimit>) -> bool {
        self.settings == LimitSettings::of(route, global)
    }
}

impl LimitSettings {
    fn of(route: &RouteConfig, global: Option<&ConnectionLimit>) -> Self {
        Self {
            max_connections: route.max_connections,
            rate_limit: route.rate_limit,
            client_rate_limit: route.client_rate_limit,
            on_limit: route.on_limit,
            global: global.map(ConnectionLimit::max),
        }
    }
}

/// Builds the connect stack of a route over its pool, in the order the module doc gives.
/// `global` is the process-wide connection limit, shared by every route; `seed` drives the
/// backoff jitter.
pub fn stack(
    pool: Arc<Pool>,
    route: &RouteConfig,
    limits: &RouteLimits,
    seed: u64,
    upstream_socket: crate::config::SocketOptions,
) -> ConnectStack {
    ServiceBuilder::new()
        .layer(limits.admission.clone())
        .layer(limits.rate.clone())
        .layer(RetryLayer::new(
            route.name.as_str().into(),
            route.retry,
            seed,
        ))
        .layer(EarlyCloseLayer)
        .layer(SelectLayer::new(pool))
        .layer(CircuitBreakerLayer::new())
        .layer(ConnectTimeoutLayer::new(route.connect_timeout))
        .service(TcpConnect::new(route.proxy_protocol, upstream_socket))
}
