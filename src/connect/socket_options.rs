//! Socket options from the config (`tcp_nodelay`, `tcp_keepalive`) applied to a connected
//! socket: the client's (per route, in `route/connection.rs`) or a member's (per pool, in
//! `tcp.rs`). Failures are logged and ignored: an option the kernel refuses is no reason to
//! drop a connection.

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::config::SocketOptions;

/// Sets `tcp_nodelay` and, when configured, `tcp_keepalive` on `stream`.
pub fn apply(stream: &TcpStream, options: &SocketOptions) {
    if let Err(e) = stream.set_nodelay(options.nodelay) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    if let Some(k) = options.keepalive {
        let keepalive = TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval)
            .with_retries(k.count);
        if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, "cannot set TCP keepalive");
        }
    }
}
