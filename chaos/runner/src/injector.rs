//! The fault injector a drill talks to: a Toxiproxy at `TOXIPROXY_URL`, or the
//! `sluice-toxiproxy` library served inside this process on 127.0.0.1 port 0.
//!
//! The embedded injector runs on a thread of its own with its own runtime, so its proxies keep
//! moving bytes at the pace they would as a separate process however busy the drill's runtime
//! is. Nothing is looked up or built at run time: an installed `sluice-chaos` carries its
//! injector. Either way the drill speaks only the Toxiproxy HTTP API to it.

use std::net::{Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;

use thiserror::Error;
use tokio::sync::oneshot;

use super::toxiproxy::{Toxiproxy, ToxiproxyError};

/// Runtime threads of the embedded injector: two move bytes both ways without queueing one
/// direction behind the other, as the standalone binary's default runtime would on this
/// project's 2-core CI machine.
const INJECTOR_THREADS: usize = 2;

/// Where the injector comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InjectorChoice {
    /// Serve `sluice-toxiproxy` in this process.
    #[default]
    Embedded,
    /// Use a running Toxiproxy API (`TOXIPROXY_URL`).
    Url(String),
}

impl InjectorChoice {
    /// `TOXIPROXY_URL` when set and not empty, else [`InjectorChoice::Embedded`].
    pub fn from_env() -> Self {
        match std::env::var("TOXIPROXY_URL") {
            Ok(url) if !url.trim().is_empty() => Self::Url(url),
            _ => Self::Embedded,
        }
    }
}

/// The injector could not be started or reached.
#[derive(Debug, Error)]
pub enum InjectorError {
    #[error(transparent)]
    Api(#[from] ToxiproxyError),
    #[error("cannot start the embedded fault injector: {0}")]
    Start(String),
}

/// A running injector; [`Injector::stop`] ends an embedded one.
#[derive(Debug)]
pub struct Injector {
    api: Toxiproxy,
    /// The embedded server; `None` for `TOXIPROXY_URL`.
    embedded: Option<Embedded>,
    pub version: String,
}

#[derive(Debug)]
struct Embedded {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

// === impl Injector ===

impl Injector {
    pub async fn start(choice: &InjectorChoice) -> Result<Self, InjectorError> {
        let (api, embedded) = match choice {
            InjectorChoice::Url(url) => (Toxiproxy::from_url(url)?, None),
            InjectorChoice::Embedded => {
                let (addr, embedded) = embed()?;
                (Toxiproxy::new(addr), Some(embedded))
            }
        };
        let version = api.version().await?;
        Ok(Self {
            api,
            embedded,
            version,
        })
    }

    pub fn api(&self) -> &Toxiproxy {
        &self.api
    }

    /// `sluice-toxiproxy 2.12.0 at 127.0.0.1:PORT (embedded)` or
    /// `Toxiproxy 2.x at URL (TOXIPROXY_URL)`.
    pub fn describe(&self) -> String {
        match &self.embedded {
            Some(_) => format!(
                "sluice-toxiproxy {} at {} (embedded)",
                self.version,
                self.api.addr()
            ),
            None => format!(
                "Toxiproxy {} at {} (TOXIPROXY_URL)",
                self.version,
                self.api.addr()
            ),
        }
    }

    /// Stops an embedded injector (its proxies close their listeners and connections) and
    /// waits for its thread; a `TOXIPROXY_URL` one is left alone.
    pub async fn stop(self) {
        if let Some(Embedded { stop, thread }) = self.embedded {
            let _ = stop.send(());
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Binds the API on 127.0.0.1 port 0 and serves it on a thread of its own until stopped.
fn embed() -> Result<(SocketAddr, Embedded), InjectorError> {
    let start = |e: std::io::Error| InjectorError::Start(e.to_string());
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(start)?;
    listener.set_nonblocking(true).map_err(start)?;
    let addr = listener.local_addr().map_err(start)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(INJECTOR_THREADS)
        .thread_name("toxiproxy")
        .enable_all()
        .build()
        .map_err(start)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("toxiproxy".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("embedded injector: {e}");
                        return;
                    }
                };
                let shutdown = async {
                    let _ = stopped.await;
                };
                let config = sluice_toxiproxy::Config::default();
                if let Err(e) = sluice_toxiproxy::run(listener, config, shutdown).await {
                    tracing::error!("embedded injector: {e}");
                }
            });
        })
        .map_err(start)?;
    Ok((addr, Embedded { stop, thread }))
}
