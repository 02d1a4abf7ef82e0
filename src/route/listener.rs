//! Listening sockets and the accept loop of a route.
//!
//! Sockets are made with `socket2` so the backlog is the configured one (tokio's `bind` fixes
//! it at 1024) and `SO_REUSEADDR` lets a restarted sluice bind while old connections sit in
//! TIME_WAIT. IPv6 listeners are v6-only so `[::]:80` and `0.0.0.0:80` can both be routes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};

use super::connection::{self, RouteContext};
use super::outcome::Outcome;
use crate::resources::{self, ShortageAt};
use crate::telemetry::throttle::Throttle;

/// Accept errors other than a resource shortage (which `resources` throttles): one line a second.
static ACCEPT_ERRORS: Throttle = Throttle::new(Duration::from_secs(1));

/// Binds one listen address with the given backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    bind_with(addr, backlog, false)
}

/// Binds `count` sockets on one address with `SO_REUSEPORT`, so the kernel spreads new
/// connections over them (nginx's `reuseport`): each gets its own accept loop and no single
/// accept queue is shared by every worker. With port 0 the first socket picks the port and the
/// others join it.
pub fn bind_reuse_port(
    addr: SocketAddr,
    backlog: u32,
    count: usize,
) -> io::Result<Vec<TcpListener>> {
    let first = bind_with(addr, backlog, true)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(bind_with(addr, backlog, true)?);
    }
    Ok(sockets)
}

fn bind_with(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    TcpListener::from_std(socket.into())
}

/// Accepts until `stop` is cancelled, then drops the listener so new connects are refused.
/// Every connection task is spawned on `tracker` so shutdown can wait for them.
/// `route` is read at each accept: a reload swaps in the new route (stack, pool, settings)
/// under the same socket, and connections already accepted keep the one they started with.
pub async fn accept_loop(
    listener: TcpListener,
    route: Arc<ArcSwap<RouteContext>>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    resources::reserve_spare_fd();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let route = route.load_full();
        match accepted {
            Ok((stream, client)) => {
                // If shedding lost its spare to another thread, a descriptor free now goes to
                // the spare before this client's member connect can take it: otherwise the
                // last free pair could become one more idle relay and leave none to shed with.
                let _ = resources::restore_spare_fd();
                tracker.spawn(connection::serve(route, stream, client));
            }
            Err(e) if is_per_connection(&e) => {
                debug!(route = %route.name, error = %e, "accept: connection aborted before accept");
            }
            Err(e) => {
                // Out of fds or memory: accepting again at once would spin. Back off briefly so
                // live connections can finish and free what we need. Every worker's loop meets
                // it every pause, so the line is throttled with a count of the ones held back.
                if resources::is_local_exhaustion(&e) {
                    resources::report_shortage(ShortageAt::Accept, &e);
                    // A waiting client is closed now rather than left hanging; while there
                    // are more, take the next one at once (a freed descriptor goes to a real
                    // accept first, at the top of the loop).
                    // A descriptor came free since: a real accept gets it, not a shed.
                    if resources::restore_spare_fd() {
                        continue;
                    }
                    // Only a descriptor shortage sheds: for memory (ENOBUFS, ENOMEM) closing
                    // the spare frees nothing, and the client may be served after the pause.
                    if resources::is_out_of_descriptors(&e) && resources::shed_one(&listener) {
                        // A client sluice closed for its own shortage: counted like one whose
                        // member connect met it, so every accepted client is counted once.
                        route.stats.count_shed();
                        metrics::counter!(
                            crate::telemetry::metrics::CONNECTIONS_TOTAL,
                            "route" => std::sync::Arc::clone(&route.name),
                            "outcome" => Outcome::LocalResource.as_str()
                        )
                        .increment(1);
                        continue;
                    }
                } else if let Some(suppressed) = ACCEPT_ERRORS.admit() {
                    error!(route = %route.name, error = %e, suppressed, "accept failed; pausing accepts for 50ms");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
    if let Ok(addr) = listener.local_addr() {
        info!(route = %route.load().name, %addr, "stopped accepting");
    }
}

/// Errors that concern only the connection being accepted, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
