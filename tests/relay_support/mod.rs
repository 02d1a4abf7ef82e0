//! What the relay integration tests share: loopback socket pairs, a relay run in a task,
//! the suite's deadline, sending and receiving a seeded payload, and open-socket counting.
//!
//! Every wait is bound by a deadline ([`within`]); nothing sleeps to let the relay catch up.
#![allow(dead_code)]

use std::io;
use std::time::Duration;

use sluice::relay::{RelayMode, RelayReport, RelaySettings, relay};
use sluice_testkit::{PayloadStream, StreamChecksum};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{RwLock, RwLockReadGuard};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Long enough for a loaded CI machine, short enough to fail a hung test quickly.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The suite's settings; tests pick the mode.
pub const SETTINGS: RelaySettings = RelaySettings {
    idle_timeout: None,
    buffer_size: 16 * 1024,
    mode: RelayMode::Auto,
    pipe_size: None,
};

/// Tests share it; the socket-leak test takes it alone so other tests' sockets don't count.
pub static SOCKETS: RwLock<()> = RwLock::const_new(());

pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Runs `fut`, failing the test with `what` if it takes longer than [`DEADLINE`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    sluice_testkit::within(DEADLINE, what, fut).await
}

/// Two connected loopback sockets: (dialer, acceptor).
pub async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().unwrap();
    let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (dialed.unwrap(), accepted.unwrap().0)
}

/// The four sockets of one relayed connection, before the relay starts.
pub struct Ends {
    pub client: TcpStream,
    pub relay_client: TcpStream,
    pub relay_upstream: TcpStream,
    pub upstream: TcpStream,
}

/// A connection being relayed by a spawned task.
pub struct Conn {
    pub client: TcpStream,
    pub upstream: TcpStream,
    pub cut: CancellationToken,
    pub relay: JoinHandle<RelayReport>,
    /// Keeps the socket-leak test out while this connection's sockets are open.
    _shared: Option<RwLockReadGuard<'static, ()>>,
}

impl Ends {
    pub async fn new() -> Self {
        trace_init();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (client, relay_client) = pair(&listener).await;
        let (relay_upstream, upstream) = pair(&listener).await;
        Self {
            client,
            relay_client,
            relay_upstream,
            upstream,
        }
    }

    pub fn spawn(self, held: &[u8], settings: RelaySettings) -> Conn {
        let cut = CancellationToken::new();
        let relay = tokio::spawn({
            let (cut, held) = (cut.clone(), held.to_vec());
            let (relay_client, relay_upstream) = (self.relay_client, self.relay_upstream);
            async move { relay(relay_client, relay_upstream, held, settings, &cut).await }
        });
        Conn {
            client: self.client,
            upstream: self.upstream,
            cut,
            relay,
            _shared: None,
        }
    }
}

impl Conn {
    pub async fn start(settings: RelaySettings) -> Conn {
        let shared = SOCKETS.read().await;
        Conn {
            _shared: Some(shared),
            ..Ends::new().await.spawn(b"", settings)
        }
    }

    pub async fn report(self) -> RelayReport {
        within("relay", self.relay).await.unwrap()
    }
}

/// The suite's settings in `mode`.
pub fn settings(mode: RelayMode) -> RelaySettings {
    RelaySettings { mode, ..SETTINGS }
}

/// `mode` with an idle timeout.
pub fn idle_after(mode: RelayMode, idle: Duration) -> RelaySettings {
    RelaySettings {
        idle_timeout: Some(idle),
        ..settings(mode)
    }
}

/// Reads until end of stream; a reset counts as the end too (the peer is gone either way).
pub async fn read_to_end(from: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    match within("read to end", from.read_to_end(&mut got)).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read failed: {e}"),
    }
    got
}

// === payloads ===

pub const CHUNK: usize = 64 * 1024;

/// Sends `size` payload bytes, then shuts down; returns the checksum of what was sent.
pub async fn send(mut to: impl AsyncWrite + Unpin, seed: u64, size: usize) -> StreamChecksum {
    let (mut payload, mut sum) = (PayloadStream::new(seed), StreamChecksum::default());
    let mut chunk = vec![0; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK);
        payload.fill(&mut chunk[..n], &mut sum);
        to.write_all(&chunk[..n]).await.unwrap();
        left -= n;
    }
    to.shutdown().await.unwrap();
    sum
}

/// Receives exactly `size` bytes followed by end of stream; returns their checksum.
pub async fn receive(mut from: impl AsyncRead + Unpin, size: usize) -> StreamChecksum {
    let (mut sum, mut chunk) = (StreamChecksum::default(), vec![0; CHUNK]);
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK);
        from.read_exact(&mut chunk[..n]).await.unwrap();
        sum.update(&chunk[..n]);
        left -= n;
    }
    assert_eq!(
        from.read(&mut chunk).await.unwrap(),
        0,
        "bytes after the payload"
    );
    sum
}

/// Open TCP sockets of this process: its fds (`/proc/self/fd`) that are sockets listed in
/// `/proc/net/tcp{,6}`. Not every fd, because the harness starts other tests' runtimes at any
/// time, and each opens an epoll fd, an eventfd and a dup of tokio's signal socket.
#[cfg(target_os = "linux")]
pub fn open_tcp_sockets() -> usize {
    let mut tcp_inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(table) else {
            continue;
        };
        // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        tcp_inodes.extend(
            table
                .lines()
                .skip(1)
                .filter_map(|row| row.split_whitespace().nth(9).map(str::to_owned)),
        );
    }
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .filter(|inode| tcp_inodes.contains(inode))
        .count()
}
