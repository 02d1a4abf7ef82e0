//! The life of one client connection: connect stack (which makes every redial), relay, access
//! line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use tokio::net::TcpStream;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Instrument, debug, info, info_span, warn};

use super::accept_proxy;
use super::outcome::Outcome;
use super::per_client::PerClient;
use crate::config::{AcceptProxy, ClientFilter, OnSilent, SocketOptions};
use crate::connect::{ConnectError, ConnectRequest, ConnectStack};
use crate::relay::{self, RelayEnd, RelaySettings, Side, SilentWatch};
use crate::resources::{self, ShortageAt};
use crate::telemetry::access_log::{self, AccessRecord};
use crate::telemetry::metrics as m;
use crate::upstream::Member;

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
    /// Counts of this route's connections, shared with the route's next version on reload.
    pub stats: Arc<RouteStats>,
    /// `allow` / `deny`: checked on the client's address before anything else.
    pub clients: ClientFilter,
    /// `accept_proxy`: the PROXY header every connection must start with.
    pub accept_proxy: Option<AcceptProxy>,
    /// Client socket options (`tcp_nodelay`, `tcp_keepalive`).
    pub socket: SocketOptions,
    /// `max_connections_per_client`, when set.
    pub per_client: Option<Arc<PerClient>>,
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

    /// A client accepted and closed at once for sluice's own shortage (`resources::shed_one`):
    /// it counts in the total like any accepted client.
    pub fn count_shed(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
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
    // Its descriptors are free now: if shedding lost the spare, take it back.
    let _ = resources::restore_spare_fd();
    route.stats.active.fetch_sub(1, Ordering::Relaxed);
    active.decrement(1.0);
}

