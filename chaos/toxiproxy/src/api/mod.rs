//! The Toxiproxy v2 HTTP API, served with axum.
//!
//! Routes, methods, status codes and JSON shapes are Toxiproxy's (`api.go`): updates accept POST
//! and PATCH, errors are `{"error": <message>, "status": <code>}`, and a request whose
//! User-Agent starts with `Mozilla/` gets 403, because a browser tab must not be able to drive
//! fault injection on this machine. Bodies are read as raw bytes and parsed here, not with axum's
//! `Json` extractor, which would refuse clients that send no `Content-Type` (Toxiproxy accepts
//! them). What each call does is up to `store`, `proxy` and `toxic`.

mod handlers;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::error::Error;
use crate::store::Store;

/// The Toxiproxy release whose API this server mirrors, reported by `GET /version`.
pub const TOXIPROXY_VERSION: &str = "2.12.0";

/// The router for the whole API over `store`.
pub fn router(store: Arc<Store>) -> Router {
    use handlers::*;
    Router::new()
        .route("/version", get(version))
        .route("/reset", post(reset))
        .route("/populate", post(populate))
        .route("/proxies", get(proxy_index).post(proxy_create))
        .route(
            "/proxies/{proxy}",
            get(proxy_show)
                .post(proxy_update)
                .patch(proxy_update)
                .delete(proxy_delete),
        )
        .route(
            "/proxies/{proxy}/toxics",
            get(toxic_index).post(toxic_create),
        )
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(toxic_show)
                .post(toxic_update)
                .patch(toxic_update)
                .delete(toxic_delete),
        )
        .layer(middleware::from_fn(refuse_browsers))
        .with_state(store)
}

async fn refuse_browsers(request: Request, next: Next) -> Response {
    let from_browser = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"));
    if from_browser {
        return (StatusCode::FORBIDDEN, "User agent not allowed\n").into_response();
    }
    next.run(request).await
}

/// A JSON response with `status`.
fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 200 with a JSON body.
fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// An empty 204.
fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Toxiproxy's error body for `err`.
fn error_json(err: &Error) -> Value {
    json!({ "error": err.to_string(), "status": err.status_code() })
}

/// The HTTP status for `err`.
fn status_of(err: &Error) -> StatusCode {
    StatusCode::from_u16(err.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status_code() >= 500 {
            tracing::warn!(error = %self, "request failed");
        }
        json_response(status_of(&self), &error_json(&self))
    }
}
