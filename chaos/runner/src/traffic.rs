//! The traffic generator: clients through sluice, every byte checked.
//!
//! Connections start on a fixed schedule (`rate` per second from the start of traffic), at most
//! `clients` at once: when all are busy the next arrival waits for a free one, and the schedule
//! then catches up, so the generator never holds more connections open than declared. With `clients = 1` the next client also waits until sluice has closed
//! the last connection (the pool reports no active connection), so every balancer pick sees the
//! same state on every run: that is what makes a seeded drill repeat its member choices.
//!
//! Each client reads the member's banner (which names the member), then runs the echo or sink
//! exchange with its own pseudo-random payload and checks every byte by checksum.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::scenario::Traffic;
use super::wire::{self, Checksum, ServerKind};

/// How long a sequential client waits for sluice to finish the previous connection.
const IDLE_WAIT: Duration = Duration::from_secs(2);

/// How one client connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every byte came back and matched.
    Ok,
    /// Connecting to sluice failed.
    Refused,
    /// A reset or broken pipe before the exchange completed.
    Reset,
    /// EOF before the banner or before every byte came back.
    ClosedEarly,
    /// The exchange outlasted `traffic.timeout`.
    Timeout,
    /// The bytes came back complete but wrong: the one outcome a forwarder must never cause.
    Corrupt,
    /// The first bytes were not a drill banner.
    BadBanner,
    Io,
    /// A `[traffic] command` run exited non-zero.
    Failed,
}

impl Outcome {
    pub fn is_ok(self) -> bool {
        self == Self::Ok
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Reset => "reset",
            Self::ClosedEarly => "closed_early",
            Self::Timeout => "timeout",
            Self::Corrupt => "corrupt",
            Self::BadBanner => "bad_banner",
            Self::Io => "io",
            Self::Failed => "failed",
        }
    }

    fn of(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::Reset,
            io::ErrorKind::UnexpectedEof => Self::ClosedEarly,
            _ => Self::Io,
        }
    }
}

/// One client connection, times from the start of traffic.
#[derive(Clone, Debug, Serialize)]
pub struct ClientRecord {
    /// Arrival order, from 0.
    pub id: u64,
    #[serde(rename = "start_ms", serialize_with = "super::report::ms")]
    pub start: Duration,
    #[serde(rename = "end_ms", serialize_with = "super::report::ms")]
    pub end: Duration,
    /// The client's own address, as sluice's access log names it.
    pub local: Option<SocketAddr>,
    /// The member whose banner it read.
    pub member: Option<u32>,
    /// Payload bytes (without banner and framing).
    pub payload: u64,
    /// Bytes written and read on the socket, banner and framing included.
    pub sent: u64,
    pub received: u64,
    pub outcome: Outcome,
    /// Why a `[traffic] command` run failed: its exit status and the tail of its stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Runs the traffic from `t0` for `traffic.duration`; returns every client in arrival order.
/// `idle` (used when `clients` is 1) says whether sluice holds no connection.
pub async fn run(
    target: SocketAddr,
    traffic: &Traffic,
    seed: u64,
    t0: Instant,
    idle: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
) -> Vec<ClientRecord> {
    let mut records = Vec::new();
    run_each(target, traffic, seed, t0, idle, |r| records.push(r)).await;
    records.sort_by_key(|r| r.id);
    records
}

/// Like [`run`], but hands each client to `done` as it finishes (in completion order, not
/// arrival order) instead of keeping them, so a long run holds only the clients still open:
/// what a soak needs to measure sluice's memory rather than its own. Returns how many clients
/// started.
pub async fn run_each(
    target: SocketAddr,
    traffic: &Traffic,
    seed: u64,
    t0: Instant,
    idle: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    mut done: impl FnMut(ClientRecord),
) -> u64 {
    let slots = Arc::new(Semaphore::new(traffic.clients));
    let period = Duration::from_secs_f64(1.0 / traffic.rate);
    let mut ticks = tokio::time::interval_at(t0, period);
    // A late tick fires at once, so a loaded machine still gets `rate` connections a second
    // on average (shifting the schedule instead loses a little on every tick); `clients`
    // bounds how many of those catch-up arrivals can be open together.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let end = t0 + traffic.duration;
    let mut clients = JoinSet::new();
    let mut started = 0;
    for id in 0u64.. {
        // Reap without waiting: finished clients are handed on at the next arrival at the
        // latest. (Waiting on `join_next` in the select below could drop a tick already taken.)
        while let Some(finished) = clients.try_join_next() {
            reap(finished, &mut done);
        }
        let slot = tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            slot = async {
                ticks.tick().await;
                Arc::clone(&slots).acquire_owned().await
            } => slot,
        };
        let Ok(slot) = slot else { break };
        if Instant::now() >= end {
            break;
        }
        if traffic.clients == 1
            && let Some(idle) = &idle
        {
            wait_idle(idle.as_ref()).await;
        }
        let spread = traffic.payload_max - traffic.payload_min + 1;
        let len = traffic.payload_min + wire::mix(seed ^ id.wrapping_mul(0x9E37)) % spread;
        let (timeout, client_first) = (traffic.timeout, traffic.client_first);
        clients.spawn(async move {
            let record = client(target, id, len, seed, t0, timeout, client_first).await;
            drop(slot);
            record
        });
        started += 1;
    }
    while let Some(finished) = clients.join_next().await {
        reap(finished, &mut done);
    }
    started
}

