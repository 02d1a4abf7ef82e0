//! The relay over real loopback sockets: bytes in equal bytes out each way, half-close both
//! ways, resets, the idle timeout, the cut, and that no socket outlives its relay.
//!
//! Every wait is bound by a deadline ([`within`]); nothing sleeps to let the relay catch up.

use std::io;
use std::time::Duration;

use sluice::relay::{RelayEnd, RelayReport, RelaySettings, Side, buffers_in_flight, relay};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{RwLock, RwLockReadGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Long enough for a loaded CI machine, short enough to fail a hung test quickly.
const DEADLINE: Duration = Duration::from_secs(10);

use sluice::relay::RelayMode;

const SETTINGS: RelaySettings = RelaySettings {
    idle_timeout: None,
    buffer_size: 16 * 1024,
    mode: RelayMode::Auto,
    pipe_size: None,
};

/// Tests share it; the socket-leak test takes it alone so other tests' sockets don't count.
static SOCKETS: RwLock<()> = RwLock::const_new(());

fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    within_for(DEADLINE, what, fut).await
}

async fn within_for<F: Future>(deadline: Duration, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(deadline, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {deadline:?}"))
}

/// Two connected loopback sockets: (dialer, acceptor).
async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().unwrap();
    let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (dialed.unwrap(), accepted.unwrap().0)
}

/// The four sockets of one relayed connection, before the relay starts.
struct Ends {
    client: TcpStream,
    relay_client: TcpStream,
    relay_upstream: TcpStream,
    upstream: TcpStream,
}

/// A connection being relayed by a spawned task.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    cut: CancellationToken,
    relay: JoinHandle<RelayReport>,
    /// Keeps the socket-leak test out while this connection's sockets are open.
    _shared: Option<RwLockReadGuard<'static, ()>>,
}

impl Ends {
    async fn new() -> Self {
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

    fn spawn(self, held: &[u8], settings: RelaySettings) -> Conn {
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
    async fn start(settings: RelaySettings) -> Conn {
        let shared = SOCKETS.read().await;
        Conn {
            _shared: Some(shared),
            ..Ends::new().await.spawn(b"", settings)
        }
    }

    async fn report(self) -> RelayReport {
        within("relay", self.relay).await.unwrap()
    }
}

fn idle_after(idle: Duration) -> RelaySettings {
    RelaySettings {
        idle_timeout: Some(idle),
        ..SETTINGS
    }
}

/// Reads until end of stream; a reset counts as the end too (the peer is gone either way).
async fn read_to_end(from: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    match within("read to end", from.read_to_end(&mut got)).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read failed: {e}"),
    }
    got
}

// === payloads ===

/// Pseudo-random bytes from a fixed seed (xorshift64*), made and checked a word at a time so
/// that 64 MiB stays quick in a debug build.
struct Payload(u64);

/// Order-sensitive checksum over chunks cut the same way on both ends.
#[derive(Debug, Default, PartialEq)]
struct Checksum(u64);

const CHUNK: usize = 64 * 1024;

impl Payload {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fills `chunk` and adds it to `sum` in the same pass.
    fn fill(&mut self, chunk: &mut [u8], sum: &mut Checksum) {
        let mut words = chunk.chunks_exact_mut(8);
        for word in &mut words {
            let value = self.next();
            word.copy_from_slice(&value.to_le_bytes());
            sum.add(value);
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            tail.copy_from_slice(&self.next().to_le_bytes()[..tail.len()]);
            sum.update(tail);
        }
    }
}

impl Checksum {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x100_0000_01b3)
            .rotate_left(29);
    }

    fn update(&mut self, chunk: &[u8]) {
        let mut words = chunk.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().unwrap()));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut padded = [0; 8];
            padded[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(padded));
        }
    }
}

