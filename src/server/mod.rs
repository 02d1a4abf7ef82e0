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
//!
//! While running, a [`Reloader`] moves the server to a new config (`runtime.rs` applies it,
//! `reload.rs` reads, validates and reports). The config that runs is the file with its DNS
//! entries expanded into members (`crate::dns`): `bind` resolves them once, and a resolver
//! task applies each changed answer through the same [`Reloader`].
//!
//! The admin API depends on none of this: `run` wires in its handles (the [`Reloader`]'s
//! [`admin::SharedView`], an [`admin::Draining`] on the stop signal, the [`Reloader`] as
//! [`admin::Reload`]), and when the run ends every task holding them has ended, so the whole
//! server state is freed.

mod reload;
mod runtime;
pub mod upgrade;
mod workers;

pub use crate::admin::ReloadOutcome;
pub use reload::{ReloadError, Reloader};
pub use upgrade::{Handoff, Inherited};
pub use workers::Workers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use self::runtime::{Runtime, Shared};
use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::dns::{self, Dns};
use crate::upstream::Pool;

/// Startup failures.
#[derive(Debug, Error)]
pub enum ServerError {
    // The io error is part of the message, not a `source`: printed as an error chain it would
    // otherwise appear twice.
    #[error("route {route}: cannot listen on {addr}: {error}")]
    Bind {
        route: String,
        addr: SocketAddr,
        error: io::Error,
    },
    #[error("admin: cannot listen on {addr}: {error}")]
    AdminBind { addr: SocketAddr, error: io::Error },
}

