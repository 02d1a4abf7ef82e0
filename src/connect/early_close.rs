//! EarlyClose: an attempt is not done when the handshake is; a member that accepts and hangs up
//! at once (a crashed backend behind a still-open port, a proxy whose own upstream is gone) has
//! failed it.
//!
//! Sits between `Retry` and `Select`, so an early close is one more attempt failure that Retry's
//! single loop decides on, exactly like a refused or timed-out connect: the redial is inside
//! the route's one admission and one rate-limit token, and it never goes back to the member that
//! closed. After the connect, the layer watches the member's first sign for its pool's
//! `breaker.early_close` window (set whether or not the pool has breakers: an early close is a
//! redial trigger in its own right):
//!
//! - the member sends a byte, or the window passes in silence: the attempt succeeded;
//! - the client has bytes to send: they go to this member now and whatever it does is final,
//!   because client bytes are never replayed to another member;
//! - the member closes or resets first: the member's breaker learns it (the connect it was told
//!   about turns into a failure) and the attempt fails with [`ConnectError::EarlyClose`].
//!
//! Without a client socket in the request (unit tests of the stack) or a window on the member,
//! the attempt passes through untouched. Never waits beyond the window; readiness is the inner
//! stack's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio::time::Duration;
use tower::{Layer, Service};
use tracing::debug;

use super::{ConnectError, ConnectRequest, Connected, MemberId};

/// Adds the early-close watch to each attempt.
#[derive(Clone, Copy, Debug, Default)]
pub struct EarlyCloseLayer;

impl<S> Layer<S> for EarlyCloseLayer {
    type Service = EarlyClose<S>;

    fn layer(&self, inner: S) -> EarlyClose<S> {
        EarlyClose { inner }
    }
}

/// Turns a connected attempt whose member closes first into an [`ConnectError::EarlyClose`].
#[derive(Clone, Debug)]
pub struct EarlyClose<S> {
    inner: S,
}

impl<S> Service<ConnectRequest> for EarlyClose<S>
where
    S: Service<ConnectRequest, Response = Connected, Error = ConnectError>,
    S::Future: Send + 'static,
{
    type Response = Connected;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Connected, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ConnectRequest) -> Self::Future {
        let client = request.socket.clone();
        let attempt = self.inner.call(request);
        Box::pin(async move {
            let connected = attempt.await?;
            let member = Arc::clone(connected.member());
            let (Some(window), Some(client)) = (member.early_close(), client) else {
                return Ok(connected);
            };
            match first_sign(&client, &connected.stream, window).await {
                FirstSign::Healthy | FirstSign::ClientSpoke => Ok(connected),
                FirstSign::UpstreamQuit(how) => {
                    member.report_early_close();
                    debug!(member = member.name(), how, "upstream closed before a byte");
                    Err(ConnectError::EarlyClose {
                        member: MemberId::of(&member),
                        within: window,
                    })
                }
            }
        })
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

/// Whether the client has gone (closed without a byte pending, or reset), without waiting.
/// Called after a wait (a limit's queue, a redial's backoff), before a member is dialled for a
/// client nobody would relay to. A client that sent bytes and then half-closed is still there:
/// its bytes are peeked first.
pub(super) fn client_left(client: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match futures_util::FutureExt::now_or_never(client.peek(&mut byte)) {
        None | Some(Ok(1..)) => false,
        Some(Ok(0) | Err(_)) => true,
    }
}
