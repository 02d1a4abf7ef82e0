//! One health probe: TCP connect, optionally send bytes and expect a reply prefix or a
//! pattern; the HTTP probe (`health.http`) is in `http.rs` and shares the connect here.
//!
//! A probe owns its socket from connect to close and reports what went wrong as a
//! [`ProbeFailure`]; counting results and deciding health is left to the state machine.
//!
//! Closing depends on what the probe does:
//! - A pure connect check (no `send`, no `expect`) does what HAProxy's does: quick ACKs are
//!   turned off before connecting, so our kernel holds back the last ACK of the handshake,
//!   and the socket is closed with `SO_LINGER 0`, which answers the member's SYN-ACK with a
//!   RST. The SYN-ACK proves the member listens; the connection never completes, so the
//!   member's application never accepts it (nothing to log, no accept/close work) and neither
//!   side keeps a TIME_WAIT entry. Three packets instead of seven: with 1,000 members probed
//!   every second (the bench's health scenario) our CPU went from 6.5% to 5.8% of a core, and
//!   the members' listeners, like HAProxy's, counted no accepted connection.
//! - A probe that sends or expects bytes completes the handshake and closes with FIN, so the
//!   member sees an orderly disconnect rather than a reset it would log as an error. It first
//!   drains bytes already received, because closing with unread data makes the kernel send a
//!   RST anyway (a banner or a reply longer than `expect`). That leaves our side in TIME_WAIT,
//!   which is cheap: one member sees at most one probe per `fast_interval`, ~120 entries per
//!   member at 500ms on Linux's 60s TIME_WAIT, against ~28k ephemeral ports per destination.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use regex::bytes::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};

use crate::config::{Expect, HealthConfig};

/// Reply bytes kept for a failure message; enough to show an error line.
const MAX_SHOWN: usize = 64;
/// How much of a reply a pattern is matched against: an INFO reply's role line comes within
/// its first few KiB, and a member streaming at us must not grow the checker's memory.
pub(crate) const MAX_MATCHED: usize = 16 * 1024;

/// What a failed probe was doing when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbePhase {
    Connect,
    Send,
    Reply,
}

impl fmt::Display for ProbePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "while connecting",
            Self::Send => "while sending",
            Self::Reply => "waiting for reply",
        })
    }
}

/// Why a probe failed. The `Display` text is the `reason` operators see in logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// Nothing listens on the address (RST to our SYN).
    #[error("connect refused")]
    Refused,
    /// The whole probe (connect, send and reply together) outlasted the configured timeout.
    #[error("timeout after {} {during}", humantime::format_duration(*after))]
    Timeout { after: Duration, during: ProbePhase },
    /// The member reset the connection.
    #[error("connection reset {during}")]
    Reset { during: ProbePhase },
    /// Any other socket error, e.g. `network unreachable while connecting`.
    #[error("{kind} {during}")]
    Io {
        kind: io::ErrorKind,
        during: ProbePhase,
    },
    /// sluice itself ran short (out of descriptors, memory or local ports) before or while
    /// connecting: the probe says nothing about the member, whose state stays as it was.
    #[error("no local resource to probe with: {error}")]
    LocalResource { error: String },
    /// The reply does not start with the expected bytes; `got` holds its first bytes.
    #[error("expect mismatch: got \"{}\"", got.escape_ascii())]
    ExpectMismatch { got: Vec<u8> },
    /// The member closed before sending all expected bytes; `got` is what it did send.
    #[error("{}", closed_early(got))]
    ClosedEarly { got: Vec<u8> },
    /// `expect = { regex }` found no match in the `read` bytes the member sent before it
    /// closed, the timeout ran out or `MAX_MATCHED` (16 KiB) was reached; `got` holds their start.
    #[error("expect regex \"{pattern}\" not found in {read} bytes: got \"{}\"", got.escape_ascii())]
    RegexMismatch {
        pattern: String,
        read: usize,
        got: Vec<u8>,
    },
    /// The HTTP probe's response had another status than `health.http.expect_status`.
    #[error("HTTP status {got}, expected {expected}")]
    HttpStatus { expected: u16, got: u16 },
    /// The HTTP probe got something that is not an HTTP/1 response.
    #[error("bad HTTP response: {error}")]
    HttpInvalid { error: String },
}

