//! Relay: copies bytes both ways between a client and its upstream until both directions end.
//! TODO(#3): stub; the relay helper replaces this file.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Per-route relay settings.
#[derive(Clone, Copy, Debug)]
pub struct RelaySettings {
    /// Cut the connection after this long with no byte in either direction; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Size of a pooled copy buffer, borrowed only while data is in flight.
    pub buffer_size: usize,
}

/// Which end of a relayed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// Why the relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both directions reached end of stream and were shut down in order.
    Completed,
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// The cut token fired (shutdown grace ran out).
    Cut,
    /// A read or write failed on one side (reset, broken pipe...).
    Error { side: Side, error: io::Error },
}

/// What a finished relay reports for logs and metrics.
#[derive(Debug)]
pub struct RelayReport {
    /// Bytes written to the upstream (client -> upstream), including `held` bytes.
    pub bytes_up: u64,
    /// Bytes written to the client (upstream -> client).
    pub bytes_down: u64,
    /// Who sent FIN (or failed) first, if anyone did.
    pub first_close: Option<Side>,
    pub end: RelayEnd,
}

/// Relays until both directions are done, the idle timeout fires or `cut` is cancelled.
/// `held` are client bytes read before the upstream was connected; they go out first.
pub async fn relay(
    _client: TcpStream,
    _upstream: TcpStream,
    _held: Vec<u8>,
    _settings: RelaySettings,
    _cut: &CancellationToken,
) -> RelayReport {
    unimplemented!("TODO(#3)")
}
