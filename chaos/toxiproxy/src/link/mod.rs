//! One proxied connection: dial the upstream, run both directions, close the way Toxiproxy does.
//!
//! Each connection is one task owning both sockets. Two readers stamp and queue what they read;
//! two `Direction`s pass it through their stream's toxics and write it out. The
//! closing rules are Toxiproxy's (`link.go`): when a direction ends, its destination is closed,
//! so the other direction stops reading from that socket, flushes what it holds and closes its own
//! destination. There is no half-close: a client that shuts down its write side ends the
//! connection, as against a real Toxiproxy. `reset_peer` resets both sockets (`SO_LINGER` 0, then
//! close, so the kernel sends RST). Stopping the proxy drops everything at once. The toxic
//! arithmetic is in [`effects`]; accepting connections is `proxy`'s job.

mod direction;
pub mod effects;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::ReadHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::addr::AddrPolicy;
use crate::toxic::{Chains, Conn, Stream};
use direction::{Direction, End};

/// Largest single read, as Go's `io.Copy` buffer (32 KiB); one read becomes one chunk.
const READ_SIZE: usize = 32 * 1024;

/// Chunks a reader may queue ahead of its direction. Matches the buffer Toxiproxy gives the
/// latency toxic, so a steady stream keeps flowing while earlier chunks are held.
const QUEUE_CHUNKS: usize = 1024;

/// Data read in one go, stamped with when it arrived.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The bytes.
    pub data: Bytes,
    /// Arrival time; a latency toxic delays relative to it and then restamps it.
    pub at: Instant,
}

/// How the connection ended, which decides how its sockets are closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Both directions finished: plain close.
    Closed,
    /// A `reset_peer` toxic fired: reset both sides.
    Reset,
    /// The proxy was stopped or removed: drop both sides now.
    Stopped,
}

/// Serves one accepted client until the connection ends or `stop` fires.
/// `conn` is the connection as targeting sees it (source address, sequence number).
pub async fn serve(
    mut client: TcpStream,
    conn: Conn,
    upstream: String,
    toxics: watch::Receiver<Chains>,
    policy: AddrPolicy,
    stop: CancellationToken,
) {
    let peer = client.peer_addr().ok();
    let dialed = tokio::select! {
        () = stop.cancelled() => return,
        dialed = policy.dial(&upstream) => dialed,
    };
    let mut server = match dialed {
        Ok(server) => server,
        Err(err) => {
            // Toxiproxy closes the client when the upstream cannot be reached; so do we.
            warn!(client = ?peer, %upstream, error = %err, "unable to open connection to upstream");
            return;
        }
    };
    // Go enables TCP_NODELAY on every connection; without it slices and paced steps would merge.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let outcome = relay(&mut client, &mut server, conn, toxics, &stop).await;
    debug!(client = ?peer, %upstream, ?outcome, "connection ended");
    if outcome == Outcome::Reset {
        // Zero linger turns the close below into an RST.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    conn: Conn,
    toxics: watch::Receiver<Chains>,
    stop: &CancellationToken,
) -> Outcome {
    let start = Instant::now();
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    // Set when we have closed that side: its reader must stop, as a read on a closed Go
    // connection fails.
    let client_closed = CancellationToken::new();
    let server_closed = CancellationToken::new();
    let reset = CancellationToken::new();
    let (up_tx, up_rx) = mpsc::channel(QUEUE_CHUNKS);
    let (down_tx, down_rx) = mpsc::channel(QUEUE_CHUNKS);

    let upstream = async {
        let dir = Direction::new(
            Stream::Upstream,
            conn,
            toxics.clone(),
            start,
            &mut server_write,
        );
        match dir.run(up_rx).await {
            End::Reset => reset.cancel(),
            End::Closed => {
                let _ = server_write.shutdown().await;
                server_closed.cancel();
            }
        }
    };
    let downstream = async {
        let dir = Direction::new(
            Stream::Downstream,
            conn,
            toxics.clone(),
            start,
            &mut client_write,
        );
        match dir.run(down_rx).await {
            End::Reset => reset.cancel(),
            End::Closed => {
                let _ = client_write.shutdown().await;
                client_closed.cancel();
            }
        }
    };
    let readers = async {
        tokio::join!(
            read_into(&mut client_read, up_tx, &client_closed),
            read_into(&mut server_read, down_tx, &server_closed),
        )
    };

    tokio::select! {
        biased;
        () = stop.cancelled() => Outcome::Stopped,
        () = reset.cancelled() => Outcome::Reset,
        _ = async { tokio::join!(readers, upstream, downstream) } => Outcome::Closed,
    }
}

/// Reads `src` into the queue until it ends, fails, or `closed` says we closed it. Dropping
/// `tx` on return is what tells the direction its input is over.
async fn read_into(src: &mut ReadHalf<'_>, tx: mpsc::Sender<Chunk>, closed: &CancellationToken) {
    let copy = async {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            let n = match src.read(&mut buf).await {
                // A read error (say, a reset from the peer) ends the input like EOF, as in Go.
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = Chunk {
                data: Bytes::copy_from_slice(&buf[..n]),
                at: Instant::now(),
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = closed.cancelled() => {}
        () = copy => {}
    }
}
