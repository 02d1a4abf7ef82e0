//! The running forwarder: builds pools, health checkers and listeners from a [`Config`] and
//! runs them until shutdown.
//!
//! [`Server::bind`] binds every listen address before anything runs, so a port conflict fails
//! startup as a whole and tests can read back the ports the kernel chose for `:0`.
//! [`Server::run`] then serves until [`Shutdown::stop`]: listeners close at once (new connects
//! are refused), live connections get `shutdown_grace`, and whatever is still open after that,
//! or after [`Shutdown::cut_now`], is cut and counted.
//!
//! With an `[admin]` section, `bind` also binds the admin listener (and installs the metrics
//! recorder), and `run` serves it until the drain is over, so `/healthz` reports the drain.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::connect::{self, ConnectionLimit};
use crate::health;
use crate::relay::RelaySettings;
use crate::route::{self, RouteContext};
use crate::upstream::Pool;

/// Startup failures.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("route {route}: cannot listen on {addr}: {source}")]
    Bind {
        route: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("admin: cannot listen on {addr}: {source}")]
    AdminBind { addr: SocketAddr, source: io::Error },
}

/// The two signals that end a run: stop accepting (graceful), and cut live connections now.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    cut_now: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops accepting and starts the grace period.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Ends the grace period at once (a second SIGTERM).
    pub fn cut_now(&self) {
        self.stop.cancel();
        self.cut_now.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// What a finished run reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Live connections cut because the grace period ran out.
    pub cut: usize,
}

struct BoundRoute {
    context: Arc<RouteContext>,
    listeners: Vec<TcpListener>,
}

/// A forwarder whose listeners are bound but not yet accepting.
pub struct Server {
    config: Config,
    pools: HashMap<String, Arc<Pool>>,
    routes: Vec<BoundRoute>,
    cut: CancellationToken,
    cut_count: Arc<AtomicUsize>,
    /// The config's seed, or one drawn at startup; every random decision derives from it.
    seed: u64,
    /// Bound when the config has `[admin]`.
    admin: Option<TcpListener>,
}

// === impl Server ===

impl Server {
    /// Builds pools and binds every listen address of every route.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        if config.admin.is_some() {
            // First of all: pools export their breakers' state as they are built, and the
            // facade drops whatever arrives before a recorder is installed.
            crate::telemetry::metrics::install();
        }
        let seed = config.seed.unwrap_or_else(rand::random);
        let pools: HashMap<String, Arc<Pool>> = config
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.name.clone(),
                    Arc::new(Pool::new(p, seed.wrapping_add(i as u64))),
                )
            })
            .collect();
        let cut = CancellationToken::new();
        let cut_count = Arc::new(AtomicUsize::new(0));
        let global = config.max_connections.map(ConnectionLimit::global);
        let mut routes = Vec::new();
        for r in &config.routes {
            let pool = Arc::clone(&pools[&r.pool]);
            let context = Arc::new(RouteContext {
                name: r.name.as_str().into(),
                connect: connect::stack(pool, r, global.clone(), seed),
                relay: RelaySettings {
                    idle_timeout: r.idle_timeout,
                    buffer_size: r.relay.buffer_size,
                },
                cut: cut.clone(),
                cut_count: Arc::clone(&cut_count),
                early_close_attempts: r.retry.attempts,
            });
            let mut listeners = Vec::new();
            for &addr in &r.listen {
                let listener =
                    route::bind(addr, r.backlog).map_err(|source| ServerError::Bind {
                        route: r.name.clone(),
                        addr,
                        source,
                    })?;
                listeners.push(listener);
            }
            routes.push(BoundRoute { context, listeners });
        }
        let admin = match &config.admin {
            Some(a) => {
                let listener = admin::bind(a.listen).map_err(|source| ServerError::AdminBind {
                    addr: a.listen,
                    source,
                })?;
                Some(listener)
            }
            None => None,
        };
        Ok(Self {
            config,
            pools,
            routes,
            cut,
            cut_count,
            seed,
            admin,
        })
    }

    /// The addresses a route is listening on (with the kernel's port where the config said 0).
    pub fn local_addrs(&self, route: &str) -> Vec<SocketAddr> {
        self.routes
            .iter()
            .filter(|r| &*r.context.name == route)
            .flat_map(|r| r.listeners.iter().filter_map(|l| l.local_addr().ok()))
            .collect()
    }

    /// The admin listener's address (with the kernel's port where the config said 0), when the
    /// config has `[admin]`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A running pool by name, to observe member state.
    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools.get(name).cloned()
    }

    /// Serves until `shutdown` stops it, then drains; returns how many connections were cut.
    pub async fn run(self, shutdown: Shutdown) -> RunSummary {
        let background = CancellationToken::new();
        let mut checkers = Vec::new();
        let seed = self.seed;
        for pool_config in &self.config.pools {
            let Some(health) = &pool_config.health else {
                continue;
            };
            let health = Arc::new(health.clone());
            let pool = &self.pools[&pool_config.name];
            for member in pool.members() {
                let member_seed =
                    seed ^ ((checkers.len() as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                checkers.push(health::spawn_checker(
                    Arc::clone(pool.name()),
                    Arc::clone(member),
                    Arc::clone(&health),
                    member_seed,
                    background.child_token(),
                ));
            }
        }

        // The admin API outlives the accept loops and stops with the background tasks, so
        // `/healthz` answers "draining" for the whole grace period.
        let admin = self.admin.map(|listener| {
            let listen = self
                .routes
                .iter()
                .map(|r| {
                    let addrs = r.listeners.iter().filter_map(|l| l.local_addr().ok());
                    (r.context.name.to_string(), addrs.collect())
                })
                .collect();
            let state = AdminState::new(&self.config, &self.pools, &listen, shutdown.clone());
            tokio::spawn(admin::serve(
                listener,
                Arc::new(state),
                background.child_token(),
            ))
        });

        let connections = TaskTracker::new();
        let accept_loops = TaskTracker::new();
        for route in self.routes {
            for listener in route.listeners {
                if let Ok(addr) = listener.local_addr() {
                    info!(route = %route.context.name, %addr, "listening");
                }
                accept_loops.spawn(route::accept_loop(
                    listener,
                    Arc::clone(&route.context),
                    shutdown.stop.clone(),
                    connections.clone(),
                ));
            }
        }
        accept_loops.close();

        shutdown.stop.cancelled().await;
        // Every listener closes before the grace period starts, so no client is accepted into a
        // draining process.
        accept_loops.wait().await;
        connections.close();
        let live = connections.len();
        let grace = self.config.shutdown_grace;
        info!(live, grace = ?grace, "shutting down: stopped accepting, draining live connections");
        tokio::select! {
            () = connections.wait() => {}
            () = tokio::time::sleep(grace) => {
                warn!(remaining = connections.len(), "shutdown grace elapsed; cutting live connections");
            }
            () = shutdown.cut_now.cancelled() => {
                warn!(remaining = connections.len(), "second shutdown signal; cutting live connections now");
            }
        }
        self.cut.cancel();
        connections.wait().await;
        background.cancel();
        for checker in checkers {
            let _ = checker.await;
        }
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        let cut = self.cut_count.load(Ordering::Relaxed);
        info!(cut, "shutdown complete");
        RunSummary { cut }
    }
}
