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
//! `POST /reload` asks the server's [`Reloader`]; the server then swaps the [`View`] here.

mod actions;
mod server;
mod status;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::{Config, PoolConfig};
use crate::route::RouteStats;
use crate::server::{Reloader, Shutdown};
use crate::telemetry;
use crate::upstream::Pool;

pub use server::{bind, router, serve};

/// What the admin handlers see of a running server. The routes-and-pools view is swapped
/// whole on each reload, so a request sees one config, never half of two.
#[derive(Debug)]
pub struct AdminState {
    view: ArcSwap<View>,
    shutdown: Shutdown,
    metrics: PrometheusHandle,
    /// Set when the server can reload (it has a config file); `POST /reload` uses it.
    reloader: Option<Reloader>,
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
    pub fn new(view: View, shutdown: Shutdown, reloader: Option<Reloader>) -> Self {
        Self {
            view: ArcSwap::from_pointee(view),
            shutdown,
            metrics: telemetry::metrics::install(),
            reloader,
        }
    }

    /// Replaces the routes-and-pools view (after a reload).
    pub fn set_view(&self, view: View) {
        self.view.store(Arc::new(view));
    }

    fn view(&self) -> Arc<View> {
        self.view.load_full()
    }
}
