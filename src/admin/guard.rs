//! What every admin request passes before it reaches a handler, and the JSON shape of every
//! failure on the way out.
//!
//! In order, each refusal answered `{"error": "..."}` and none of them reaching a handler:
//!
//! 1. `Host` (and an absolute URI's authority) must name the address the connection arrived at
//!    (`ip:port`, or `localhost:port` on loopback), else 403: a DNS-rebinding page reaches the
//!    listener under its own name and is refused here.
//! 2. A state-changing method (anything but GET, HEAD, OPTIONS) carrying an `Origin` that is
//!    not the listener's own origin, or `Sec-Fetch-Site: cross-site|same-site`, gets 403: a web
//!    page cannot drain a member with a form post. Requests without `Origin` (curl, scripts)
//!    pass.
//! 3. With a token configured, every path but `/healthz` needs `Authorization: Bearer TOKEN`
//!    (401 otherwise, compared in constant time).
//! 4. The body is read whole before any handler runs: more than [`BODY_LIMIT`] is 413, a body
//!    that is malformed (bad chunked encoding, cut short) is 400, and one not complete within
//!    [`BODY_TIMEOUT`] is 408. So a bad body never triggers an action.
//!
//! Finally any 4xx/5xx the router produced without a JSON body (axum's own rejections) is
//! rewritten as `{"error": "<its text>"}`. Errors hyper answers itself before a request exists
//! (unparseable request line, headers over the size limit) carry no body; the connection
//! closes after them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::ServiceExt;

use super::server::ApiError;
use crate::config::AdminToken;

/// Largest request body accepted, in bytes. The API takes no body today; this leaves room for
/// a small JSON document without letting a client make the server buffer megabytes.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long a request body may take to arrive once the headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// The path that stays open without a token, so liveness probes need no secret.
const UNAUTHENTICATED: &str = "/healthz";

/// The checks' configuration, shared by every connection.
#[derive(Debug)]
pub(super) struct Guard {
    pub(super) token: Option<AdminToken>,
}

// === impl Guard ===

impl Guard {
    /// Runs the checks on `req`, which arrived at `local`, then `router`; every failure is JSON.
    pub(super) async fn handle<B>(
        &self,
        router: Router,
        local: SocketAddr,
        req: Request<B>,
    ) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let response = match self.check(local, req).await {
            Ok(req) => match router.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            Err(refused) => refused.into_response(),
        };
        json_errors(response).await
    }

    async fn check<B>(&self, local: SocketAddr, req: Request<B>) -> Result<Request<Body>, ApiError>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let hosts = own_hosts(local);
        check_host(&hosts, &req)?;
        if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            check_origin(&hosts, req.headers())?;
        }
        if let Some(token) = &self.token
            && req.uri().path() != UNAUTHENTICATED
        {
            check_token(token, req.headers())?;
        }
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(too_large());
        }
        let body = match tokio::time::timeout(
            BODY_TIMEOUT,
            Limited::new(body, BODY_LIMIT).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
            Ok(Err(e)) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("malformed request body: {e}; nothing was done"),
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request body not complete within {BODY_TIMEOUT:?}; nothing was done"),
                ));
            }
        };
        Ok(Request::from_parts(parts, Body::from(body)))
    }
}

/// The names a client may use for the listener: the address the connection arrived at and,
/// on loopback, `localhost` with its port.
fn own_hosts(local: SocketAddr) -> Vec<String> {
    let local = SocketAddr::new(local.ip().to_canonical(), local.port());
    let mut hosts = vec![local.to_string()];
    if local.ip().is_loopback() {
        hosts.push(format!("localhost:{}", local.port()));
    }
    if local.port() == 80 {
        // A client may leave out the default port.
        let bare: Vec<String> = hosts
            .iter()
            .filter_map(|h| h.strip_suffix(":80").map(str::to_string))
            .collect();
        hosts.extend(bare);
    }
    hosts
}

fn is_own(hosts: &[String], value: &str) -> bool {
    hosts.iter().any(|h| h.eq_ignore_ascii_case(value))
}

fn check_host<B>(hosts: &[String], req: &Request<B>) -> Result<(), ApiError> {
    let host = req.headers().get(header::HOST).map(|v| v.to_str());
    let refuse = |what: String| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{what} is not this listener's address (expected one of: {}); refusing a request that may come from DNS rebinding",
                hosts.join(", ")
            ),
        )
    };
    match host {
        Some(Ok(h)) if is_own(hosts, h) => {}
        Some(Ok(h)) => return Err(refuse(format!("Host {h:?}"))),
        Some(Err(_)) => return Err(refuse("Host (not ASCII)".into())),
        None => return Err(refuse("a missing Host header".into())),
    }
    if let Some(authority) = req.uri().authority()
        && !is_own(hosts, authority.as_str())
    {
        return Err(refuse(format!("request target authority {authority:?}")));
    }
    Ok(())
}

fn check_origin(hosts: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |what: String| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what}: state-changing requests from web pages are refused; nothing was done"),
        )
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not ASCII)");
        let own = origin
            .strip_prefix("http://")
            .is_some_and(|host| is_own(hosts, host));
        if !own {
            return Err(refuse(format!("cross-origin request (Origin {origin:?})")));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("(not ASCII)");
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(refuse(format!(
                "cross-origin request (Sec-Fetch-Site {site:?})"
            )));
        }
    }
    Ok(())
}

fn check_token(token: &AdminToken, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.secret().as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("wrong bearer token")),
        None => Err(ApiError::unauthorized(
            "missing token: this admin API needs Authorization: Bearer <token from admin.token_file>",
        )),
    }
}

/// Equal contents, in a time that depends on the lengths only, so the response time does not
/// tell how many leading bytes of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {BODY_LIMIT} bytes; nothing was done"),
    )
}

/// Any failure without a JSON body becomes `{"error": "<its text>"}` (or the status' reason
/// when it had no text), keeping its status and headers.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Our own rejections are short; a bound keeps a surprise from being buffered whole.
    let text = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(c) => String::from_utf8_lossy(&c.to_bytes()).trim().to_string(),
        Err(_) => String::new(),
    };
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let json = Json(serde_json::json!({ "error": error })).into_response();
    let (json_parts, json_body) = json.into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, json_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_hosts_name_the_address_and_localhost_on_loopback() {
        let v4: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        assert_eq!(own_hosts(v4), ["127.0.0.1:9901", "localhost:9901"]);
        let v6: SocketAddr = "[::1]:9901".parse().unwrap();
        assert_eq!(own_hosts(v6), ["[::1]:9901", "localhost:9901"]);
        let remote: SocketAddr = "[::ffff:10.0.0.5]:80".parse().unwrap();
        assert_eq!(own_hosts(remote), ["10.0.0.5:80", "10.0.0.5"]);
    }

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
