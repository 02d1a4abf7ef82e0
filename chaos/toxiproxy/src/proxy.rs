//! One proxy: its listener's lifecycle, its accept loop and its live connections.
//!
//! Enabled means listening. Disabling (or changing `listen`/`upstream`) closes the listener, so new
//! connections are refused, and closes every open connection, as Toxiproxy's `stop` does; both
//! have happened by the time the call returns, so a test may assert on them straight after the
//! API answers. Enabling binds again at the recorded address; with port 0 the actual port is
//! recorded on first start, so re-enabling reuses it. Toxics live in a [`ToxicSet`] that outlives
//! restarts. The collection of proxies (names, duplicates, populate) is `store`'s job.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::addr::AddrPolicy;
use crate::error::Error;
use crate::link;
use crate::toxic::ToxicSet;

/// Pause after a failed accept before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

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
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _)) => {
                connections.spawn(link::serve(
                    client,
                    upstream.clone(),
                    toxics.subscribe(),
                    policy,
                    stop.child_token(),
                ));
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
    info!(proxy = %name, "stopped proxy");
}