/// Sends `size` payload bytes, then shuts down; returns the checksum of what was sent.
async fn send(mut to: impl AsyncWrite + Unpin, seed: u64, size: usize) -> Checksum {
    let (mut payload, mut sum, mut chunk) = (Payload(seed), Checksum::default(), vec![0; CHUNK]);
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
async fn receive(mut from: impl AsyncRead + Unpin, size: usize) -> Checksum {
    let (mut sum, mut chunk) = (Checksum::default(), vec![0; CHUNK]);
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

/// Sends `size` bytes each way at the same time and checks both arrive whole.
async fn round_trip(size: usize) {
    let conn = Conn::start(SETTINGS).await;
    let (client_rd, client_wr) = conn.client.into_split();
    let (upstream_rd, upstream_wr) = conn.upstream.into_split();
    // About 2 s for 64 MiB in a debug build on 2 cores, mostly making and summing the bytes;
    // the deadline only has to catch a stall.
    let deadline = DEADLINE + Duration::from_secs((size >> 20) as u64);
    let (sent_up, got_up, sent_down, got_down) = within_for(deadline, "transfer", async {
        tokio::join!(
            send(client_wr, 1, size),
            receive(upstream_rd, size),
            send(upstream_wr, 2, size),
            receive(client_rd, size),
        )
    })
    .await;
    assert_eq!(sent_up, got_up, "client -> upstream");
    assert_eq!(sent_down, got_down, "upstream -> client");

    let report = within("relay", conn.relay).await.unwrap();
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!(
        (report.bytes_up, report.bytes_down),
        (size as u64, size as u64)
    );
    assert!(report.first_close.is_some());
}

#[tokio::test]
async fn one_byte_each_way() {
    round_trip(1).await;
}

#[tokio::test]
async fn sixty_four_kib_each_way() {
    round_trip(64 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way() {
    let started = Instant::now();
    round_trip(64 * 1024 * 1024).await;
    println!("64 MiB each way in {:?}", started.elapsed());
}

// === held bytes and half-close ===

#[tokio::test]
async fn held_bytes_go_first_and_are_counted() {
    let _shared = SOCKETS.read().await;
    let mut ends = Ends::new().await;
    // Already in the relay's receive queue when it starts, yet must follow the held bytes.
    ends.client.write_all(b" world").await.unwrap();
    let mut conn = ends.spawn(b"hello", SETTINGS);

    conn.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.upstream).await, b"hello world");
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, b"");

    let report = conn.report().await;
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!((report.bytes_up, report.bytes_down), (11, 0));
}

#[tokio::test]
async fn client_half_close_still_lets_the_reply_through() {
    let mut conn = Conn::start(SETTINGS).await;
    conn.client.write_all(&[7; 1000]).await.unwrap();
    conn.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.upstream).await, [7; 1000]);

    // The upstream saw the FIN; its own direction is still open.
    assert!(!conn.relay.is_finished());
    let reply = vec![9; 50_000];
    conn.upstream.write_all(&reply).await.unwrap();
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, reply);

    let report = conn.report().await;
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!(report.first_close, Some(Side::Client));
    assert_eq!((report.bytes_up, report.bytes_down), (1000, 50_000));
}

#[tokio::test]
async fn upstream_half_close_still_lets_the_client_send() {
    let mut conn = Conn::start(SETTINGS).await;
    conn.upstream.write_all(&[3; 3000]).await.unwrap();
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, [3; 3000]);

    assert!(!conn.relay.is_finished());
    conn.client.write_all(&[4; 700]).await.unwrap();
    let mut got = [0; 700];
    within("late bytes", conn.upstream.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, [4; 700]);
    conn.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");

    let report = conn.report().await;
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!(report.first_close, Some(Side::Upstream));
    assert_eq!((report.bytes_up, report.bytes_down), (700, 3000));
}

// === resets ===

#[tokio::test]
async fn upstream_reset_ends_the_relay_and_closes_the_client() {
    let mut conn = Conn::start(SETTINGS).await;
    conn.upstream.set_zero_linger().unwrap();
    drop(conn.upstream);

    // The relay closes the client socket on its way out; the client must notice promptly.
    assert_eq!(read_to_end(&mut conn.client).await, b"");
    let report = within("relay", conn.relay).await.unwrap();
    match &report.end {
        RelayEnd::Error { side, error } => {
            assert_eq!(*side, Side::Upstream);
            assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        }
        end => panic!("expected an upstream error, got {end:?}"),
    }
    assert_eq!(report.first_close, Some(Side::Upstream));
}

#[tokio::test]
async fn client_reset_ends_the_relay_and_closes_the_upstream() {
    let mut conn = Conn::start(SETTINGS).await;
    conn.client.write_all(b"request").await.unwrap();
    let mut got = [0; 7];
    within("request", conn.upstream.read_exact(&mut got))
        .await
        .unwrap();
    conn.client.set_zero_linger().unwrap();
    drop(conn.client);

    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
    let report = within("relay", conn.relay).await.unwrap();
    assert!(
        matches!(
            report.end,
            RelayEnd::Error {
                side: Side::Client,
                ..
            }
        ),
        "{report:?}"
    );
    assert_eq!(
        (report.bytes_up, report.first_close),
        (7, Some(Side::Client))
    );
}

