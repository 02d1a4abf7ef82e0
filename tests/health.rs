//! Health checking against real loopback sockets: a listener that goes away and comes back,
//! and tiny line servers that answer, mismatch, hang up or stay silent.
//!
//! Every wait polls a condition against a deadline; nothing sleeps to synchronize.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::config::{Expect, HealthConfig, MemberConfig};
use sluice::health::{ProbeFailure, ProbePhase, probe, spawn_checker};
use sluice::upstream::Member;
use sluice_testkit::{eventually, settle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::MakeWriter;

const INTERVAL: Duration = Duration::from_millis(50);
const FAST: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_millis(200);
const RISE_FALL: u32 = 2;
/// Room for a loaded CI machine on top of the schedule's own worst case.
const SLACK: Duration = Duration::from_millis(750);
const PING: &[u8] = b"PING\r\n";
const PONG: &[u8] = b"+PONG\r\n";

fn health(init_up: bool, send_expect: bool) -> Arc<HealthConfig> {
    Arc::new(HealthConfig {
        interval: INTERVAL,
        fast_interval: FAST,
        timeout: TIMEOUT,
        rise: RISE_FALL,
        fall: RISE_FALL,
        jitter: 0.1,
        init_up,
        send: send_expect.then(|| PING.to_vec()),
        expect: send_expect.then(|| Expect::Prefix(PONG.to_vec())),
        ..HealthConfig::default()
    })
}

/// Worst case for `n` consecutive probes to be counted, from a stable member.
fn within(n: u32) -> Duration {
    INTERVAL.mul_f64(1.1) + (FAST.mul_f64(1.1) + TIMEOUT) * n + SLACK
}

/// A running checker and what it watches.
struct Checked {
    member: Arc<Member>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Checked {
    fn start(addr: SocketAddr, init_up: bool, send_expect: bool) -> Self {
        let config = MemberConfig {
            name: addr.to_string(),
            addr,
            weight: 1,
            tier: 0,
        };
        let member = Arc::new(Member::new(0, &config, init_up, Instant::now()));
        let shutdown = CancellationToken::new();
        let config = health(init_up, send_expect);
        let task = spawn_checker("db".into(), member.clone(), config, 1, shutdown.clone());
        Self {
            member,
            shutdown,
            task,
        }
    }

    async fn wait_up(&self, up: bool, within: Duration) {
        let what = format!("member {} up={up}", self.member.name());
        eventually(within, &what, || self.member.is_up() == up).await;
    }

    /// Asserts the member keeps its state for a few intervals.
    async fn stays_up(&self, up: bool) {
        let until = Instant::now() + INTERVAL * 4;
        while Instant::now() < until {
            assert_eq!(self.member.is_up(), up, "member flipped");
            sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), self.task)
            .await
            .expect("checker stops on shutdown")
            .expect("checker did not panic");
    }
}

/// Accepts until aborted, handing each connection to `handle`. Aborting drops the listener.
fn serve<F, Fut>(listener: TcpListener, handle: F) -> JoinHandle<()>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    })
}

async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Answers `PING\r\n` with `reply`, then reads to EOF so the checker closes first.
async fn answer(mut stream: TcpStream, reply: &'static [u8]) {
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    while !line.ends_with(b"\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => line.extend_from_slice(&buf[..n]),
        }
    }
    if line == PING {
        let _ = stream.write_all(reply).await;
    }
    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
}

/// Sends FIN at once, without replying, and reads to EOF: a clean "closed before reply".
async fn hang_up(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
}

/// Reads forever and never replies.
async fn silent(mut stream: TcpStream) {
    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
}

