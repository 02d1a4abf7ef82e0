//! The admin HTTP API: liveness, status, member drain/enable and the Prometheus scrape.
//!
//! - `server`: the listener, the router and its JSON errors, `/healthz` and `/metrics`.
//! - `status`: `GET /status`, the JSON view of routes, pools and members.
//! - `actions`: `POST /pools/{pool}/members/{member}/{drain,enable}`.
//!
//! The API reads and flips the same atomics the hot path reads (`Member::set_drained`), so an
//! action takes effect on the next pick without any lock or message. It owns no state of its
//! own beyond [`AdminState`], a read-only view of what [`crate::Server`] built. The listener is
//! loopback-only unless the config says `allow_remote` (checked by config validation); there is
//! no authentication, so a remote admin listener belongs behind a firewall.
//!
//! Reload is not served here yet: it needs a runtime that can be swapped while serving, and
//! [`AdminState`] will then have to be swapped with it (an `ArcSwap` around it), since it holds
//! the pools and routes of the config it was built from.

mod actions;
mod server;
mod status;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::{Config, PoolConfig};
use crate::server::Shutdown;
use crate::telemetry;
use crate::upstream::Pool;

pub use server::{bind, router, serve};

/// What the admin handlers see of a running server.
#[derive(Debug)]
pub struct AdminState {
    routes: Vec<RouteView>,
    /// In config order (sorted by name), so `/status` and error messages list them stably.
    pools: Vec<PoolView>,
    shutdown: Shutdown,
    metrics: PrometheusHandle,
}

#[derive(Debug)]
struct RouteView {
    name: String,
    listen: Vec<SocketAddr>,
    pool: String,
}

#[derive(Debug)]
struct PoolView {
    config: PoolConfig,
    pool: Arc<Pool>,
}

// === impl AdminState ===

impl AdminState {
    /// A view of `config`'s routes and pools. `listen` holds each route's bound addresses (the
    /// kernel's ports where the config said 0), by route name; a route missing from it is listed
    /// with its configured addresses. Installs the metrics recorder if nothing did yet.
    pub fn new(
        config: &Config,
        pools: &HashMap<String, Arc<Pool>>,
        listen: &HashMap<String, Vec<SocketAddr>>,
        shutdown: Shutdown,
    ) -> Self {
        let routes = config
            .routes
            .iter()
            .map(|r| RouteView {
                name: r.name.clone(),
                listen: listen
                    .get(&r.name)
                    .cloned()
                    .unwrap_or_else(|| r.listen.clone()),
                pool: r.pool.clone(),
            })
            .collect();
        let pools = config
            .pools
            .iter()
            .filter_map(|p| {
                let pool = Arc::clone(pools.get(&p.name)?);
                Some(PoolView {
                    config: p.clone(),
                    pool,
                })
            })
            .collect();
        Self {
            routes,
            pools,
            shutdown,
            metrics: telemetry::metrics::install(),
        }
    }

    fn pool(&self, name: &str) -> Option<&PoolView> {
        self.pools.iter().find(|p| p.config.name == name)
    }

    /// `a, b, c`: the defined pools, for error messages.
    fn pool_names(&self) -> String {
        let names: Vec<&str> = self.pools.iter().map(|p| p.config.name.as_str()).collect();
        names.join(", ")
    }
}
