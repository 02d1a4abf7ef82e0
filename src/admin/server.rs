//! The admin listener: binding, the router, JSON errors, `/healthz` and `/metrics`.
//!
//! Every response is JSON except `/metrics`, and every failure is `{"error": "..."}` with a 4xx
//! status naming what was wrong, so scripts can show an operator the message as is.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{AdminState, actions, status};
use crate::route;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";
/// How often histogram samples are folded into buckets between scrapes; without it an
/// unscraped histogram keeps every sample it was given.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How long requests in flight may finish once the admin listener stops.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Admin traffic is a few scripts and a scraper; a small backlog is plenty.
const BACKLOG: u32 = 128;

const ENDPOINTS: &str = "GET /healthz, GET /status, GET /metrics, \
     POST /pools/{pool}/members/{member}/drain, POST /pools/{pool}/members/{member}/enable, \
     POST /reload";

/// Binds the admin listen address (with `SO_REUSEADDR`, like the routes, so a restart does not
/// wait out TIME_WAIT).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    route::bind(addr, BACKLOG)
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

/// Serves the admin API on `listener` until `stop` is cancelled; requests in flight then get
/// `STOP_GRACE` to finish. Also runs the metrics recorder's upkeep meanwhile.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin listening");
    }
    let handle = state.metrics.clone();
    let upkeep = async {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    };
    let server =
        axum::serve(listener, router(state)).with_graceful_shutdown(stop.clone().cancelled_owned());
    let overdue = async {
        stop.cancelled().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        // Never fails: axum logs and skips per-connection errors and backs off on accept errors.
        _ = server => {}
        () = upkeep => {}
        () = overdue => warn!(grace = ?STOP_GRACE, "admin requests still open after the stop grace; dropping them"),
    }
    info!("admin stopped");
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
        state.metrics.render(),
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}
