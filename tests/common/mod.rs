//! Shared pieces of the integration tests: real upstream servers on 127.0.0.1:0 and a sluice
//! started from config text. Waiting, payloads and checksums come from `sluice_testkit`.
#![allow(dead_code)]

pub mod running;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice::{RunSummary, Server, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What an upstream does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum Behavior {
    /// Echo every byte back until the client half-closes, then close.
    Echo,
    /// Write the upstream's id byte, then close.
    Identify(u8),
    /// Accept, read everything, never write, close when the client does: a member that accepts
    /// and then says nothing (a hung process behind a listening kernel). Counts `requests`.
    Silent,
    /// Write the id byte (a server-greeting protocol's banner), then read and never write.
    GreetThenSilent(u8),
    /// `Silent` for connections accepted while the flag is set, `Echo` for the others: a
    /// member that hangs, then recovers.
    SilentWhile(&'static std::sync::atomic::AtomicBool),
}

/// A real upstream server on 127.0.0.1, counting the connections it accepted.
pub struct Upstream {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    /// Connections on which a `Silent`/`GreetThenSilent` upstream read a byte (health probes,
    /// which send nothing, are not among them).
    pub requests: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start(behavior: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, behavior)
    }

    pub fn serve(listener: TcpListener, behavior: Behavior) -> Self {
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (accepted, stop) = (Arc::clone(&accepted), stop.clone());
            let requests = Arc::clone(&requests);
            async move {
                loop {
                    let (mut stream, _) = tokio::select! {
                        () = stop.cancelled() => return,
                        r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let requests = Arc::clone(&requests);
                    let behavior = match behavior {
                        Behavior::SilentWhile(flag) if flag.load(Ordering::SeqCst) => {
                            Behavior::Silent
                        }
                        Behavior::SilentWhile(_) => Behavior::Echo,
                        other => other,
                    };
                    tokio::spawn(async move {
                        match behavior {
                            Behavior::Echo => {
                                let (mut r, mut w) = stream.split();
                                let _ = tokio::io::copy(&mut r, &mut w).await;
                                let _ = w.shutdown().await;
                            }
                            Behavior::Identify(id) => {
                                let _ = stream.write_all(&[id]).await;
                                let _ = stream.shutdown().await;
                            }
                            Behavior::Silent | Behavior::SilentWhile(_) => {
                                read_silently(&mut stream, &requests).await;
                            }
                            Behavior::GreetThenSilent(id) => {
                                if stream.write_all(&[id]).await.is_ok() {
                                    read_silently(&mut stream, &requests).await;
                                }
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            accepted,
            requests,
            stop,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// See [`Upstream::requests`].
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Closes the listener (new connects are refused) and returns the port it had.
    pub async fn kill(self) -> SocketAddr {
        self.stop.cancel();
        let _ = self.task.await;
        self.addr
    }
}

/// Reads until the client closes, writing nothing; counts the connection in `requests` at
/// its first byte.
async fn read_silently(stream: &mut TcpStream, requests: &AtomicUsize) {
    let mut buf = [0u8; 1024];
    let mut counted = false;
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
        if !counted {
            counted = true;
            requests.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An upstream that accepts and resets (SO_LINGER 0) 50 ms later without a byte: a backend
/// that crashes on each connection behind a port that still accepts. The delay puts the reset
/// after sluice's connect has completed, as it is with a real backend process (an in-process
/// reset can beat the connect and turn into a connect error). Counts what it accepted.
pub struct Resetter {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Resetter {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let accepted = Arc::clone(&accepted);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    });
                }
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Resetter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A free loopback address nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A sluice running in this process.
pub struct Sluice {
    pub server_pools: Vec<(String, Arc<sluice::upstream::Pool>)>,
    addrs: Vec<(String, SocketAddr)>,
    /// The admin listener's address, when the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    pub shutdown: Shutdown,
    pub run: JoinHandle<RunSummary>,
}

impl Sluice {
    /// Validates `config` (TOML text), binds and runs it.
    pub async fn start(config: &str) -> Self {
        Self::start_on(config, Vec::new()).await
    }

    /// [`Sluice::start`] with the data plane on `workers` (`sluice::server::Workers`), as the
    /// binary runs it.
    pub async fn start_on(config: &str, workers: Vec<tokio::runtime::Handle>) -> Self {
        let config = sluice::config::from_str(config, None).unwrap_or_else(|e| panic!("{e}"));
        Self::start_config(config, workers).await
    }

    /// Binds and runs an already validated `config` (for one read from a file, which the
    /// server can reload).
    pub async fn start_config(
        config: sluice::config::Config,
        workers: Vec<tokio::runtime::Handle>,
    ) -> Self {
        let server_pools_names: Vec<String> = config.pools.iter().map(|p| p.name.clone()).collect();
        let routes: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
        let server = Server::bind_on(config, workers).await.unwrap();
        let addrs = routes
            .iter()
            .flat_map(|r| {
                server
                    .local_addrs(r)
                    .into_iter()
                    .map(move |a| (r.clone(), a))
            })
            .collect();
        let server_pools = server_pools_names
            .into_iter()
            .map(|n| {
                let pool = server.pool(&n).unwrap();
                (n, pool)
            })
            .collect();
        let admin = server.admin_addr();
        let shutdown = Shutdown::new();
        let run = tokio::spawn(server.run(shutdown.clone()));
        Self {
            server_pools,
            addrs,
            admin,
            shutdown,
            run,
        }
    }

    /// The first address of `route`.
    pub fn addr(&self, route: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(r, _)| r == route)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no route {route}"))
    }

    pub fn pool(&self, name: &str) -> &Arc<sluice::upstream::Pool> {
        &self.server_pools.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Stops and waits for the run to end.
    pub async fn stop(self) -> RunSummary {
        self.shutdown.stop();
        sluice_testkit::within(Duration::from_secs(30), "sluice to stop", self.run)
            .await
            .unwrap()
    }
}

/// Connects through sluice and reads everything until EOF (or a reset, returned as `Err`).
pub async fn read_all(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    Ok(out)
}
