//! Test doubles shared by the connect layers' unit tests: a `tower-test` mock speaking the
//! stack's types, requests, and real `Connected` values over loopback.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::MapErr;
use tower_test::mock::{self, Handle, Mock};

use super::{ConnectError, ConnectRequest, Connected, MemberId};
use crate::config::MemberConfig;
use crate::upstream::Member;

/// The mock's boxed errors become `ConnectError::Io`, so layers see the stack's error type.
pub type MockInner = MapErr<Mock<ConnectRequest, Connected>, fn(tower::BoxError) -> ConnectError>;

pub fn mock() -> (MockInner, Handle<ConnectRequest, Connected>) {
    let (inner, handle) = mock::pair();
    (inner.map_err(mock_error as fn(_) -> _), handle)
}

fn mock_error(e: tower::BoxError) -> ConnectError {
    ConnectError::Io {
        member: MemberId {
            index: 0,
            name: "mock".into(),
            addr: ([127, 0, 0, 1], 9).into(),
        },
        source: io::Error::other(e.to_string()),
    }
}

/// A request from `client` (`"ip:port"`).
pub fn request(client: &str) -> ConnectRequest {
    ConnectRequest {
        client: client.parse().expect("client address"),
        local: ([127, 0, 0, 1], 8000).into(),
        tried: Vec::new(),
        attempts: Default::default(),
        socket: None,
    }
}

/// A loopback listener and a member pointing at it, to build real [`Connected`] values.
/// Connect them before any timer of the test is pending: a paused clock jumps ahead while the
/// runtime waits on a socket.
pub struct Upstream {
    listener: TcpListener,
    member: Arc<Member>,
}

impl Upstream {
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let config = MemberConfig {
            name: addr.to_string(),
            addr,
            weight: 1,
            tier: 0,
        };
        let member = Arc::new(Member::new(0, &config, true, Instant::now()));
        Self { listener, member }
    }

    /// A connected upstream with no permits yet (the kernel completes the handshake from the
    /// listen backlog, so nothing needs to accept).
    pub async fn connected(&self) -> Connected {
        let addr = self.listener.local_addr().expect("local addr");
        Connected {
            stream: TcpStream::connect(addr).await.expect("connect loopback"),
            guard: self.member.track(),
            connect_time: Duration::ZERO,
            permits: Vec::new(),
        }
    }
}
