//! The live state of a running server and how a new config replaces it.
//!
//! [`Runtime`] owns what a config turned into: listeners (by listen address), pools, route
//! contexts and one health task per member. [`Runtime::apply`] moves it to a new validated
//! config following the diff rules of `config::reload`: a kept listen address keeps its socket
//! and only swaps the route it serves; pools are rebuilt adopting member state by name; health
//! tasks whose member and settings are unchanged keep running; what was removed stops. Live
//! connections hold their own route context and members, so nothing here touches them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::ServerError;
use super::upgrade::{Entry, Inherited, UpgradeError};
use crate::admin::{RouteInfo, View};
use crate::config::reload::{ConfigDiff, diff};
use crate::config::{Config, HealthConfig, RouteConfig};
use crate::connect::{self, ConnectionLimit, RouteLimits};
use crate::health;
use crate::relay::RelaySettings;
use crate::resources::{self, Capacity};
use crate::route::{self, RouteContext, RouteStats};
use crate::upstream::Pool;

/// A listen address as configured. Port 0 asks the kernel for any port, so two routes may
/// both say `127.0.0.1:0`: such listeners are told apart by route.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ListenKey {
    addr: SocketAddr,
    route: Option<String>,
}

impl ListenKey {
    fn new(addr: SocketAddr, route: &str) -> Self {
        let route = (addr.port() == 0).then(|| route.to_string());
        Self { addr, route }
    }
}

struct Listener {
    /// The route served, swapped by a reload that keeps the address.
    route: Arc<ArcSwap<RouteContext>>,
    /// Bound but not yet accepting (before `start`): one socket, or one per worker with
    /// `reuse_port`.
    sockets: Vec<TcpListener>,
    local: SocketAddr,
    stop: CancellationToken,
    /// Duplicates of `sockets`, kept for a binary upgrade (`upgrade.rs`) while the accept
    /// loops own the originals; dropped when the server stops.
    handoff: Vec<OwnedFd>,
    /// The sockets came from the process this one upgraded.
    inherited: bool,
}

struct Checker {
    addr: SocketAddr,
    config: HealthConfig,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Process-wide parts every route and task shares, fixed for the life of the server.
pub(super) struct Shared {
    /// Cancelled when the shutdown grace runs out.
    pub cut: CancellationToken,
    pub cut_count: Arc<AtomicUsize>,
    /// Every connection, across reloads, for the drain.
    pub connections: TaskTracker,
    /// Accept loops, across reloads.
    pub accept_loops: TaskTracker,
    /// Parent of every listener's stop token: `Shutdown::stop`.
    pub stop: CancellationToken,
    /// Parent of every health task's token.
    pub background: CancellationToken,
    /// The data plane's runtimes; empty: accept loops run on the caller's runtime.
    pub workers: Vec<Handle>,
}

pub(super) struct Runtime {
    pub config: Config,
    seed: u64,
    pub pools: HashMap<String, Arc<Pool>>,
    routes: HashMap<String, Arc<RouteContext>>,
    listeners: HashMap<ListenKey, Listener>,
    checkers: HashMap<(String, String), Checker>,
    global: Option<ConnectionLimit>,
    /// Each route's limit layers, kept across reloads that keep their settings.
    limits: HashMap<String, RouteLimits>,
    shared: Arc<Shared>,
    /// Sockets handed over by an upgrade, claimed while binding at startup.
    inherited: Inherited,
    /// The admin listener's configured address and a duplicate of its socket, for an upgrade.
    admin_handoff: Option<(SocketAddr, OwnedFd)>,
    /// Set when the server stops: nothing is handed over any more.
    handoff_closed: bool,
}

// === impl Runtime ===

impl Runtime {
    /// Builds pools and routes and binds every listen address (taking `inherited` sockets
    /// where they match, closing the rest); nothing runs yet.
    pub fn bind(
        config: Config,
        seed: u64,
        shared: Arc<Shared>,
        inherited: Inherited,
    ) -> Result<Self, ServerError> {
        let mut runtime = Self {
            config: Config {
                routes: Vec::new(),
                pools: Vec::new(),
                ..config.clone()
            },
            seed,
            pools: HashMap::new(),
            routes: HashMap::new(),
            listeners: HashMap::new(),
            checkers: HashMap::new(),
            global: None,
            limits: HashMap::new(),
            shared,
            inherited,
            admin_handoff: None,
            handoff_closed: false,
        };
        runtime.apply(config, false)?;
        runtime.inherited.close_unused();
        Ok(runtime)
    }