// === idle timeout and cut ===

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_timeout() {
    let idle = Duration::from_millis(200);
    let mut conn = Conn::start(idle_after(idle)).await;
    let started = Instant::now();

    assert_eq!(read_to_end(&mut conn.client).await, b"");
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
    let report = within("relay", conn.relay).await.unwrap();
    assert!(matches!(report.end, RelayEnd::IdleTimeout), "{report:?}");
    assert!(
        started.elapsed() >= idle,
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(
        (report.bytes_up, report.bytes_down, report.first_close),
        (0, 0, None)
    );
}

#[tokio::test]
async fn a_half_closed_connection_still_times_out() {
    let mut conn = Conn::start(idle_after(Duration::from_millis(200))).await;
    // The upstream half-closes and then never reads or closes: without the timer both of the
    // relay's sockets would stay open (FIN_WAIT2 towards the client, CLOSE_WAIT upstream).
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, b"");

    let report = within("relay", conn.relay).await.unwrap();
    assert!(matches!(report.end, RelayEnd::IdleTimeout), "{report:?}");
    assert_eq!(report.first_close, Some(Side::Upstream));
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
}

#[tokio::test]
async fn traffic_one_way_keeps_the_connection_open() {
    let mut conn = Conn::start(idle_after(Duration::from_millis(200))).await;
    let mut pacing = tokio::time::interval(Duration::from_millis(50));
    // Pacing the traffic, not synchronizing: each byte is waited for before the next tick.
    for _ in 0..12 {
        pacing.tick().await;
        conn.client.write_all(b"x").await.unwrap();
        let mut byte = [0];
        within("byte", conn.upstream.read_exact(&mut byte))
            .await
            .unwrap();
    }
    assert!(!conn.relay.is_finished(), "cut while busy");

    conn.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, b"");
    let report = conn.report().await;
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!((report.bytes_up, report.bytes_down), (12, 0));
}

#[tokio::test]
async fn cut_reports_the_bytes_so_far() {
    let mut conn = Conn::start(SETTINGS).await;
    conn.client.write_all(&[1; 100]).await.unwrap();
    conn.upstream.write_all(&[2; 200]).await.unwrap();
    let (mut up, mut down) = ([0; 100], [0; 200]);
    within("up", conn.upstream.read_exact(&mut up))
        .await
        .unwrap();
    within("down", conn.client.read_exact(&mut down))
        .await
        .unwrap();

    conn.cut.cancel();
    let report = within("relay", conn.relay).await.unwrap();
    assert!(matches!(report.end, RelayEnd::Cut), "{report:?}");
    assert_eq!(
        (report.bytes_up, report.bytes_down, report.first_close),
        (100, 200, None)
    );
    assert_eq!(read_to_end(&mut conn.client).await, b"");
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
}

// === resources ===

/// Open TCP sockets of this process: its fds (`/proc/self/fd`) that are sockets listed in
/// `/proc/net/tcp{,6}`. Not every fd, because the harness starts other tests' runtimes at any
/// time, and each opens an epoll fd, an eventfd and a dup of tokio's signal socket.
#[cfg(target_os = "linux")]
fn open_tcp_sockets() -> usize {
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

#[cfg(target_os = "linux")]
#[tokio::test]
async fn no_socket_outlives_its_relay() {
    let _alone = SOCKETS.write().await;
    let before = open_tcp_sockets();

    for i in 0..200 {
        // Every way a relay can end, in turn; only the last two wait for the idle timer.
        let settings = match i % 5 {
            3 | 4 => idle_after(Duration::from_millis(20)),
            _ => SETTINGS,
        };
        let mut conn = Ends::new().await.spawn(b"held", settings);
        if i == 0 {
            assert!(
                open_tcp_sockets() >= before + 4,
                "counting sockets does not work"
            );
        }
        match i % 5 {
            0 => {
                conn.client.shutdown().await.unwrap();
                read_to_end(&mut conn.upstream).await;
                conn.upstream.write_all(b"bye").await.unwrap();
                conn.upstream.shutdown().await.unwrap();
                read_to_end(&mut conn.client).await;
            }
            1 => {
                conn.upstream.set_zero_linger().unwrap();
                drop(conn.upstream);
                read_to_end(&mut conn.client).await;
            }
            2 => conn.cut.cancel(),
            3 => {
                // Half-closed, then left idle.
                conn.upstream.shutdown().await.unwrap();
            }
            _ => {}
        }
        within("relay", conn.relay).await.unwrap();
    }

    let deadline = Instant::now() + DEADLINE;
    let mut now_open = open_tcp_sockets();
    while now_open > before && Instant::now() < deadline {
        tokio::task::yield_now().await;
        now_open = open_tcp_sockets();
    }
    assert!(
        now_open <= before,
        "{now_open} sockets open, {before} before the relays"
    );
    assert_eq!(buffers_in_flight(), 0);
}
