//! One proxy: its listener's lifecycle, its accept loop and its live connections.
//!
//! Enabled means listening. Disabling (or changing `listen`/`upstream`) closes the listener, so new
//! connections are refused, and closes every open connection, as Toxiproxy's `stop` does; both
//! have happened by the time the call returns, so a test may assert on them straight after the
//! API answers. Enabling binds again at the recorded address; with port 0 the actual port is
//! recorded on first start, so re-enabling reuses it. Toxics live in a [`ToxicSet`] that outlives
//! restarts. The collection of proxies (names, duplicates, populate) is `store`'s job.
//!
//! Two extensions act here, on the listener, before a connection exists (see docs/CHAOS.md,
//! "Extensions beyond Toxiproxy"):
//! - `connect_timeout`: while such a toxic is installed, the accept loop stops accepting, sets
//!   the listen backlog to 0 and fills the accept queue with its own "plug" connections until a
//!   plug's handshake does not complete. From then on Linux drops every SYN to the port
//!   (`tcp_abort_on_overflow` is 0 by default), so a client's connect times out instead of
//!   being refused. Removing the toxic restores the backlog and resumes accepting; plugs are
//!   recognised by their address and dropped, and clients still retransmitting SYNs get in.
//! - `slow_accept`: an accepted connection waits `delay` ms (the sum over the slow_accept toxics
//!   that target it) before the upstream is dialled and any byte moves either way. The kernel
//!   has already completed the handshake, so the client's connect() itself returns at once.
//!
//! Each accepted connection gets a sequence number, for targeting's `first`.
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::addr::AddrPolicy;
use crate::error::Error;
use crate::link;
use crate::link::effects::roll;
use crate::plug::Plug;
use crate::toxic::kind::ToxicKind;
use crate::toxic::{Conn, ToxicSet};

/// Pause after a failed accept before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// How long a toxic API call waits for the accept loop to apply a `connect_timeout` change.
pub const SETTLE: Duration = Duration::from_secs(2);

/// A proxy's settable fields, as the API reads and writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    /// Address to listen on (`host:port`; port 0 picks one).
    pub listen: String,
    /// Address to dial for each client.
    pub upstream: String,
    /// Whether the proxy should be listening.
    pub enabled: bool,
}

/// A named proxy. Shared as `Arc<Proxy>` between the store and API calls.
#[derive(Debug)]
pub struct Proxy {
    name: String,
    policy: AddrPolicy,
    toxics: Arc<ToxicSet>,
    /// Whether the accept loop currently holds the listener plugged (`connect_timeout`).
    plugged: Arc<watch::Sender<bool>>,
    // An async mutex, held across bind and shutdown on purpose: it orders the control operations
    // on this proxy, as Toxiproxy's per-proxy lock does. The data path never takes it.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    listen: String,
    upstream: String,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    accept: JoinHandle<()>,
    connections: TaskTracker,
}

#[derive(Serialize)]
struct ProxyJson<'a> {
    name: &'a str,
    listen: &'a str,
    upstream: &'a str,
    enabled: bool,
    toxics: Vec<Value>,
}

impl Proxy {
    /// A stopped proxy with no toxics. Call [`Proxy::start`] to listen.
    pub fn new(name: String, listen: String, upstream: String, policy: AddrPolicy) -> Arc<Self> {
        Arc::new(Proxy {
            name,
            policy,
            toxics: Arc::new(ToxicSet::default()),
            plugged: Arc::new(watch::Sender::new(false)),
            state: Mutex::new(State {
                listen,
                upstream,
                running: None,
            }),
        })
    }

    /// The proxy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The proxy's toxics.
    pub fn toxics(&self) -> &Arc<ToxicSet> {
        &self.toxics
    }

    /// Waits until the listener reflects the toxics: plugged exactly while the proxy runs and
    /// has a `connect_timeout` toxic. Toxic API calls wait on this (bounded by [`SETTLE`]), so a
    /// test may connect straight after the call returns.
    pub async fn settled(&self) {
        let mut plugged = self.plugged.subscribe();
        let mut chains = self.toxics.subscribe();
        loop {
            let running = self.state.lock().await.running.is_some();
            let want = running && chains.borrow_and_update().blocks_handshakes();
            if *plugged.borrow_and_update() == want {
                return;
            }
            tokio::select! {
                _ = plugged.changed() => {}
                _ = chains.changed() => {}
            }
        }
    }

    /// Current listen, upstream and enabled.
    pub async fn spec(&self) -> ProxySpec {
        let state = self.state.lock().await;
        ProxySpec {
            listen: state.listen.clone(),
            upstream: state.upstream.clone(),
            enabled: state.running.is_some(),
        }
    }

    /// The JSON the API returns for this proxy, toxics included.
    pub async fn to_json(&self) -> Value {
        let spec = self.spec().await;
        let json = ProxyJson {
            name: &self.name,
            listen: &spec.listen,
            upstream: &spec.upstream,
            enabled: spec.enabled,
            toxics: self.toxics.snapshot().all().map(|t| t.to_json()).collect(),
        };
        serde_json::to_value(json).unwrap_or(Value::Null)
    }