async fn handle(route: &RouteContext, mut client: TcpStream, peer: SocketAddr, conn_id: u64) {
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
    // Behind a load balancer: the real client is in the PROXY header, trusted only from the
    // balancers (`accept_proxy_from`). From here on `peer` is that client: allow/deny, rate
    // limits, the access line and a PROXY header sent upstream all name it.
    let mut peer = peer;
    let mut announced_local = None;
    if let Some(accept) = &route.accept_proxy {
        if !accept
            .from
            .iter()
            .any(|n| n.contains(&peer.ip().to_canonical()))
        {
            debug!(source = %peer, "accept_proxy: connection from an untrusted source; closed");
            return finish(route, record, Outcome::Denied, "PR", started);
        }
        let header = accept_proxy::read_header(&mut client, accept.version);
        match tokio::time::timeout(accept.timeout, header).await {
            Ok(Ok(Some((client_addr, local_addr)))) => {
                peer = client_addr;
                announced_local = Some(local_addr);
                record.client = peer;
                tracing::Span::current().record("client", tracing::field::display(peer));
            }
            // LOCAL / UNKNOWN: the balancer speaking for itself; its own addresses stand.
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "accept_proxy: no valid PROXY header; closed");
                return finish(route, record, Outcome::ClientError, "CR", started);
            }
            Err(_) => {
                debug!(after = ?accept.timeout, "accept_proxy: PROXY header incomplete; closed");
                return finish(route, record, Outcome::ClientError, "CR", started);
            }
        }
    }
    // Before any limit, rate token or member is touched: a refused address costs nothing.
    // Dropping the socket closes it; the client learns at once.
    // Routes without allow/deny lists skip the check (no canonicalizing, no list walk).
    if !route.clients.is_open() && !route.clients.admits(peer.ip()) {
        return finish(route, record, Outcome::Denied, "PR", started);
    }
    // Held until the connection ends (this function returns).
    let _per_client = match &route.per_client {
        None => None,
        Some(limit) => match limit.admit(peer.ip()) {
            Some(guard) => Some(guard),
            None => {
                debug!(
                    max = limit.max(),
                    "max_connections_per_client reached; closed"
                );
                return finish(route, record, Outcome::RejectedLimit, "PR", started);
            }
        },
    };
    // Bytes the client sends meanwhile wait in its socket's receive buffer; nothing is lost.
    crate::connect::socket_options::apply(&client, &route.socket);
    let Ok(local) = announced_local.map_or_else(|| client.local_addr(), Ok) else {
        return finish(route, record, Outcome::ClientError, "CR", started);
    };
    // The stack may peek at the client (has it spoken? has it left?) while it connects; the
    // request and every copy of it are gone when `oneshot` returns, so the socket is ours again.
    let client = Arc::new(client);
    let request = ConnectRequest::new(peer, local).with_socket(Arc::clone(&client));
    let attempts = Arc::clone(&request.attempts);
    let connected = route.connect.clone().oneshot(request).await;
    record.attempts = attempts.load(Ordering::Relaxed);
    let Ok(client) = Arc::try_unwrap(client) else {
        // Unreachable by construction (nothing in the stack outlives the call); if it ever
        // were, closing this one client beats panicking the worker.
        tracing::error!("connect stack kept the client socket; closing the client");
        return finish(route, record, Outcome::ClientError, "CR", started);
    };
    let connected = match connected {
        Ok(c) => c,
        Err(e) => {
            // Dropping the client socket closes it at once: the client learns now rather than
            // after its own timeout.
            match &e {
                // Throttled with the rest of the shortage: under EMFILE every client meets it.
                ConnectError::LocalResource { source, .. } => {
                    resources::report_shortage(ShortageAt::Connect, source);
                }
                e => warn!(reason = e.reason(), error = %e, "connect failed; closing client"),
            }
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
    let on_silent = |after: Duration| silent(&member, after);
    let watch = member.silent().map(|s| SilentWatch {
        after: s.after,
        close: s.on_silent == OnSilent::Close,
        on_silent: &on_silent,
    });
    // The server's cut, or with `on_member_down = "close"` a child of it the member cancels
    // when it goes down, is drained or leaves the pool.
    let cut = member.relay_token(&route.cut);
    // `max_connection_lifetime`: a child of the relay's token that a timer cancels; the timer
    // task ends with the connection (it also waits on the token, cancelled below).
    let lifetime = member.connection_lifetime();
    let cut = match lifetime {
        None => cut,
        Some(after) => {
            let child = cut.child_token();
            let timer = child.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(after) => timer.cancel(),
                    () = timer.cancelled() => {}
                }
            });
            child
        }
    };
    let report = relay::relay_watched(
        client,
        connected.stream,
        Vec::new(),
        route.relay,
        watch,
        &cut,
    )
    .await;
    if lifetime.is_some() {
        // Ends the lifetime timer of a connection that finished first.
        cut.cancel();
    }
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

    let (mut outcome, code) = Outcome::of_relay(&report.end);
    if outcome == Outcome::Shutdown
        && !route.cut.is_cancelled()
        && lifetime.is_some_and(|l| relay_started.elapsed() >= l)
    {
        outcome = Outcome::LifetimeEnded;
        info!("connection cut: max_connection_lifetime reached");
    } else if outcome == Outcome::Shutdown && !route.cut.is_cancelled() {
        if member.tier() > 0 && member.is_up() && !member.is_drained() {
            // A backup still fine: cut because a primary came back (on_primary_return).
            outcome = Outcome::BackupClosed;
            info!("connection cut: a primary came back (on_primary_return = close)");
        } else {
            // Cut by the member's own token: it went down, was drained or left the pool.
            outcome = Outcome::MemberDown;
            info!(
                "connection cut: its member went down, was drained or left (on_member_down = close)"
            );
        }
    } else if outcome == Outcome::Shutdown {
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

/// The member stayed silent after the client spoke: one failure against its breaker, a WARN
/// and `sluice_member_silent_total`. Once per connection, in the connection's span.
fn silent(member: &Member, after: Duration) {
    warn!(
        pool = &**member.pool(),
        member = member.name(),
        after = ?after,
        "member silent after the client's request; counted as a member failure"
    );
    metrics::counter!(
        m::MEMBER_SILENT_TOTAL,
        "pool" => Arc::clone(member.pool()),
        "member" => member.name_arc()
    )
    .increment(1);
    member.report_silent();
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
