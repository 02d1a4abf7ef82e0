//! The connect stack: how a new client connection gets an upstream socket.
//!
//! Built once per route with tower, outermost first:
//!
//! 1. `Select` — picks a member from the pool (tier policy + balancer); outermost so each
//!    later retry can pick again.
//! 2. `ConnectTimeout` — bounds one attempt; right above the connect so it times the member
//!    alone and names it in the error.
//! 3. `TcpConnect` — the handshake itself, with `TCP_NODELAY`.
//!
//! The stack never touches the client socket: it returns an upstream [`Connected`] (or a typed
//! [`ConnectError`]) and the route's connection task hands both sockets to the relay.

mod breaker;
mod error;
mod retry;
mod select;
mod tcp;
mod timeout;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tower::ServiceBuilder;

pub use breaker::{CircuitBreaker, CircuitBreakerLayer};
pub use error::{ConnectError, Fault, LimitScope, MemberId};
pub use retry::{Retry, RetryLayer};
pub use select::{Select, SelectLayer};
pub use tcp::TcpConnect;
pub use timeout::{ConnectTimeout, ConnectTimeoutLayer};

use crate::upstream::{ActiveGuard, Member, Pool};

/// A client waiting for an upstream.
#[derive(Clone, Debug)]
pub struct ConnectRequest {
    pub client: SocketAddr,
    /// The sluice address the client connected to (the PROXY header's destination).
    pub local: SocketAddr,
    /// Member indexes already tried for this client (skipped by `Select`).
    pub tried: Vec<usize>,
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
pub type ConnectStack = Select<ConnectTimeout<TcpConnect>>;

/// Builds the connect stack of a route over its pool.
pub fn stack(pool: Arc<Pool>, connect_timeout: Duration) -> ConnectStack {
    ServiceBuilder::new()
        .layer(SelectLayer::new(pool))
        .layer(ConnectTimeoutLayer::new(connect_timeout))
        .service(TcpConnect)
}