    /// Starts listening. Already running is not an error (`POST /reset` relies on that).
    pub async fn start(&self) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        self.start_locked(&mut state).await
    }

    /// Stops listening and closes every connection; returns once both are done.
    pub async fn stop(&self) {
        let mut state = self.state.lock().await;
        stop_locked(&mut state).await;
    }

    /// Applies an update as Toxiproxy's `Proxy.Update`: a changed address restarts the proxy,
    /// dropping its connections; then `enabled` decides whether it runs.
    pub async fn update(&self, input: ProxySpec) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        // Compared resolved, so "localhost:0" does not count as a change from "127.0.0.1:0".
        let listen = self.policy.resolve_listen(&input.listen).await?.to_string();
        if listen != state.listen || input.upstream != state.upstream {
            self.policy.check_upstream_literal(&input.upstream)?;
            stop_locked(&mut state).await;
            state.listen = input.listen;
            state.upstream = input.upstream;
        }
        match (input.enabled, state.running.is_some()) {
            (true, false) => self.start_locked(&mut state).await,
            (false, true) => {
                stop_locked(&mut state).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether `listen`/`upstream` differ from this proxy's, as `/populate` decides replacement.
    pub async fn differs(&self, listen: &str, upstream: &str) -> Result<bool, Error> {
        let listen = self.policy.resolve_listen(listen).await?.to_string();
        let state = self.state.lock().await;
        Ok(listen != state.listen || upstream != state.upstream)
    }

    async fn start_locked(&self, state: &mut State) -> Result<(), Error> {
        if state.running.is_some() {
            return Ok(());
        }
        let addr = self.policy.resolve_listen(&state.listen).await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })?;
        // Recorded so the API shows the real port and a restart binds the same one.
        state.listen = bound.to_string();
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(
            listener,
            state.upstream.clone(),
            self.clone_handles(),
            stop.clone(),
            connections.clone(),
            self.plugged.clone(),
        ));
        info!(proxy = %self.name, listen = %bound, upstream = %state.upstream, "started proxy");
        state.running = Some(Running {
            stop,
            accept,
            connections,
        });
        Ok(())
    }

    fn clone_handles(&self) -> (Arc<ToxicSet>, AddrPolicy, String) {
        (self.toxics.clone(), self.policy, self.name.clone())
    }
}

async fn stop_locked(state: &mut State) {
    let Some(running) = state.running.take() else {
        return;
    };
    running.stop.cancel();
    // The accept task owns the listener: once it has returned, new connections are refused.
    let _ = running.accept.await;
    running.connections.close();
    running.connections.wait().await;
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    (toxics, policy, name): (Arc<ToxicSet>, AddrPolicy, String),
    stop: CancellationToken,
    connections: TaskTracker,
    gate: Arc<watch::Sender<bool>>,
) {
    let mut chains = toxics.subscribe();
    let mut plug = Plug::default();
    // Set when plugging failed, so it is not retried until the toxics change.
    let mut plug_failed = false;
    loop {
        let want = chains.borrow_and_update().blocks_handshakes();
        if want && !plug.active && !plug_failed {
            if let Err(err) = plug.insert(&listener).await {
                warn!(proxy = %name, error = %err, "connect_timeout: could not stop handshakes");
                plug.remove(&listener);
                plug_failed = true;
            }
        } else if !want && plug.active {
            plug.remove(&listener);
        }
        gate.send_replace(plug.active);
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            _ = chains.changed() => {
                plug_failed = false;
                continue;
            }
            accepted = listener.accept(), if !plug.active => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                if plug.peers.remove(&peer) {
                    continue;
                }
                let conn = Conn {
                    peer,
                    seq: toxics.next_conn_seq(),
                };
                let delay = slow_accept_delay(&toxics, conn);
                let serve = link::serve(
                    client,
                    conn,
                    upstream.clone(),
                    toxics.subscribe(),
                    policy,
                    stop.child_token(),
                );
                let stop = stop.clone();
                connections.spawn(async move {
                    if !delay.is_zero() {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    serve.await;
                });
            }
            // Per-connection failures (aborted handshakes, fd exhaustion) should not take the
            // proxy down. The short pause keeps fd exhaustion from spinning and flooding the log.
            Err(err) => {
                warn!(proxy = %name, error = %err, "accept failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    gate.send_replace(false);
    info!(proxy = %name, "stopped proxy");
}

/// `slow_accept`: the sum of the delays of the toxics that target `conn` (toxicity rolled).
fn slow_accept_delay(toxics: &ToxicSet, conn: Conn) -> Duration {
    let mut rng = rand::rng();
    let ms: i64 = toxics
        .snapshot()
        .all()
        .filter_map(|t| match t.kind {
            ToxicKind::SlowAccept(a) if t.selects(conn) && roll(t.toxicity, &mut rng) => {
                Some(a.delay.max(0))
            }
            _ => None,
        })
        .sum();
    Duration::from_millis(ms as u64)
}
