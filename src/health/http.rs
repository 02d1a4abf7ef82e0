//! The HTTP probe (`health.http`): one HTTP/1.1 `GET path` whose response status must be
//! `expect_status`, for role endpoints such as Patroni's `/primary` (200 on the leader, 503 on
//! replicas) that say which member should take traffic, not merely whether it listens.
//!
//! The request is sent with hyper's http1 client over the probe's own connection (connected as
//! in [`probe`](super::probe()), so a local shortage is still [`LocalResource`]). It asks for
//! `Connection: close` and only the status is looked at: the probe ends when the status line
//! and headers are in, at most [`MAX_HEAD`] of them, and drops the connection without reading
//! the body. A role endpoint's body is a few hundred bytes that arrive with the head, and the
//! server closes first, so this is an orderly close in practice.
//!
//! [`LocalResource`]: ProbeFailure::LocalResource

use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, timeout_at};

use crate::config::HttpCheck;

use super::probe::{ProbeFailure, ProbePhase, connect};

/// The most response head (status line and headers) read: hyper's smallest buffer limit.
const MAX_HEAD: usize = 8 * 1024;

/// GETs `check.path` from `addr` within `timeout` and passes if the status is
/// `check.expect_status`.
pub(super) async fn probe(
    addr: SocketAddr,
    timeout: Duration,
    check: &HttpCheck,
) -> Result<(), ProbeFailure> {
    let mut during = ProbePhase::Connect;
    let deadline = crate::time::later(Instant::now(), timeout);
    let result = timeout_at(deadline, get(addr, check, &mut during)).await;
    let status = result.unwrap_or(Err(ProbeFailure::Timeout {
        after: timeout,
        during,
    }))?;
    if status == check.expect_status {
        Ok(())
    } else {
        Err(ProbeFailure::HttpStatus {
            expected: check.expect_status,
            got: status,
        })
    }
}

/// Sends the GET and returns the response status.
async fn get(
    addr: SocketAddr,
    check: &HttpCheck,
    during: &mut ProbePhase,
) -> Result<u16, ProbeFailure> {
    let stream = connect(addr, false).await?;
    *during = ProbePhase::Send;
    let (mut sender, conn) = http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| failure(&e, ProbePhase::Send))?;
    let request = Request::get(check.path.as_str())
        .header(header::HOST, addr.to_string())
        .header(header::CONNECTION, "close")
        .header(header::USER_AGENT, "sluice-health")
        .body(Empty::new())
        .map_err(|e| ProbeFailure::HttpInvalid {
            error: format!("cannot build request: {e}"),
        })?;
    *during = ProbePhase::Reply;
    let mut conn = pin!(conn);
    let mut response = pin!(sender.send_request(request));
    let mut conn_done = false;
    // The connection future does the I/O; the response future resolves once the head is in,
    // or with the error that ended the connection.
    let response = loop {
        tokio::select! {
            biased;
            r = &mut response => break r,
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    };
    let response = response.map_err(|e| failure(&e, ProbePhase::Reply))?;
    Ok(response.status().as_u16())
}

/// A hyper error as a probe failure: socket errors keep their kind (refused, reset, a local
/// shortage), a server that closed before a full response head is [`ClosedEarly`], and
/// anything else is not HTTP.
///
/// [`ClosedEarly`]: ProbeFailure::ClosedEarly
fn failure(e: &hyper::Error, during: ProbePhase) -> ProbeFailure {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            // Rebuilt from the errno, which is what tells a local shortage apart.
            let io = match io.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(io.kind(), io.to_string()),
            };
            return ProbeFailure::from_io(io, during);
        }
        source = cause.source();
    }
    // A request canceled for a reason carries it as its source: an SSH banner sent before our
    // request is "canceled: unexpected message", which is not an early close.
    let cause = std::error::Error::source(e).and_then(|c| c.downcast_ref::<hyper::Error>());
    let closed = e.is_incomplete_message() || e.is_closed() || e.is_canceled();
    match cause {
        None if closed => ProbeFailure::ClosedEarly { got: Vec::new() },
        Some(cause) if cause.is_incomplete_message() || cause.is_closed() => {
            ProbeFailure::ClosedEarly { got: Vec::new() }
        }
        Some(cause) => ProbeFailure::HttpInvalid {
            error: cause.to_string(),
        },
        None => ProbeFailure::HttpInvalid {
            error: e.to_string(),
        },
    }
}
