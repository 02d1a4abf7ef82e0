//! sluice-toxiproxy: the fault injector of sluice's chaos suite.
//!
//! It serves the Toxiproxy v2 HTTP API, so the suite runs unchanged against this server or a real
//! Toxiproxy (`TOXIPROXY_URL`). Proxies and toxics are implemented here on tokio; the `noxious`
//! crate was evaluated and not used (see this crate's README for why).
//!
//! ```text
//! api/      HTTP routes and handlers (axum): parse, call the store, shape Toxiproxy's JSON
//! store     proxies by name: create, update, delete, populate, reset
//! proxy     one proxy: listener lifecycle (enabled = listening), accept loop, its connections
//! plug      extension: connect_timeout's full accept queue (handshakes stop, the port stays bound)
//! link/     one connection: dial, both directions through the toxic chains, close or reset
//!           direction/ (the chain walk; stages.rs: multi-step toxics), effects.rs (arithmetic)
//! toxic/    toxic types and attributes (kind.rs), one proxy's toxic set (set.rs)
//! addr      address resolution and the loopback-only policy
//! error     the API's errors, with Toxiproxy's messages and status codes
//! ```
//!
//! [`run`] is what `main` and the tests both call.

pub mod addr;
pub mod api;
pub mod error;
pub mod link;
mod plug;
pub mod proxy;
pub mod store;
pub mod toxic;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use addr::AddrPolicy;
pub use store::Store;

/// Server settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    /// Which addresses proxies may bind and dial.
    pub policy: AddrPolicy,
}

/// Serves the API on `listener` until `shutdown` completes, then stops every proxy (closing
/// their listeners and connections) before returning.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = Arc::new(Store::new(config.policy));
    let served = axum::serve(listener, api::router(store.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    store.shutdown().await;
    served
}