    /// Keeps a duplicate of the admin listener for an upgrade.
    pub fn set_admin_handoff(&mut self, listen: SocketAddr, socket: &impl AsFd) {
        match socket.as_fd().try_clone_to_owned() {
            Ok(fd) => self.admin_handoff = Some((listen, fd)),
            Err(error) => {
                warn!(%error, "cannot keep the admin socket for an upgrade; a new binary binds its own")
            }
        }
    }

    /// Duplicates of every listening socket with what each serves, for a new binary.
    pub fn handoff_sockets(&self) -> Result<Vec<(Entry, OwnedFd)>, UpgradeError> {
        if self.handoff_closed {
            return Err(UpgradeError::Stopping);
        }
        let mut sockets = Vec::new();
        for (key, listener) in &self.listeners {
            for fd in &listener.handoff {
                let entry = Entry {
                    route: Some(listener.route.load().name.to_string()),
                    listen: key.addr,
                };
                sockets.push((entry, fd.try_clone().map_err(UpgradeError::Duplicate)?));
            }
        }
        if let Some((listen, fd)) = &self.admin_handoff {
            let entry = Entry {
                route: None,
                listen: *listen,
            };
            sockets.push((entry, fd.try_clone().map_err(UpgradeError::Duplicate)?));
        }
        Ok(sockets)
    }

    /// Drops the duplicates kept for an upgrade, so the listeners really close when their
    /// accept loops end (new connects are refused, not queued on a socket nobody accepts).
    pub fn close_handoff(&mut self) {
        self.handoff_closed = true;
        self.admin_handoff = None;
        for listener in self.listeners.values_mut() {
            listener.handoff.clear();
        }
    }

    /// Starts the accept loops and health tasks of everything bound so far.
    pub fn start(&mut self) {
        for listener in self.listeners.values_mut() {
            let sockets = std::mem::take(&mut listener.sockets);
            Self::spawn_accepts(&self.shared, sockets, listener);
        }
        self.sync_checkers(true);
    }

