//! TcpConnect: the innermost service, one TCP handshake with the chosen member.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::Service;

use super::{ConnectError, Connected, MemberId, MemberRequest, proxy_protocol};
use crate::config::ProxyProtocol;

/// Connects to the member of the request and, when the route asks for it, writes the PROXY
/// protocol header before anything else; always ready.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnect {
    proxy_protocol: ProxyProtocol,
}

impl TcpConnect {
    pub fn new(proxy_protocol: ProxyProtocol) -> Self {
        Self { proxy_protocol }
    }
}

impl Service<MemberRequest> for TcpConnect {
    type Response = Connected;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Connected, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: MemberRequest) -> Self::Future {
        let header = proxy_protocol::header(self.proxy_protocol, request.client, request.local);
        Box::pin(async move {
            let started = Instant::now();
            let member = request.guard.member();
            let addr = member.addr();
            let mut stream = TcpStream::connect(addr)
                .await
                .map_err(|e| ConnectError::from_io(MemberId::of(member), e))?;
            // Interactive protocols must not wait on Nagle; bulk transfers lose nothing by it.
            stream
                .set_nodelay(true)
                .map_err(|e| ConnectError::from_io(MemberId::of(member), e))?;
            if let Some(header) = header {
                // Part of the connect: a member that cannot take 100 bytes is not connected,
                // and the client has sent nothing to it yet, so a redial is still safe.
                stream
                    .write_all(&header)
                    .await
                    .map_err(|e| ConnectError::from_io(MemberId::of(member), e))?;
            }
            Ok(Connected {
                stream,
                guard: request.guard,
                connect_time: started.elapsed(),
                permits: Vec::new(),
            })
        })
    }
}
