//! What can go wrong while connecting a client to a member.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

/// A failed connect, carrying what an operator needs to act on it.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The member did not complete the TCP handshake in time.
    #[error("connect to {member} ({addr}) timed out after {after:?}")]
    Timeout {
        member: Arc<str>,
        addr: SocketAddr,
        after: Duration,
    },
    /// The member's host answered with a reset: nothing listens on that port.
    #[error("connect to {member} ({addr}) refused")]
    Refused { member: Arc<str>, addr: SocketAddr },
    /// The connection was reset or aborted during the handshake.
    #[error("connect to {member} ({addr}) reset")]
    Reset { member: Arc<str>, addr: SocketAddr },
    /// Any other socket error (unreachable network, no buffer space...).
    #[error("connect to {member} ({addr}) failed: {source}")]
    Io {
        member: Arc<str>,
        addr: SocketAddr,
        source: io::Error,
    },
    /// No member of the pool may take the connection.
    #[error(transparent)]
    NoEligibleMember(#[from] crate::upstream::NoEligibleMember),
}

/// Whose fault a failure was; decides the outcome label and log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The member misbehaved: counts against it, another member may do better.
    Upstream,
    /// sluice refused by policy (limits, no member left).
    Sluice,
}

impl ConnectError {
    /// Classifies an error from `TcpStream::connect`.
    pub fn from_io(member: Arc<str>, addr: SocketAddr, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused { member, addr },
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Self::Reset { member, addr }
            }
            _ => Self::Io {
                member,
                addr,
                source,
            },
        }
    }

    /// Whether trying another member could help (the client socket is still untouched).
    pub fn redial_allowed(&self) -> bool {
        match self.fault() {
            Fault::Upstream => true,
            Fault::Sluice => false,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            Self::Timeout { .. } | Self::Refused { .. } | Self::Reset { .. } | Self::Io { .. } => {
                Fault::Upstream
            }
            Self::NoEligibleMember(_) => Fault::Sluice,
        }
    }

    /// Short machine-readable reason for logs and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Refused { .. } => "refused",
            Self::Reset { .. } => "reset",
            Self::Io { .. } => "io_error",
            Self::NoEligibleMember(_) => "no_member",
        }
    }
}
