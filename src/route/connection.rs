//! The life of one client connection: connect stack, relay, a closing log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Instrument, info, info_span, warn};

use crate::connect::{ConnectError, ConnectRequest, ConnectStack, Connected, Fault, MemberId};
use crate::relay::{self, RelayEnd, RelaySettings, Side};
use crate::telemetry::metrics as m;

/// What a route's connections share.
#[derive(Debug)]
pub struct RouteContext {
    pub name: Arc<str>,
    pub connect: ConnectStack,
    pub relay: RelaySettings,
    /// Cancelled when the shutdown grace runs out: live relays end at once.
    pub cut: CancellationToken,
    /// Connections ended by `cut`, for the shutdown summary.
    pub cut_count: Arc<AtomicUsize>,
    /// Upstreams tried in all when each one closes early (the route's `retry.attempts`).
    pub early_close_attempts: u32,
}

/// How a connection ended, as counted in `sluice_connections_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    UpstreamError,
    Timeout,
    RejectedRate,
    RejectedLimit,
    NoMember,
    ClientError,
    IdleTimeout,
    Shutdown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::RejectedRate => "rejected_rate",
            Self::RejectedLimit => "rejected_limit",
            Self::NoMember => "no_member",
            Self::ClientError => "client_error",
            Self::IdleTimeout => "idle_timeout",
            Self::Shutdown => "shutdown",
        }
    }
}

impl Outcome {
    /// The outcome of a connection whose connect stack failed.
    pub fn of(error: &ConnectError) -> Self {
        match error {
            ConnectError::Timeout { .. } => Self::Timeout,
            ConnectError::RateLimited { .. } => Self::RejectedRate,
            ConnectError::LimitReached { .. } => Self::RejectedLimit,
            ConnectError::NoEligibleMember(_) | ConnectError::CircuitOpen { .. } => Self::NoMember,
            e => match e.fault() {
                Fault::Upstream => Self::UpstreamError,
                Fault::Sluice => Self::NoMember,
            },
        }
    }
}