fn closed_early(got: &[u8]) -> String {
    if got.is_empty() {
        "closed before reply".to_string()
    } else {
        format!("closed after partial reply \"{}\"", got.escape_ascii())
    }
}

impl ProbeFailure {
    pub(super) fn from_io(err: io::Error, during: ProbePhase) -> Self {
        if crate::resources::is_local_exhaustion(&err) {
            return Self::LocalResource {
                error: err.to_string(),
            };
        }
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::Reset { during },
            kind => Self::Io { kind, during },
        }
    }
}

/// What a reply must hold, borrowed from the config for one probe.
#[derive(Clone, Copy)]
enum Want<'a> {
    Prefix(&'a [u8]),
    Regex(&'a Regex),
}

/// Probes `addr` once, all within `timeout`: connect, write `send` if set, then read until the
/// reply holds `expect.len()` bytes and check that it starts with `expect`.
///
/// Without `expect` a probe passes once connected (and `send` written); the reply is not read.
/// With `expect`, a member that closes before replying in full fails ([`ClosedEarly`]), and a
/// reply that diverges fails as soon as it does, without waiting for the rest. An empty `send`
/// or `expect` counts as unset.
///
/// [`ClosedEarly`]: ProbeFailure::ClosedEarly
pub async fn probe(
    addr: SocketAddr,
    timeout: Duration,
    send: Option<&[u8]>,
    expect: Option<&[u8]>,
) -> Result<(), ProbeFailure> {
    let expect = expect.filter(|b| !b.is_empty()).map(Want::Prefix);
    run(addr, timeout, send, expect).await
}

/// Probes `addr` once as `config` says: the HTTP GET of `config.http`, or connect, `send` and
/// `expect`. A regex `expect` passes as soon as the bytes read so far match, and fails once the
/// member closes, `MAX_MATCHED` (16 KiB) bytes are read or the timeout is near without a match
/// ([`RegexMismatch`]). `addr` is the probe address ([`HealthConfig::probe_addr`]).
///
/// [`RegexMismatch`]: ProbeFailure::RegexMismatch
pub async fn check(addr: SocketAddr, config: &HealthConfig) -> Result<(), ProbeFailure> {
    if let Some(http) = &config.http {
        return super::http::probe(addr, config.timeout, http).await;
    }
    let expect = config.expect.as_ref().map(|e| match e {
        Expect::Prefix(bytes) => Want::Prefix(bytes),
        Expect::Regex(re) => Want::Regex(re),
    });
    run(addr, config.timeout, config.send.as_deref(), expect).await
}

async fn run(
    addr: SocketAddr,
    timeout: Duration,
    send: Option<&[u8]>,
    expect: Option<Want<'_>>,
) -> Result<(), ProbeFailure> {
    let mut during = ProbePhase::Connect;
    let deadline = crate::time::later(Instant::now(), timeout);
    let work = exchange(addr, send, expect, deadline, &mut during);
    let result = timeout_at(deadline, work).await;
    result.unwrap_or(Err(ProbeFailure::Timeout {
        after: timeout,
        during,
    }))
}

/// Opens the probe's connection: see the module doc for `connect_only`.
pub(super) async fn connect(
    addr: SocketAddr,
    connect_only: bool,
) -> Result<TcpStream, ProbeFailure> {
    let connect_error = |e| ProbeFailure::from_io(e, ProbePhase::Connect);
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(connect_error)?;
    if connect_only {
        // Best effort: if the kernel refuses, the handshake completes and the RST below still
        // closes it, only at the cost of the member accepting it first.
        let _ = socket2::SockRef::from(&socket).set_tcp_quickack(false);
    }
    socket.connect(addr).await.map_err(connect_error)
}

/// The probe without its deadline, which only the regex read looks at. `during` tracks the
/// phase so a timeout can name it.
async fn exchange(
    addr: SocketAddr,
    send: Option<&[u8]>,
    expect: Option<Want<'_>>,
    deadline: Instant,
    during: &mut ProbePhase,
) -> Result<(), ProbeFailure> {
    let send = send.filter(|b| !b.is_empty());
    let connect_only = send.is_none() && expect.is_none();
    let mut stream = connect(addr, connect_only).await?;
    if connect_only {
        reset(stream);
        return Ok(());
    }
    let result = talk(&mut stream, send, expect, deadline, during).await;
    close(stream);
    result
}

async fn talk(
    stream: &mut TcpStream,
    send: Option<&[u8]>,
    expect: Option<Want<'_>>,
    deadline: Instant,
    during: &mut ProbePhase,
) -> Result<(), ProbeFailure> {
    if let Some(bytes) = send {
        *during = ProbePhase::Send;
        stream
            .write_all(bytes)
            .await
            .map_err(|e| ProbeFailure::from_io(e, ProbePhase::Send))?;
    }
    *during = ProbePhase::Reply;
    match expect {
        None => Ok(()),
        Some(Want::Prefix(expect)) => read_prefix(stream, expect).await,
        Some(Want::Regex(re)) => read_match(stream, re, deadline).await,
    }
}

async fn read_prefix(stream: &mut TcpStream, expect: &[u8]) -> Result<(), ProbeFailure> {
    let mut got = Vec::with_capacity(expect.len());
    let mut chunk = [0u8; 256];
    while got.len() < expect.len() {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProbeFailure::from_io(e, ProbePhase::Reply))?;
        if n == 0 {
            return Err(ProbeFailure::ClosedEarly { got });
        }
        got.extend_from_slice(&chunk[..n]);
        let common = got.len().min(expect.len());
        if got[..common] != expect[..common] {
            got.truncate(MAX_SHOWN);
            return Err(ProbeFailure::ExpectMismatch { got });
        }
    }
    Ok(())
}

