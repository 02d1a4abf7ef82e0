//! TcpConnect: the innermost service, one TCP handshake with the chosen member.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::Service;

use super::{ConnectError, Connected, MemberId, MemberRequest};

/// Connects to the member of the request; always ready.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnect;

impl Service<MemberRequest> for TcpConnect {
    type Response = Connected;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Connected, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: MemberRequest) -> Self::Future {
        Box::pin(async move {
            let started = Instant::now();
            let member = request.guard.member();
            let addr = member.addr();
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| ConnectError::from_io(MemberId::of(member), e))?;
            // Interactive protocols must not wait on Nagle; bulk transfers lose nothing by it.
            stream
                .set_nodelay(true)
                .map_err(|e| ConnectError::from_io(MemberId::of(member), e))?;
            Ok(Connected {
                stream,
                guard: request.guard,
                connect_time: started.elapsed(),
                permits: Vec::new(),
            })
        })
    }
}
