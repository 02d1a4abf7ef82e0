//! The admin listener: binding, the accept loop, the router, JSON errors, `/healthz` and
//! `/metrics`.
//!
//! Connections are served by hand rather than by `axum::serve`, which has neither a header
//! timeout nor a connection cap: at most `admin.max_connections` at once (one more is closed at
//! accept), each with [`HEADER_TIMEOUT`]. Every request then passes the checks in `guard`.
//!
//! Every response is JSON except `/metrics`, and every failure is `{"error": "..."}` with a 4xx
//! status naming what was wrong, so scripts can show an operator the message as is.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::guard::Guard;
use super::{AdminState, actions, status};
use crate::config::AdminConfig;
use crate::route;
use crate::telemetry;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";
/// How often histogram samples are folded into buckets between scrapes; without it an
/// unscraped histogram keeps every sample it was given.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How long requests in flight may finish once the admin listener stops.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a client may take to send a request's headers, counted from when the server starts
/// waiting for them: a slow-header client is closed without an answer after it, and so is a
/// keep-alive connection idle for as long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// hyper's read buffer, which bounds a request head (hyper answers 431 beyond it).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Pause after a failed accept (e.g. out of descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this long for refused or failed accepts.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Admin traffic is a few scripts and a scraper; a small backlog is plenty.
const BACKLOG: u32 = 128;

const ENDPOINTS: &str = "GET /healthz, GET /status, GET /metrics, \
     POST /pools/{pool}/members/{member}/drain, POST /pools/{pool}/members/{member}/enable, \
     POST /reload";

/// The bound admin listener with the limits it serves under.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    max_connections: usize,
    guard: Arc<Guard>,
}

// === impl Listener ===

impl Listener {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The socket, for a binary upgrade to duplicate (`server::upgrade`).
impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// Binds `config.listen` (with `SO_REUSEADDR`, like the routes, so a restart does not wait out
/// TIME_WAIT); the token and the connection cap are taken now and kept for the run.
pub fn bind(config: &AdminConfig) -> io::Result<Listener> {
    Ok(listener(config, route::bind(config.listen, BACKLOG)?))
}

/// [`bind`] on a listening socket handed over by the process this one upgraded
/// (`server::upgrade`), instead of binding.
pub fn adopt(config: &AdminConfig, socket: std::net::TcpListener) -> io::Result<Listener> {
    socket.set_nonblocking(true)?;
    Ok(listener(config, TcpListener::from_std(socket)?))
}

fn listener(config: &AdminConfig, listener: TcpListener) -> Listener {
    Listener {
        listener,
        max_connections: config.max_connections,
        guard: Arc::new(Guard {
            token: config.token.clone(),
        }),
    }
}

/// The admin API over `state`.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status::status))
        .route("/metrics", get(metrics))
        .route("/pools/{pool}/members/{member}/drain", post(actions::drain))
        .route(
            "/pools/{pool}/members/{member}/enable",
            post(actions::enable),
        )
        .route("/reload", post(actions::reload))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves the admin API on `listener` until `stop` is cancelled; connections then finish the
/// request in hand (keep-alive ends) within `STOP_GRACE` and are cut after it. Also runs the
/// metrics recorder's upkeep meanwhile.
pub async fn serve(listener: Listener, state: Arc<AdminState>, stop: CancellationToken) {
    let Listener {
        listener,
        max_connections,
        guard,
    } = listener;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, max_connections, token = guard.token.is_some(), "admin listening");
    }
    let handle = state.metrics.clone();
    let mut upkeep = std::pin::pin!(async {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
    let router = router(state);
    // Dropping the set aborts whatever is still open, so nothing outlives `serve`.
    let mut connections = JoinSet::new();
    let accept = accept_loop(
        &listener,
        max_connections,
        &mut connections,
        &stop,
        |stream, local| {
            let stop = stop.clone();
            serve_connection(stream, local, router.clone(), Arc::clone(&guard), stop)
        },
    );
    tokio::select! {
        () = accept => {}
        () = &mut upkeep => {}
    }
    // Close the port at once: nothing new is accepted while the open connections wind down.
    drop(listener);
    let finished = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = finished => {}
        () = &mut upkeep => {}
        () = tokio::time::sleep(STOP_GRACE) => warn!(grace = ?STOP_GRACE, open = connections.len(), "admin requests still open after the stop grace; dropping them"),
    }
    info!("admin stopped");
}

/// Accepts until `stop`, each connection on its own task holding one of `max_connections`
/// permits. At the cap a new connection is closed at once rather than left in the backlog, so
/// the admin listener holds at most `max_connections` descriptors however many clients come.
async fn accept_loop<F, Fut>(
    listener: &TcpListener,
    max_connections: usize,
    connections: &mut JoinSet<()>,
    stop: &CancellationToken,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut refused = Throttled::default();
    let mut failed = Throttled::default();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            // Reap finished tasks so the set holds only open connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors (EMFILE) and the like: back off rather than spin, and let
                // the data plane have what frees up first.
                failed.hit(|suppressed| warn!(%error, suppressed, "admin accept failed"));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refused.hit(|suppressed| {
                warn!(
                    max_connections,
                    suppressed, "admin connection refused: at admin.max_connections"
                );
            });
            drop(stream);
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let conn = serve(stream, local);
        connections.spawn(async move {
            let _permit = permit;
            conn.await;
        });
    }
}

/// One admin connection: HTTP/1.1 with [`HEADER_TIMEOUT`] for each request's headers. hyper
/// starts that timer whenever it waits for a request head, so it also bounds how long an idle
/// keep-alive connection stays open.
async fn serve_connection(
    stream: TcpStream,
    local: SocketAddr,
    router: Router,
    guard: Arc<Guard>,
    stop: CancellationToken,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let router = router.clone();
        let guard = Arc::clone(&guard);
        async move { Ok::<_, Infallible>(guard.handle(router, local, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stop.cancelled() => {
            // Finish the request in hand, then close instead of keeping the connection alive;
            // `serve` bounds this by `STOP_GRACE`.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = ended {
        debug!(%error, "admin connection ended");
    }
}

/// Logs the first event and then at most once per [`LOG_EVERY`], with how many it skipped, so
/// a flood of refused connections cannot flood the log.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

// === impl Throttled ===

impl Throttled {
    fn hit(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// `{"status": "ok"}` while serving, `{"status": "draining"}` with 503 once shutdown began, so
/// a load balancer in front of sluice stops sending new clients during the drain.
async fn healthz(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Health>) {
    if state.draining.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health { status: "draining" }),
        )
    } else {
        (StatusCode::OK, Json(Health { status: "ok" }))
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        telemetry::metrics::render(&state.metrics),
    )
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {method} {} (endpoints: {ENDPOINTS})",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {method} not allowed on {} (endpoints: {ENDPOINTS})",
            uri.path()
        ),
    )
}

/// A failed admin request: its status and the message returned as `{"error": message}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

// === impl ApiError ===

impl ApiError {
    pub(super) fn new(status: StatusCode, message: String) -> Self {
        Self { status, message }
    }

    /// 401, answered with `WWW-Authenticate: Bearer`.
    pub(super) fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
