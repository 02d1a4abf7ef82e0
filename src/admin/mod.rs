//! The admin HTTP API: liveness, status, member drain/enable and the Prometheus scrape.
//!
//! - `server`: the listener (connection cap, header timeout), the router and its JSON errors,
//!   `/healthz` and `/metrics`.
//! - `guard`: what a request passes before a handler: `Host`, cross-site `Origin`, the bearer
//!   token, the body limit; and JSON on every error.
//! - `status`: `GET /status`, the JSON view of routes, pools and members.
//! - `actions`: `POST /pools/{pool}/members/{member}/{drain,enable}` and `POST /reload`.
//! - `handles`: what the API needs of the server, as handles the server wires in.
//!
//! The API reads and flips the same atomics the hot path reads (`Member::set_drained`), so an
//! action takes effect on the next pick without any lock or message. It owns no state of its
//! own beyond [`AdminState`]. The listener is loopback-only unless the config says
//! `allow_remote` (checked by config validation); a bearer token (`token_file`) is optional,
//! so a remote admin listener without one belongs behind a firewall.
//!
//! Dependencies point one way: the server builds an [`AdminState`] from a [`SharedView`] it
//! publishes to, a [`Draining`] flag and, when it has a config file, a [`Reload`] handle, and
//! this module imports nothing of the server. Nothing the server holds points back at the
//! admin state, so both are freed when a run ends.

mod actions;
mod guard;
mod handles;
mod server;
mod status;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::{Config, PoolConfig};
use crate::route::RouteStats;
use crate::telemetry;
use crate::upstream::Pool;

pub use guard::{BODY_LIMIT, BODY_TIMEOUT};
pub use handles::{Draining, Reload, ReloadFailure, ReloadOutcome, SharedView};
pub use server::{HEADER_TIMEOUT, Listener, adopt, bind, router, serve};

/// What the admin handlers see of a running server: the handles it was given.
pub struct AdminState {
    view: SharedView,
    draining: Draining,
    metrics: PrometheusHandle,
    /// Set when the server can reload (it has a config file); `POST /reload` uses it.
    reload: Option<Arc<dyn Reload>>,
}

/// Routes and pools of the running config.
#[derive(Debug)]
pub struct View {
    routes: Vec<RouteView>,
    /// In config order (sorted by name), so `/status` and error messages list them stably.
    pools: Vec<PoolView>,
}

#[derive(Debug)]
struct RouteView {
    name: String,
    listen: Vec<SocketAddr>,
    pool: String,
    stats: Arc<RouteStats>,
}

#[derive(Debug)]
struct PoolView {
    config: PoolConfig,
    pool: Arc<Pool>,
}

/// What the view is built from for one route: its bound addresses (the kernel's ports where
/// the config said 0) and its counters.
#[derive(Clone, Debug)]
pub struct RouteInfo {
    pub listen: Vec<SocketAddr>,
    pub stats: Arc<RouteStats>,
}

// === impl View ===

impl View {
    pub fn new(
        config: &Config,
        pools: &HashMap<String, Arc<Pool>>,
        routes: &HashMap<String, RouteInfo>,
    ) -> Self {
        let routes = config
            .routes
            .iter()
            .map(|r| {
                let info = routes.get(&r.name);
                RouteView {
                    name: r.name.clone(),
                    listen: info.map_or_else(|| r.listen.clone(), |i| i.listen.clone()),
                    pool: r.pool.clone(),
                    stats: info.map(|i| Arc::clone(&i.stats)).unwrap_or_default(),
                }
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
        Self { routes, pools }
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

// === impl AdminState ===

impl AdminState {
    /// `reload`: `None` when there is nothing to reload from (`POST /reload` answers 409).
    pub fn new(view: SharedView, draining: Draining, reload: Option<Arc<dyn Reload>>) -> Self {
        Self {
            view,
            draining,
            metrics: telemetry::metrics::install(),
            reload,
        }
    }

    fn view(&self) -> Arc<View> {
        self.view.load()
    }
}

impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("view", &self.view)
            .field("draining", &self.draining)
            .field("reload", &self.reload.is_some())
            .finish_non_exhaustive()
    }
}