    /// Moves to `new`. On error (a new address cannot be bound) nothing has changed.
    /// `running`: accept loops and health tasks are started for what is added.
    pub fn apply(&mut self, new: Config, running: bool) -> Result<ConfigDiff, ServerError> {
        let changes = diff(&self.config, &new);
        // 1. Bind every new address first: the only step that can fail, so a failure leaves
        //    the running config untouched.
        let mut bound = HashMap::new();
        for r in &new.routes {
            for &addr in &r.listen {
                let key = ListenKey::new(addr, &r.name);
                if !self.listeners.contains_key(&key) && !bound.contains_key(&key) {
                    let bind_error = |error| ServerError::Bind {
                        route: r.name.clone(),
                        addr,
                        error,
                    };
                    let inherited = self.inherited.take_route(addr, &r.name);
                    let sockets = if inherited.is_empty() {
                        (
                            bind_sockets(&new, addr, r.backlog, &self.shared)
                                .map_err(bind_error)?,
                            false,
                        )
                    } else {
                        let sockets = inherited
                            .into_iter()
                            .map(TcpListener::from_std)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(bind_error)?;
                        (sockets, true)
                    };
                    bound.insert(key, sockets);
                }
            }
        }
        // 2. Pools, adopting member state by name; the global limit kept while unchanged.
        self.seed = new.seed.unwrap_or(self.seed);
        let pools: HashMap<String, Arc<Pool>> = new
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let previous = self.pools.get(&p.name).map(Arc::as_ref);
                let seed = self.seed.wrapping_add(i as u64);
                (p.name.clone(), Arc::new(Pool::rebuild(p, seed, previous)))
            })
            .collect();
        // Members that left (a reload or a DNS answer dropped them): with on_member_down =
        // "close" their live connections are cut now; otherwise they finish on their own.
        for (name, old) in &self.pools {
            let kept = pools.get(name);
            for member in old.members() {
                let stays =
                    kept.is_some_and(|p| p.members().iter().any(|m| m.name() == member.name()));
                if !stays {
                    member.evict();
                }
            }
        }
        // Kept while its size is unchanged (live connections keep counting); a derived cap
        // follows the members, DNS answers and admin cap of each new config.
        let cap = global_cap(&new);
        if self.global.as_ref().is_none_or(|g| g.max() != cap) {
            self.global = Some(ConnectionLimit::global(cap));
        }
        // 3. Route contexts over the new pools; counters and limits follow the route's name
        //    (limits only while their settings are unchanged).
        let mut limits = HashMap::new();
        for r in &new.routes {
            let kept = self
                .limits
                .remove(&r.name)
                .filter(|l| l.fits(r, self.global.as_ref()));
            let fresh = || RouteLimits::new(r, self.global.clone());
            limits.insert(r.name.clone(), kept.unwrap_or_else(fresh));
        }
        self.limits = limits;
        let routes: HashMap<String, Arc<RouteContext>> = new
            .routes
            .iter()
            .map(|r| {
                let stats = self.routes.get(&r.name).map(|c| Arc::clone(&c.stats));
                (
                    r.name.clone(),
                    Arc::new(self.route_context(
                        r,
                        &pools[&r.pool],
                        pool_socket(&new, &r.pool),
                        stats,
                    )),
                )
            })
            .collect();
        // 4. Listeners: removed ones stop, kept ones serve their (new) route, added ones start.
        let mut wanted: HashMap<ListenKey, &str> = HashMap::new();
        for r in &new.routes {
            for &addr in &r.listen {
                wanted.insert(ListenKey::new(addr, &r.name), &r.name);
            }
        }
        self.listeners.retain(|key, listener| {
            let keep = wanted.contains_key(key);
            if !keep {
                listener.stop.cancel();
            }
            keep
        });
        for (key, route_name) in wanted {
            let context = Arc::clone(&routes[route_name]);
            if let Some(listener) = self.listeners.get(&key) {
                listener.route.store(context);
                continue;
            }
            let (sockets, inherited) = bound.remove(&key).expect("bound in step 1");
            let mut listener = Listener {
                route: Arc::new(ArcSwap::new(context)),
                local: sockets[0].local_addr().unwrap_or(key.addr),
                handoff: duplicates(&sockets),
                sockets,
                stop: self.shared.stop.child_token(),
                inherited,
            };
            if running {
                let sockets = std::mem::take(&mut listener.sockets);
                Self::spawn_accepts(&self.shared, sockets, &listener);
            }
            self.listeners.insert(key, listener);
        }
        // Settings set up once at startup keep their running values, so the next diff still
        // says they differ from the file.
        let new = if running {
            if !changes.restart_needed.is_empty() {
                warn!(
                    settings = %changes.restart_needed.join(", "),
                    "changed settings that only take effect at restart; the running values stay"
                );
            }
            Config {
                admin: self.config.admin.clone(),
                access_log: self.config.access_log.clone(),
                workers: self.config.workers,
                ..new
            }
        } else {
            new
        };
        self.config = new;
        self.pools = pools;
        self.routes = routes;
        self.sync_checkers(running);
        Ok(changes)
    }

    fn route_context(
        &self,
        r: &RouteConfig,
        pool: &Arc<Pool>,
        upstream_socket: crate::config::SocketOptions,
        stats: Option<Arc<RouteStats>>,
    ) -> RouteContext {
        RouteContext {
            name: r.name.as_str().into(),
            connect: connect::stack(
                Arc::clone(pool),
                r,
                &self.limits[&r.name],
                self.seed,
                upstream_socket,
            ),
            relay: RelaySettings {
                idle_timeout: r.idle_timeout,
                buffer_size: r.relay.buffer_size,
                mode: r.relay.mode,
                pipe_size: r.relay.pipe_size,
            },
            cut: self.shared.cut.clone(),
            cut_count: Arc::clone(&self.shared.cut_count),
            stats: stats.unwrap_or_default(),
            clients: r.clients.clone(),
            accept_proxy: r.accept_proxy.clone(),
            socket: r.socket,
            // Counts start empty on a reload; connections of the old context give back to
            // the old map, so a client may briefly hold up to twice its limit.
            per_client: r
                .max_connections_per_client
                .map(crate::route::per_client::PerClient::new),
        }
    }

    /// Starts accepting on `sockets` (one, or one per worker with `reuse_port`): one accept
    /// loop on every worker, socket `i` on worker `i` with `reuse_port` (the kernel spreads
    /// connections over the sockets), otherwise each worker on its own duplicate of the one
    /// socket (whichever is woken first takes the connection). Without worker runtimes, the
    /// caller's runtime is the one worker.
    fn spawn_accepts(shared: &Shared, sockets: Vec<TcpListener>, listener: &Listener) {
        info!(
            route = %listener.route.load().name,
            addr = %listener.local,
            inherited = listener.inherited,
            "listening"
        );
        let current = [Handle::current()];
        let workers = if shared.workers.is_empty() {
            &current[..]
        } else {
            &shared.workers[..]
        };
        for (socket, worker) in per_worker(sockets, workers.len()) {
            let (route, stop) = (Arc::clone(&listener.route), listener.stop.clone());
            let connections = shared.connections.clone();
            // Registered inside the worker, with its own reactor, so readiness wakes that worker.
            let accept_loop = async move {
                match TcpListener::from_std(socket) {
                    Ok(socket) => route::accept_loop(socket, route, stop, connections).await,
                    Err(error) => {
                        error!(%error, "cannot register a listening socket with its worker")
                    }
                }
            };
            shared.accept_loops.spawn_on(accept_loop, &workers[worker]);
        }
    }

    /// One health task per member of every pool with health checks: a task whose member
    /// address and settings are unchanged keeps running (its member's state is shared with the
    /// rebuilt pool), others are replaced, and those of removed members stop.
    fn sync_checkers(&mut self, running: bool) {
        if !running {
            return;
        }
        let mut wanted = HashMap::new();
        for p in &self.config.pools {
            let Some(health) = &p.health else { continue };
            for member in self.pools[&p.name].members() {
                wanted.insert(
                    (p.name.clone(), member.name().to_string()),
                    (member, health),
                );
            }
        }
        self.checkers.retain(|key, checker| {
            let keep = wanted
                .get(key)
                .is_some_and(|(m, h)| m.addr() == checker.addr && **h == checker.config);
            if !keep {
                checker.stop.cancel();
            }
            keep
        });
        for (key, (member, health)) in wanted {
            if self.checkers.contains_key(&key) {
                continue;
            }
            // Each member's jitter stream derives from the seed and its names, so a drill with
            // a fixed seed probes on the same schedule run after run.
            let seed =
                self.seed ^ fnv1a(key.0.as_bytes()) ^ fnv1a(key.1.as_bytes()).rotate_left(17);
            let stop = self.shared.background.child_token();
            let task = health::spawn_checker(
                Arc::clone(self.pools[&key.0].name()),
                Arc::clone(member),
                Arc::new(health.clone()),
                seed,
                stop.clone(),
            );
            let checker = Checker {
                addr: member.addr(),
                config: health.clone(),
                stop,
                task,
            };
            self.checkers.insert(key, checker);
        }
    }

    /// The bound addresses of `route`.
    pub fn local_addrs(&self, route: &str) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self
            .listeners
            .values()
            .filter(|l| &*l.route.load().name == route)
            .map(|l| l.local)
            .collect();
        addrs.sort();
        addrs
    }

    /// What `/status` shows of the current routes and pools.
    pub fn admin_view(&self) -> View {
        let routes = self
            .routes
            .iter()
            .map(|(name, ctx)| {
                let info = RouteInfo {
                    listen: self.local_addrs(name),
                    stats: Arc::clone(&ctx.stats),
                };
                (name.clone(), info)
            })
            .collect();
        View::new(&self.config, &self.pools, &routes)
    }

    /// Waits for every health task to end (after `background` was cancelled).
    pub async fn join_checkers(&mut self) {
        for (_, checker) in self.checkers.drain() {
            let _ = checker.task.await;
        }
    }
}