/// A client task cannot fail (every error is an outcome); a panic in one is a drill bug.
fn reap(
    finished: Result<ClientRecord, tokio::task::JoinError>,
    done: &mut impl FnMut(ClientRecord),
) {
    match finished {
        Ok(record) => done(record),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {}
    }
}

/// Polls until `idle` holds or [`IDLE_WAIT`] passes (then goes on: a stuck connection must
/// not stall the drill).
async fn wait_idle(idle: &(dyn Fn() -> bool + Send + Sync)) {
    let deadline = Instant::now() + IDLE_WAIT;
    while !idle() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn client(
    target: SocketAddr,
    id: u64,
    len: u64,
    seed: u64,
    t0: Instant,
    timeout: Duration,
    client_first: bool,
) -> ClientRecord {
    let start = Instant::now();
    let mut r = ClientRecord {
        id,
        start: start.saturating_duration_since(t0),
        end: Duration::ZERO,
        local: None,
        member: None,
        payload: len,
        sent: 0,
        received: 0,
        outcome: Outcome::Io,
        detail: None,
    };
    let payload = wire::payload(len as usize, wire::mix(seed).wrapping_add(id));
    r.outcome =
        match tokio::time::timeout(timeout, exchange(target, &payload, client_first, &mut r)).await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::of(&e),
            Err(_) => Outcome::Timeout,
        };
    r.end = Instant::now().saturating_duration_since(t0);
    r
}

/// Payload bytes a `client_first` client sends before it reads the banner: one small request.
const FIRST_BYTES: usize = 64;

async fn exchange(
    target: SocketAddr,
    payload: &[u8],
    client_first: bool,
    r: &mut ClientRecord,
) -> io::Result<Outcome> {
    let mut s = TcpStream::connect(target).await?;
    r.local = s.local_addr().ok();
    let _ = s.set_nodelay(true);
    // Echo members only (validated): the member echoes these after its banner.
    let early = if client_first {
        payload.len().min(FIRST_BYTES)
    } else {
        0
    };
    s.write_all(&payload[..early]).await?;
    let mut banner = [0u8; wire::BANNER_LEN];
    s.read_exact(&mut banner).await?;
    r.received += banner.len() as u64;
    let Some((kind, member)) = wire::parse_banner(&banner) else {
        return Ok(Outcome::BadBanner);
    };
    r.member = Some(member);
    let (mut rd, mut wr) = s.split();
    match kind {
        ServerKind::Echo => {
            let mut back = vec![0u8; payload.len()];
            let (_, got) = tokio::try_join!(
                async {
                    wr.write_all(&payload[early..]).await?;
                    Ok::<_, io::Error>(())
                },
                read_full(&mut rd, &mut back),
            )?;
            r.sent = payload.len() as u64;
            r.received += got as u64;
            if got < payload.len() {
                return Ok(Outcome::ClosedEarly);
            }
            Ok(verdict(Checksum::of(&back) == Checksum::of(payload)))
        }
        ServerKind::Sink => {
            let mut reply = Vec::with_capacity(wire::SINK_REPLY_LEN);
            let (_, ()) = tokio::try_join!(
                async {
                    wr.write_all(&(payload.len() as u64).to_be_bytes()).await?;
                    wr.write_all(payload).await?;
                    Ok::<_, io::Error>(())
                },
                async {
                    // One byte past the reply is enough to see a reply that is too long.
                    (&mut rd)
                        .take(wire::SINK_REPLY_LEN as u64 + 1)
                        .read_to_end(&mut reply)
                        .await
                        .map(drop)
                },
            )?;
            r.sent = 8 + payload.len() as u64;
            r.received += reply.len() as u64;
            if reply.len() < wire::SINK_REPLY_LEN {
                return Ok(Outcome::ClosedEarly);
            }
            let expected = wire::sink_reply(payload.len() as u64, Checksum::of(payload));
            Ok(verdict(reply == expected))
        }
    }
}

fn verdict(intact: bool) -> Outcome {
    if intact {
        Outcome::Ok
    } else {
        Outcome::Corrupt
    }
}

/// Reads until `buf` is full or EOF; returns how much arrived.
async fn read_full(rd: &mut (impl AsyncReadExt + Unpin), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match rd.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
