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
    #[error("connect to {member} timed out after {after:?}")]
    Timeout { member: MemberId, after: Duration },
    /// The member's host answered with a reset: nothing listens on that port.
    #[error("connect to {member} refused")]
    Refused { member: MemberId },
    /// The connection was reset or aborted during the handshake.
    #[error("connect to {member} reset")]
    Reset { member: MemberId },
    /// Any other socket error (unreachable network, no buffer space...).
    #[error("connect to {member} failed: {source}")]
    Io { member: MemberId, source: io::Error },
    /// sluice itself ran short (out of descriptors, kernel memory or local ports) while
    /// connecting to `member`: nothing the member did, so it counts against no member.
    #[error("no local resource to connect to {member}: {source}")]
    LocalResource { member: MemberId, source: io::Error },
    /// The member accepted, then closed or reset without sending a byte within `within`.
    #[error("{member} closed the connection without a byte within {within:?} of connect")]
    EarlyClose { member: MemberId, within: Duration },
    /// The member's circuit breaker is open (or half-open with its trials taken).
    #[error("circuit open for {member}")]
    CircuitOpen { member: MemberId },
    /// No member of the pool may take the connection.
    #[error(transparent)]
    NoEligibleMember(#[from] crate::upstream::NoEligibleMember),
    /// A new-connection rate limit refused it.
    #[error("rate limited: {scope} allows {per_second} new connections per second")]
    RateLimited { scope: LimitScope, per_second: u32 },
    /// A connection-count limit is full (and the queue, if any, timed out).
    #[error("connection limit reached: {scope} allows {max} at once")]
    LimitReached { scope: LimitScope, max: usize },
    /// The client closed or reset while it waited (in a limit's queue or a redial's backoff):
    /// nobody is left to connect for.
    #[error("client left before a member was dialled")]
    ClientGone,
}

/// Names a member in errors: its position in the pool (for redial exclusion), its configured
/// name and its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberId {
    pub index: usize,
    pub name: Arc<str>,
    pub addr: SocketAddr,
}

impl MemberId {
    pub fn of(member: &crate::upstream::Member) -> Self {
        Self {
            index: member.index(),
            name: member.name_arc(),
            addr: member.addr(),
        }
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self.name == *self.addr.to_string() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{} ({})", self.name, self.addr)
        }
    }
}

/// Which limit refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitScope {
    Global,
    Route,
    Client,
}

impl std::fmt::Display for LimitScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Global => "the global limit",
            Self::Route => "the route",
            Self::Client => "one client",
        })
    }
}

/// Whose fault a failure was; decides the outcome label and log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The member misbehaved: counts against it, another member may do better.
    Upstream,
    /// sluice refused by policy (limits, no member left, breaker open), or ran short of its
    /// own resources (descriptors, memory, local ports).
    Sluice,
    /// The client went away; nothing to say about any member.
    Client,
}

impl ConnectError {
    /// Classifies an error from `TcpStream::connect`.
    pub fn from_io(member: MemberId, source: io::Error) -> Self {
        if crate::resources::is_local_exhaustion(&source) {
            return Self::LocalResource { member, source };
        }
        match source.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused { member },
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Self::Reset { member }
            }
            _ => Self::Io { member, source },
        }
    }

    /// The member this failure is about, if it is about one.
    pub fn member(&self) -> Option<&MemberId> {
        match self {
            Self::Timeout { member, .. }
            | Self::Refused { member }
            | Self::Reset { member }
            | Self::Io { member, .. }
            | Self::LocalResource { member, .. }
            | Self::EarlyClose { member, .. }
            | Self::CircuitOpen { member } => Some(member),
            Self::NoEligibleMember(_)
            | Self::RateLimited { .. }
            | Self::LimitReached { .. }
            | Self::ClientGone => None,
        }
    }

    /// Whether trying another member could help. A member's own failure, or its open breaker
    /// (a race between selection and the breaker opening), can be redialled; a limit or an
    /// empty pool cannot.
    pub fn redial_allowed(&self) -> bool {
        matches!(self.fault(), Fault::Upstream) || matches!(self, Self::CircuitOpen { .. })
    }

    /// Whether this failure counts against the member's circuit breaker.
    pub fn is_member_failure(&self) -> bool {
        matches!(self.fault(), Fault::Upstream)
    }

    pub fn fault(&self) -> Fault {
        match self {
            Self::Timeout { .. }
            | Self::Refused { .. }
            | Self::Reset { .. }
            | Self::Io { .. }
            | Self::EarlyClose { .. } => Fault::Upstream,
            Self::CircuitOpen { .. }
            | Self::LocalResource { .. }
            | Self::NoEligibleMember(_)
            | Self::RateLimited { .. }
            | Self::LimitReached { .. } => Fault::Sluice,
            Self::ClientGone => Fault::Client,
        }
    }

    /// Short machine-readable reason for logs and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Refused { .. } => "refused",
            Self::Reset { .. } => "reset",
            Self::Io { .. } => "io_error",
            Self::LocalResource { .. } => "local_resource",
            Self::EarlyClose { .. } => "early_close",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::NoEligibleMember(_) => "no_member",
            Self::RateLimited { .. } => "rejected_rate",
            Self::LimitReached { .. } => "rejected_limit",
            Self::ClientGone => "client_gone",
        }
    }
}