/// The two signals that end a run: stop accepting (graceful), and cut live connections now.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    cut_now: CancellationToken,
    /// Set before `stop` when a new binary took over the listening sockets (SIGUSR2).
    handed_over: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops accepting and starts the grace period.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops after a binary upgrade: the new process already accepts on the same sockets, so
    /// there is no `shutdown_delay` (no load balancer needs to move away) and the admin
    /// listener stops at once (the new process answers `/healthz`); live connections drain
    /// for `shutdown_grace` as after [`Shutdown::stop`].
    pub fn hand_over(&self) {
        self.handed_over.cancel();
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

/// A forwarder whose listeners are bound but not yet accepting.
pub struct Server {
    reloader: Reloader,
    shared: Arc<Shared>,
    /// Bound when the config has `[admin]`.
    admin: Option<admin::Listener>,
    /// `--watch`: poll the config file at this interval and reload on change.
    watch: Option<Duration>,
}

// === impl Server ===

impl Server {
    /// Builds pools and binds every listen address of every route (and the admin listener).
    /// Accept loops and connections run on the runtime that calls [`Server::run`].
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        Self::bind_on(config, Vec::new()).await
    }

    /// [`Server::bind`], with the data plane on `workers` (see [`Workers`]): every route gets
    /// an accept loop on each worker, and a connection stays on the worker that accepted it.
    /// The control plane (health checks, admin, reloads) stays on the runtime that calls
    /// [`Server::run`]. No workers: everything runs there.
    pub async fn bind_on(
        config: Config,
        workers: Vec<tokio::runtime::Handle>,
    ) -> Result<Self, ServerError> {
        Self::bind_inheriting(config, workers, Inherited::default()).await
    }

    /// [`Server::bind_on`] in a process started by a binary upgrade: listen addresses (and
    /// the admin one) with sockets in `inherited` use them instead of binding; inherited
    /// sockets the config does not listen on are closed.
    pub async fn bind_inheriting(
        config: Config,
        workers: Vec<tokio::runtime::Handle>,
        mut inherited: Inherited,
    ) -> Result<Self, ServerError> {
        let admin = match &config.admin {
            Some(a) => {
                // Before anything can emit: the facade drops what arrives before a recorder,
                // and pools set their breakers' gauges as they are built.
                crate::telemetry::metrics::install();
                // Reload series exist from the start, so rate() sees the first failure, and
                // the initial load counts as the last successful one.
                use crate::telemetry::metrics as m;
                metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => "ok").increment(0);
                metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => "error").increment(0);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                metrics::gauge!(m::CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS)
                    .set(now.as_secs_f64());
                let bind_error = |error| ServerError::AdminBind {
                    addr: a.listen,
                    error,
                };
                let listener = match inherited.take_admin(a.listen) {
                    Some(socket) => admin::adopt(a, socket).map_err(bind_error)?,
                    None => admin::bind(a).map_err(bind_error)?,
                };
                Some(listener)
            }
            None => None,
        };
        let seed = config.seed.unwrap_or_else(rand::random);
        let shared = Arc::new(Shared {
            cut: CancellationToken::new(),
            cut_count: Arc::new(AtomicUsize::new(0)),
            connections: TaskTracker::new(),
            accept_loops: TaskTracker::new(),
            stop: CancellationToken::new(),
            background: CancellationToken::new(),
            workers,
        });
        let admin_listen = config.admin.as_ref().map(|a| a.listen);
        // One round of DNS before the first connection, so entries that resolve start as
        // members; one that does not has none yet (never an error) and is asked again by the
        // resolver task. Bounded by `[dns] timeout` (two attempts): the queries run at once.
        let dns = Arc::new(Dns::new(&config.dns));
        dns.resolve_due(&config.dns_queries()).await;
        let expanded = dns::expand(&config, &dns.answers());
        let mut runtime = Runtime::bind(expanded, seed, Arc::clone(&shared), inherited)?;
        if let (Some(listen), Some(listener)) = (admin_listen, &admin) {
            runtime.set_admin_handoff(listen, listener);
        }
        Ok(Self {
            reloader: Reloader::new(runtime, config, dns),
            shared,
            admin,
            watch: None,
        })
    }

    /// Reloads the config file whenever it changes, checking every `every`.
    pub fn watch(mut self, every: Duration) -> Self {
        self.watch = Some(every);
        self
    }

    /// The addresses a route is listening on (with the kernel's port where the config said 0).
    pub fn local_addrs(&self, route: &str) -> Vec<SocketAddr> {
        self.runtime_now().local_addrs(route)
    }

    /// The admin listener's address (with the kernel's port where the config said 0), when the
    /// config has `[admin]`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A pool by name, to observe member state.
    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.runtime_now().pools.get(name).cloned()
    }

    /// The handle that reloads this server once it runs (SIGHUP, `POST /reload`, tests).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The handle a binary upgrade (SIGUSR2) takes the listening sockets from.
    pub fn handoff(&self) -> Handoff {
        Handoff::new(self.reloader.clone())
    }

    /// Before `run` nothing else holds the runtime, so the lock is free.
    fn runtime_now(&self) -> tokio::sync::MutexGuard<'_, Runtime> {
        self.reloader
            .runtime()
            .try_lock()
            .expect("the runtime is not shared before run")
    }

    /// Serves until `shutdown` stops it, then drains; returns how many connections were cut.
    pub async fn run(self, shutdown: Shutdown) -> RunSummary {
        let shared = self.shared;
        self.reloader.runtime().lock().await.start();
        // The admin API outlives the accept loops and stops with the background tasks, so
        // `/healthz` answers "draining" for the whole grace period.
        let admin_stop = shared.background.child_token();
        let admin = self.admin.map(|listener| {
            let reload = self
                .reloader
                .has_file()
                .then(|| Arc::new(self.reloader.clone()) as Arc<dyn admin::Reload>);
            let draining = admin::Draining::new(shutdown.stop.clone());
            let state = Arc::new(AdminState::new(self.reloader.view(), draining, reload));
            tokio::spawn(admin::serve(listener, state, admin_stop.clone()))
        });
        let resolver = tokio::spawn(
            self.reloader
                .clone()
                .keep_dns_current(shared.background.child_token()),
        );
        let watcher = self.watch.map(|every| {
            let stop = shared.background.child_token();
            tokio::spawn(self.reloader.clone().watch(every, stop))
        });

        shutdown.stop.cancelled().await;
        let handed_over = shutdown.handed_over.is_cancelled();
        if handed_over {
            // The new process serves the admin socket too: no 503 from this one.
            admin_stop.cancel();
        }
        // `/healthz` already answers 503 (it reads `shutdown`); with a delay, listeners keep
        // accepting meanwhile so a load balancer polling it can move traffic first.
        let delay = self.reloader.runtime().lock().await.config.shutdown_delay;
        if !delay.is_zero() && !handed_over {
            info!(delay = ?delay, "draining: /healthz answers 503; still accepting for the shutdown delay");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cut_now.cancelled() => {}
            }
        }
        shared.stop.cancel();
        self.reloader.runtime().lock().await.close_handoff();
        // Every listener closes before the grace period starts, so no client is accepted into a
        // draining process.
        shared.accept_loops.close();
        shared.accept_loops.wait().await;
        let connections = &shared.connections;
        connections.close();
        let live = connections.len();
        // A reload may have changed the grace since startup: the running config's counts.
        let grace = self.reloader.runtime().lock().await.config.shutdown_grace;
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
        shared.cut.cancel();
        connections.wait().await;
        shared.background.cancel();
        self.reloader.runtime().lock().await.join_checkers().await;
        let _ = resolver.await;
        for task in [admin, watcher].into_iter().flatten() {
            let _ = task.await;
        }
        let cut = shared.cut_count.load(Ordering::Relaxed);
        info!(cut, "shutdown complete");
        RunSummary { cut }
    }
}