/// Formatted log output of the current thread (tests run on a current-thread runtime, so the
/// checker task logs here too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn lines(&self, containing: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| l.contains(containing))
            .map(str::to_string)
            .collect()
    }

    /// The single line containing `containing`; fails if there are none or several.
    fn one(&self, containing: &str) -> String {
        let lines = self.lines(containing);
        assert_eq!(
            lines.len(),
            1,
            "expected one {containing:?} line: {lines:#?}"
        );
        lines.into_iter().next().unwrap()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn connect_check_follows_listener_down_and_back_up() {
    let (logs, _guard) = Logs::capture();
    let (listener, addr) = loopback().await;
    let server = serve(listener, |stream| async move { drop(stream) });
    let checked = Checked::start(addr, false, false);
    checked.wait_up(true, within(1)).await;
    checked.stays_up(true).await;

    server.abort();
    let _ = server.await;
    checked.wait_up(false, within(RISE_FALL)).await;
    let down = logs.one("member down");
    assert!(down.contains("WARN"), "{down}");
    for field in [
        "pool=db".to_string(),
        format!("member={addr}"),
        r#"reason="connect refused""#.to_string(),
        format!("after={RISE_FALL}"),
    ] {
        assert!(down.contains(&field), "{field} missing: {down}");
    }

    // Tokio sets SO_REUSEADDR, but the port may still be briefly held; retry until a deadline.
    let listener = settle(SLACK, async || TcpListener::bind(addr).await, Result::is_ok)
        .await
        .unwrap_or_else(|e| panic!("rebinding {addr}: {e}"));
    let _server = serve(listener, |stream| async move { drop(stream) });
    checked.wait_up(true, within(RISE_FALL)).await;
    let ups = logs.lines("member up");
    assert_eq!(ups.len(), 2, "first probe, then recovery: {ups:#?}");
    assert!(
        ups[0].contains("INFO") && ups[0].contains("after=1"),
        "{ups:#?}"
    );
    assert!(ups[1].contains(&format!("after={RISE_FALL}")), "{ups:#?}");
    checked.stop().await;
}

#[tokio::test]
async fn expect_matching_pong_brings_member_up() {
    let (listener, addr) = loopback().await;
    let _server = serve(listener, |stream| answer(stream, PONG));
    assert_eq!(probe(addr, TIMEOUT, Some(PING), Some(PONG)).await, Ok(()));
    let checked = Checked::start(addr, false, true);
    checked.wait_up(true, within(1)).await;
    checked.stays_up(true).await;
    checked.stop().await;
}

#[tokio::test]
async fn expect_mismatch_takes_member_down_with_reason() {
    let (logs, _guard) = Logs::capture();
    let (listener, addr) = loopback().await;
    let _server = serve(listener, |stream| {
        answer(stream, b"-ERR unknown command\r\n")
    });
    let failure = probe(addr, TIMEOUT, Some(PING), Some(PONG)).await;
    assert!(
        matches!(&failure, Err(ProbeFailure::ExpectMismatch { got }) if got.starts_with(b"-")),
        "{failure:?}"
    );
    let checked = Checked::start(addr, true, true);
    checked.wait_up(false, within(1)).await;
    let down = logs.one("member down");
    // The reason is quoted, so its own quotes and escapes are escaped once more.
    assert!(
        down.contains(r#"reason="expect mismatch: got \"-"#),
        "{down}"
    );
    assert!(down.contains("after=1"), "first probe decides: {down}");
    checked.stays_up(false).await;
    checked.stop().await;
}

#[tokio::test]
async fn closing_at_once_fails_an_expect_probe() {
    let (logs, _guard) = Logs::capture();
    let (listener, addr) = loopback().await;
    let _server = serve(listener, hang_up);
    let failure = probe(addr, TIMEOUT, Some(PING), Some(PONG)).await;
    assert_eq!(failure, Err(ProbeFailure::ClosedEarly { got: Vec::new() }));
    let checked = Checked::start(addr, true, true);
    checked.wait_up(false, within(1)).await;
    assert!(
        logs.one("member down")
            .contains(r#"reason="closed before reply""#)
    );
    checked.stop().await;

    // Dropping the socket unread may reach us as FIN or, if our request arrived first, as RST.
    let (listener, addr) = loopback().await;
    let _server = serve(listener, |stream| async move { drop(stream) });
    let failure = probe(addr, TIMEOUT, Some(PING), Some(PONG)).await;
    assert!(
        matches!(
            failure,
            Err(ProbeFailure::ClosedEarly { .. } | ProbeFailure::Reset { .. })
        ),
        "{failure:?}"
    );
    let checked = Checked::start(addr, true, true);
    checked.wait_up(false, within(1)).await;
    checked.stop().await;
}

#[tokio::test]
async fn probe_names_refusal_and_the_phase_that_timed_out() {
    let (listener, addr) = loopback().await;
    drop(listener);
    assert_eq!(
        probe(addr, TIMEOUT, None, None).await,
        Err(ProbeFailure::Refused)
    );

    let (listener, addr) = loopback().await;
    let _server = serve(listener, silent);
    assert_eq!(
        probe(addr, TIMEOUT, Some(PING), None).await,
        Ok(()),
        "send only"
    );
    let timeout = Duration::from_millis(100);
    let failure = probe(addr, timeout, Some(PING), Some(PONG))
        .await
        .unwrap_err();
    assert_eq!(
        failure,
        ProbeFailure::Timeout {
            after: timeout,
            during: ProbePhase::Reply
        }
    );
    assert_eq!(failure.to_string(), "timeout after 100ms waiting for reply");
}

/// A connect-only probe stops at the member's SYN-ACK and resets (as HAProxy's does): the
/// member's application never sees a connection. A probe with `send` completes the handshake,
/// so the same listener then accepts it and gets the bytes.
#[tokio::test]
async fn connect_only_probe_never_reaches_the_members_accept_but_send_does() {
    let (listener, addr) = loopback().await;
    for _ in 0..5 {
        assert_eq!(probe(addr, TIMEOUT, None, None).await, Ok(()));
    }
    // A completed handshake would be in the accept queue at once; give a loaded machine 300ms.
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "connect-only probes completed a handshake: {accepted:?}"
    );

    assert_eq!(probe(addr, TIMEOUT, Some(PING), None).await, Ok(()));
    let (mut stream, _) = tokio::time::timeout(TIMEOUT, listener.accept())
        .await
        .expect("a send probe completes its handshake")
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, PING);
}