/// What a fresh upstream connection does first, watched for the member's `early_close` window.
enum FirstSign {
    /// The upstream sent a byte, or nothing happened within the window: it is healthy.
    Healthy,
    /// The client has bytes to send; they will go out now, so a redial is off the table.
    ClientSpoke,
    /// The upstream closed (`"closed"`) or reset (`"reset"`) before sending anything.
    UpstreamQuit(&'static str),
}

/// Gets an upstream through the connect stack, then watches it for an early close: a member
/// that accepts and hangs up at once (a crashed backend behind a still-open port, a proxy
/// whose own upstream is gone) fails its breaker, and while the client has sent nothing the
/// connection is redialled to another member. Client bytes are never replayed: once the
/// client speaks, its bytes go to this upstream and whatever it does is final.
async fn connect(
    route: &RouteContext,
    client: &TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<Connected, ConnectError> {
    let mut tried = Vec::new();
    let mut attempts = 0;
    loop {
        let request = ConnectRequest {
            client: peer,
            local,
            tried: tried.clone(),
        };
        let connected = route.connect.clone().oneshot(request).await?;
        attempts += 1;
        let member = Arc::clone(connected.member());
        let Some(window) = member.early_close() else {
            return Ok(connected);
        };
        let how = match first_sign(client, &connected.stream, window).await {
            FirstSign::Healthy | FirstSign::ClientSpoke => return Ok(connected),
            FirstSign::UpstreamQuit(how) => how,
        };
        member.report_early_close();
        let error = ConnectError::EarlyClose {
            member: MemberId::of(&member),
            within: window,
        };
        tried.push(member.index());
        if attempts >= route.early_close_attempts {
            return Err(error);
        }
        info!(
            member = member.name(),
            how,
            attempt = attempts,
            "upstream closed before sending a byte; redialling another member"
        );
    }
}

async fn first_sign(client: &TcpStream, upstream: &TcpStream, window: Duration) -> FirstSign {
    let (mut byte, mut client_byte) = ([0u8; 1], [0u8; 1]);
    tokio::select! {
        // The upstream's answer wins a tie: a member that sent its banner is healthy.
        biased;
        peeked = upstream.peek(&mut byte) => match peeked {
            Ok(0) => FirstSign::UpstreamQuit("closed"),
            Ok(_) => FirstSign::Healthy,
            Err(_) => FirstSign::UpstreamQuit("reset"),
        },
        // `peek`, not `readable()`: readiness may be a false positive, a peeked byte is not.
        // EOF or an error also ends the watch: a client that already left needs no redial.
        _ = client.peek(&mut client_byte) => FirstSign::ClientSpoke,
        () = tokio::time::sleep(window) => FirstSign::Healthy,
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Serves one accepted client until both directions are done.
pub(super) async fn serve(route: Arc<RouteContext>, client: TcpStream, peer: SocketAddr) {
    let conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("conn", conn_id, route = %route.name, client = %peer, member = tracing::field::Empty);
    let outcome = handle(&route, client, peer).instrument(span).await;
    metrics::counter!(m::CONNECTIONS_TOTAL, "route" => route.name.to_string(), "outcome" => outcome.as_str())
        .increment(1);
}

async fn handle(route: &RouteContext, client: TcpStream, peer: SocketAddr) -> Outcome {
    let started = Instant::now();
    // Bytes the client sends meanwhile wait in its socket's receive buffer; nothing is lost.
    let _ = client.set_nodelay(true);
    let Ok(local) = client.local_addr() else {
        return Outcome::ClientError;
    };
    let connected = match connect(route, &client, peer, local).await {
        Ok(c) => c,
        Err(e) => {
            // Dropping the client socket closes it at once: the client learns now rather than
            // after its own timeout.
            warn!(reason = e.reason(), error = %e, "connect failed; closing client");
            return Outcome::of(&e);
        }
    };
    tracing::Span::current().record("member", connected.member().name());
    let connect_time = connected.connect_time;
    let member = Arc::clone(connected.member());
    let relay_started = Instant::now();
    let report = relay::relay(
        client,
        connected.stream,
        Vec::new(),
        route.relay,
        &route.cut,
    )
    .await;
    drop(connected.guard);
    // The client spoke first, so the watch in `connect` handed over before the upstream
    // showed anything; an upstream that then closed without a byte still failed.
    if let Some(window) = member.early_close() {
        let upstream_quit = matches!(report.first_close, Some(Side::Upstream))
            || matches!(
                report.end,
                RelayEnd::Error {
                    side: Side::Upstream,
                    ..
                }
            );
        if upstream_quit && report.bytes_down == 0 && relay_started.elapsed() < window {
            member.report_early_close();
        }
    }

    let outcome = match &report.end {
        RelayEnd::Completed => Outcome::Ok,
        RelayEnd::IdleTimeout => Outcome::IdleTimeout,
        RelayEnd::Cut => {
            route.cut_count.fetch_add(1, Ordering::Relaxed);
            Outcome::Shutdown
        }
        RelayEnd::Error {
            side: Side::Client, ..
        } => Outcome::ClientError,
        RelayEnd::Error {
            side: Side::Upstream,
            ..
        } => Outcome::UpstreamError,
    };
    metrics::counter!(m::BYTES_TOTAL, "route" => route.name.to_string(), "direction" => "upstream")
        .increment(report.bytes_up);
    metrics::counter!(m::BYTES_TOTAL, "route" => route.name.to_string(), "direction" => "downstream")
        .increment(report.bytes_down);
    let error = match &report.end {
        RelayEnd::Error { error, .. } => Some(error.to_string()),
        _ => None,
    };
    info!(
        outcome = outcome.as_str(),
        bytes_up = report.bytes_up,
        bytes_down = report.bytes_down,
        first_close = report.first_close.map(|s| match s {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }),
        connect_ms = connect_time.as_secs_f64() * 1e3,
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        error,
        "connection closed"
    );
    outcome
}
