//! TcpConnect: the innermost service, one TCP handshake with the chosen member.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::net::{IpAddr, SocketAddr};
use tokio::io::AsyncWriteExt;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tower::Service;

use super::{ConnectError, Connected, MemberId, MemberRequest, proxy_protocol};
use crate::config::{ProxyProtocol, SocketOptions};

/// Connects to the member of the request (from the pool's `source` address when set, with its
/// socket options) and, when the route asks for it, writes the PROXY protocol header before
/// anything else; always ready.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnect {
    proxy_protocol: ProxyProtocol,
    socket: SocketOptions,
}

impl TcpConnect {
    pub fn new(proxy_protocol: ProxyProtocol, socket: SocketOptions) -> Self {
        Self {
            proxy_protocol,
            socket,
        }
    }
}

/// Why a dial failed: before the member was asked (making the socket, binding the source:
/// sluice's own resources, never the member's fault) or while connecting to it.
enum DialError {
    Local(std::io::Error),
    Connect(std::io::Error),
}

/// A TCP connection to `addr`, from `source` when it is of the same family (a member whose
/// DNS name moved to the other family is dialled from the kernel's choice instead).
async fn dial(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, DialError> {
    match source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
        None => TcpStream::connect(addr).await.map_err(DialError::Connect),
        Some(source) => {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(DialError::Local)?;
            // Port 0: the kernel picks a port per source address, so all members together
            // share one ephemeral range (~28k connections by default). Running out (EADDRINUSE)
            // or a source that is not local (EADDRNOTAVAIL) is sluice's problem.
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(DialError::Local)?;
            socket.connect(addr).await.map_err(DialError::Connect)
        }
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
        let socket = self.socket;
        Box::pin(async move {
            let started = Instant::now();
            let member = request.guard.member();
            let addr = member.addr();
            let mut stream = dial(addr, socket.source).await.map_err(|e| match e {
                DialError::Local(source) => ConnectError::LocalResource {
                    member: MemberId::of(member),
                    source,
                },
                DialError::Connect(e) => ConnectError::from_io(MemberId::of(member), e),
            })?;
            // TCP_NODELAY by default: interactive protocols must not wait on Nagle.
            super::socket_options::apply(&stream, &socket);
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
