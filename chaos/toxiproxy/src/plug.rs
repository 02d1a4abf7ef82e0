//! `connect_timeout`'s hold on a proxy's listener (an extension beyond Toxiproxy).
//!
//! To make connects time out rather than be refused, the listener stays bound but its accept
//! queue is kept full: backlog 0 (`listen` again on the same socket) and connections of our own,
//! "plugs", until one plug's handshake does not complete. Linux then drops every SYN to the port
//! while `net.ipv4.tcp_abort_on_overflow` is 0 (the default). `proxy`'s accept loop stops
//! accepting while plugged, and drops the plugs by address when it accepts them later.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

/// Listen backlog while accepting normally (tokio's `TcpListener::bind` uses the same).
const BACKLOG: i32 = 1024;

/// A plug whose handshake has not completed within this long had its SYN dropped: the accept
/// queue is full. Loopback handshakes complete within the connect call, so this is generous;
/// it is also how long adding the toxic takes.
const PLUG_PROBE: Duration = Duration::from_millis(100);

/// Most plugs `connect_timeout` opens before giving up (the queue holds backlog + 1 on Linux).
const MAX_PLUGS: usize = 64;

/// `connect_timeout`'s hold on the listener: the plug connections filling its accept queue.
#[derive(Default)]
pub(crate) struct Plug {
    pub(crate) active: bool,
    /// Our ends of the plug connections; dropped on removal.
    streams: Vec<TcpStream>,
    /// Their addresses as the listener will see them, to drop them when accepted later.
    pub(crate) peers: HashSet<SocketAddr>,
}

impl Plug {
    /// Backlog 0, then plugs until one's handshake does not complete: the queue is full and
    /// the kernel now drops SYNs to this port.
    pub(crate) async fn insert(&mut self, listener: &TcpListener) -> std::io::Result<()> {
        self.active = true;
        SockRef::from(listener).listen(0)?;
        let addr = listener.local_addr()?;
        for _ in 0..MAX_PLUGS {
            match tokio::time::timeout(PLUG_PROBE, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    self.peers.insert(stream.local_addr()?);
                    self.streams.push(stream);
                }
                Ok(Err(err)) => return Err(err),
                // This SYN was dropped: full. Dropping the attempt stops its retransmits.
                Err(_) => return Ok(()),
            }
        }
        Err(std::io::Error::other(format!(
            "accept queue still not full after {MAX_PLUGS} connections"
        )))
    }

    /// Back to the normal backlog. Queued plugs are recognised by `peers` once accepted.
    pub(crate) fn remove(&mut self, listener: &TcpListener) {
        if let Err(err) = SockRef::from(listener).listen(BACKLOG) {
            warn!(error = %err, "connect_timeout: could not restore the listen backlog");
        }
        self.streams.clear();
        self.active = false;
    }
}