/// Pairs sockets with workers: several (`reuse_port`) sockets round-robin, one each when the
/// workers are the data plane's; a single socket, a duplicate of it for every worker. A socket that cannot be
/// handed over (out of fds for a duplicate) is logged and that worker does not accept on it.
fn per_worker(sockets: Vec<TcpListener>, workers: usize) -> Vec<(std::net::TcpListener, usize)> {
    let mut std_sockets = Vec::new();
    for socket in sockets {
        match socket.into_std() {
            Ok(socket) => std_sockets.push(socket),
            Err(error) => error!(%error, "cannot hand a listening socket to a worker"),
        }
    }
    if std_sockets.len() == 1 && workers > 1 {
        let first = &std_sockets[0];
        let duplicates: Vec<_> = (1..workers)
            .filter_map(|_| {
                first
                    .try_clone()
                    .inspect_err(
                        |error| error!(%error, "cannot share a listening socket with a worker"),
                    )
                    .ok()
            })
            .collect();
        std_sockets.extend(duplicates);
    }
    std_sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| (socket, i % workers))
        .collect()
}

/// Duplicates of `sockets` kept for an upgrade; one that cannot be made (out of descriptors) is
/// logged, and a new binary then binds that address itself.
fn duplicates(sockets: &[TcpListener]) -> Vec<OwnedFd> {
    sockets
        .iter()
        .filter_map(|s| {
            s.as_fd()
                .try_clone_to_owned()
                .inspect_err(|error| warn!(%error, "cannot keep a listening socket for an upgrade"))
                .ok()
        })
        .collect()
}

/// One socket, or with `reuse_port` one per worker: the data plane's workers, or without
/// them the configured worker count (the caller's runtime).
fn bind_sockets(
    config: &Config,
    addr: SocketAddr,
    backlog: u32,
    shared: &Shared,
) -> std::io::Result<Vec<TcpListener>> {
    if config.reuse_port {
        let workers = match shared.workers.len() {
            0 => config.worker_count(),
            n => n,
        };
        route::bind_reuse_port(addr, backlog, workers)
    } else {
        route::bind(addr, backlog).map(|s| vec![s])
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The global connection cap: `max_connections` when set, else what the descriptor limit in
/// force carries ([`Capacity`]), so clients past it are closed at once and counted instead of
/// meeting EMFILE (HAProxy sizes `maxconn` from the limit the same way).
fn global_cap(config: &Config) -> usize {
    config
        .max_connections
        .unwrap_or_else(|| Capacity::for_config(resources::current_fd_limit(), config).connections)
}

/// The socket options of pool `name` in `config` (validation guarantees it exists).
fn pool_socket(config: &Config, name: &str) -> crate::config::SocketOptions {
    config
        .pools
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.socket)
        .unwrap_or_default()
}
