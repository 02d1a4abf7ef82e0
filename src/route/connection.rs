//! The life of one client connection: connect stack, early-close watch, relay, access line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use tokio::net::TcpStream;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Instrument, info, info_span, warn};

use super::outcome::Outcome;
use crate::connect::{ConnectError, ConnectRequest, ConnectStack, Connected, MemberId};
use crate::relay::{self, RelayEnd, RelaySettings, Side};
use crate::telemetry::access_log::{self, AccessRecord};
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
    /// Counts of this route's connections, shared with the route's next version on reload.
    pub stats: Arc<RouteStats>,
}

/// Connection counts of a route, read by `/status`; they survive reloads that keep the route.
#[derive(Debug, Default)]
pub struct RouteStats {
    active: AtomicU64,
    total: AtomicU64,
}

impl RouteStats {
    /// Connections being served now (connecting or relaying).
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Connections accepted since startup.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Serves one accepted client until both directions are done, then counts and logs it.
pub(super) async fn serve(route: Arc<RouteContext>, client: TcpStream, peer: SocketAddr) {
    let conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let span = info_span!(
        "conn",
        conn_id,
        route = %route.name,
        client = %peer,
        member = tracing::field::Empty
    );
    let active = metrics::gauge!(m::ACTIVE_CONNECTIONS, "route" => Arc::clone(&route.name));
    active.increment(1.0);
    route.stats.active.fetch_add(1, Ordering::Relaxed);
    route.stats.total.fetch_add(1, Ordering::Relaxed);
    handle(&route, client, peer, conn_id).instrument(span).await;
    route.stats.active.fetch_sub(1, Ordering::Relaxed);
    active.decrement(1.0);
}

async fn handle(route: &RouteContext, client: TcpStream, peer: SocketAddr, conn_id: u64) {
    let start = SystemTime::now();
    let started = Instant::now();
    let mut record = AccessRecord {
        conn_id,
        start,
        client: peer,
        route: &route.name,
        member: None,
        attempts: 0,
        connect_time: None,
        duration: Duration::ZERO,
        bytes_up: 0,
        bytes_down: 0,
        outcome: "",
        termination: "",
        first_close: None,
    };
    // Bytes the client sends meanwhile wait in its socket's receive buffer; nothing is lost.
    let _ = client.set_nodelay(true);
    let Ok(local) = client.local_addr() else {
        return finish(route, record, Outcome::ClientError, "CR", started);
    };
    let request = ConnectRequest::new(peer, local);
    let connected = connect(route, &client, request.clone()).await;
    record.attempts = request.attempts();
    let connected = match connected {
        Ok(c) => c,
        Err(e) => {
            // Dropping the client socket closes it at once: the client learns now rather than
            // after its own timeout.
            warn!(reason = e.reason(), error = %e, "connect failed; closing client");
            let member = e.member().map(|m| Arc::clone(&m.name));
            record.member = member.as_deref();
            let (outcome, code) = Outcome::of_connect(&e);
            return finish(route, record, outcome, code, started);
        }
    };
    let member = Arc::clone(connected.member());
    tracing::Span::current().record("member", member.name());
    record.member = Some(member.name());
    record.connect_time = Some(connected.connect_time);

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
    drop(connected.permits);
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

    let (outcome, code) = Outcome::of_relay(&report.end);
    if outcome == Outcome::Shutdown {
        route.cut_count.fetch_add(1, Ordering::Relaxed);
    }
    if let RelayEnd::Error { side, error } = &report.end {
        info!(side = side_name(*side), %error, "connection ended by an error");
    }
    let route_label = Arc::clone(&route.name);
    metrics::counter!(m::BYTES_TOTAL, "route" => Arc::clone(&route_label), "direction" => "upstream")
        .increment(report.bytes_up);
    metrics::counter!(m::BYTES_TOTAL, "route" => route_label, "direction" => "downstream")
        .increment(report.bytes_down);
    record.bytes_up = report.bytes_up;
    record.bytes_down = report.bytes_down;
    record.first_close = report.first_close.map(side_name);
    finish(route, record, outcome, code, started);
}

/// Counts the connection and writes its access line.
fn finish(
    route: &RouteContext,
    mut record: AccessRecord<'_>,
    outcome: Outcome,
    termination: &'static str,
    started: Instant,
) {
    metrics::counter!(
        m::CONNECTIONS_TOTAL,
        "route" => Arc::clone(&route.name),
        "outcome" => outcome.as_str()
    )
    .increment(1);
    record.outcome = outcome.as_str();
    record.termination = termination;
    record.duration = started.elapsed();
    access_log::emit(&record);
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Upstream => "upstream",
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
    mut request: ConnectRequest,
) -> Result<Connected, ConnectError> {
    let mut upstreams = 0;
    loop {
        let connected = route.connect.clone().oneshot(request.clone()).await?;
        upstreams += 1;
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
        request.tried.push(member.index());
        if upstreams >= route.early_close_attempts {
            return Err(error);
        }
        info!(
            member = member.name(),
            how,
            attempt = upstreams,
            "upstream closed before sending a byte; redialling another member"
        );
        metrics::counter!(m::RETRIES_TOTAL, "route" => Arc::clone(&route.name)).increment(1);
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