/// Reads until `re` matches the reply so far. A server that keeps the connection open after
/// its reply (Redis after INFO) is only left at `deadline`; if it has sent something by then,
/// the failure is the mismatch, which says more than a timeout would. The reply is matched
/// whole after each read, so a match split across reads is found; `MAX_MATCHED` (16 KiB) bounds that
/// work.
async fn read_match(
    stream: &mut TcpStream,
    re: &Regex,
    deadline: Instant,
) -> Result<(), ProbeFailure> {
    let mut got = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mismatch = |mut got: Vec<u8>| {
        let read = got.len();
        got.truncate(MAX_SHOWN);
        ProbeFailure::RegexMismatch {
            pattern: re.as_str().to_string(),
            read,
            got,
        }
    };
    loop {
        let room = (MAX_MATCHED - got.len()).min(chunk.len());
        let n = match timeout_at(deadline, stream.read(&mut chunk[..room])).await {
            // Nothing arrived at all: the caller's deadline reports a timeout.
            Err(_) if got.is_empty() => std::future::pending().await,
            Err(_) => return Err(mismatch(got)),
            Ok(read) => read.map_err(|e| ProbeFailure::from_io(e, ProbePhase::Reply))?,
        };
        if n == 0 {
            return Err(if got.is_empty() {
                ProbeFailure::ClosedEarly { got }
            } else {
                mismatch(got)
            });
        }
        got.extend_from_slice(&chunk[..n]);
        if re.is_match(&got) {
            return Ok(());
        }
        if got.len() >= MAX_MATCHED {
            return Err(mismatch(got));
        }
    }
}

/// Closes a connect-only probe with RST, before its handshake completes: see the module doc.
fn reset(stream: TcpStream) {
    // If SO_LINGER cannot be set, dropping closes with FIN, which is correct, only slower.
    let _ = stream.set_zero_linger();
}

/// Closes with FIN rather than RST where we can: see the module doc.
fn close(stream: TcpStream) {
    let mut sink = [0u8; 1024];
    // Bounded: a member streaming data at us must not keep the checker busy.
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
