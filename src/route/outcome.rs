//! How a connection ended: the `outcome` label of `sluice_connections_total` and the two-letter
//! termination code of the access log.
//!
//! The code follows HAProxy's `tcplog` termination state so operators can read it without a
//! legend: the first letter says who ended the connection, the second in which phase.
//!
//! | first | meaning | second | phase |
//! |---|---|---|---|
//! | `-` | normal end | `-` | normal end |
//! | `C` | client aborted (reset, error) | `R` | waiting for a resource (limit, rate) |
//! | `S` | server side: refused, reset, closed early, no member | `C` | connecting to a member |
//! | `P` | sluice's policy (limit, rate, allow/deny) | `D` | relaying data |
//! | `R` | sluice's own resources ran out (fds, memory, ports) | | |
//! | `c` | idle timeout | | |
//! | `s` | member timeout: connect (`sC`), silent after the client spoke (`sD`) | | |
//! | `K` | cut at shutdown after the grace period | | |

use crate::connect::{ConnectError, Fault};
use crate::relay::{RelayEnd, Side};

/// How a connection ended, as counted in `sluice_connections_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    UpstreamError,
    Timeout,
    RejectedRate,
    RejectedLimit,
    NoMember,
    Denied,
    LocalResource,
    ClientError,
    IdleTimeout,
    Shutdown,
    /// Cut because its member went down, was drained or left (`on_member_down = "close"`).
    MemberDown,
    /// Cut on a backup tier because a primary came back (`on_primary_return = "close"`).
    BackupClosed,
    /// Cut because it reached the pool's `max_connection_lifetime`.
    LifetimeEnded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::RejectedRate => "rejected_rate",
            Self::RejectedLimit => "rejected_limit",
            Self::NoMember => "no_member",
            Self::Denied => "denied",
            Self::LocalResource => "local_resource",
            Self::ClientError => "client_error",
            Self::IdleTimeout => "idle_timeout",
            Self::Shutdown => "shutdown",
            Self::MemberDown => "member_down",
            Self::BackupClosed => "backup_closed",
            Self::LifetimeEnded => "lifetime_ended",
        }
    }

    /// The outcome of a connection whose connect stack failed, with its termination code.
    pub fn of_connect(error: &ConnectError) -> (Self, &'static str) {
        match error {
            ConnectError::Timeout { .. } => (Self::Timeout, "sC"),
            ConnectError::RateLimited { .. } => (Self::RejectedRate, "PR"),
            ConnectError::LimitReached { .. } => (Self::RejectedLimit, "PR"),
            ConnectError::NoEligibleMember(_) | ConnectError::CircuitOpen { .. } => {
                (Self::NoMember, "SC")
            }
            // HAProxy's "R": a resource on the proxy ran out, while connecting.
            ConnectError::LocalResource { .. } => (Self::LocalResource, "RC"),
            // Left while queued or between redials: HAProxy's "CQ"/"CC" (client aborted).
            ConnectError::ClientGone => (Self::ClientError, "CC"),
            e => match e.fault() {
                Fault::Upstream => (Self::UpstreamError, "SC"),
                Fault::Sluice => (Self::NoMember, "SC"),
                Fault::Client => (Self::ClientError, "CC"),
            },
        }
    }

    /// The outcome of a relayed connection, with its termination code.
    pub fn of_relay(end: &RelayEnd) -> (Self, &'static str) {
        match end {
            RelayEnd::Completed => (Self::Ok, "--"),
            RelayEnd::IdleTimeout => (Self::IdleTimeout, "cD"),
            RelayEnd::Cut => (Self::Shutdown, "KD"),
            // HAProxy's "sD": the server-side timeout struck while waiting for data.
            RelayEnd::Silent => (Self::Timeout, "sD"),
            RelayEnd::Error {
                side: Side::Client, ..
            } => (Self::ClientError, "CD"),
            RelayEnd::Error {
                side: Side::Upstream,
                ..
            } => (Self::UpstreamError, "SD"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::connect::{LimitScope, MemberId};

    fn member() -> MemberId {
        MemberId {
            index: 0,
            name: "127.0.0.1:9".into(),
            addr: ([127, 0, 0, 1], 9).into(),
        }
    }

    #[test]
    fn connect_failures_map_to_outcome_and_code() {
        let timeout = ConnectError::Timeout {
            member: member(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(Outcome::of_connect(&timeout), (Outcome::Timeout, "sC"));
        let refused = ConnectError::Refused { member: member() };
        assert_eq!(
            Outcome::of_connect(&refused),
            (Outcome::UpstreamError, "SC")
        );
        let rate = ConnectError::RateLimited {
            scope: LimitScope::Client,
            per_second: 1,
        };
        assert_eq!(Outcome::of_connect(&rate), (Outcome::RejectedRate, "PR"));
        let limit = ConnectError::LimitReached {
            scope: LimitScope::Route,
            max: 1,
        };
        assert_eq!(Outcome::of_connect(&limit), (Outcome::RejectedLimit, "PR"));
        let emfile = ConnectError::from_io(
            member(),
            io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error()),
        );
        assert!(!emfile.is_member_failure());
        assert_eq!(Outcome::of_connect(&emfile), (Outcome::LocalResource, "RC"));
    }

    #[test]
    fn relay_ends_map_to_outcome_and_code() {
        assert_eq!(Outcome::of_relay(&RelayEnd::Completed), (Outcome::Ok, "--"));
        assert_eq!(
            Outcome::of_relay(&RelayEnd::IdleTimeout),
            (Outcome::IdleTimeout, "cD")
        );
        assert_eq!(Outcome::of_relay(&RelayEnd::Cut), (Outcome::Shutdown, "KD"));
        assert_eq!(
            Outcome::of_relay(&RelayEnd::Silent),
            (Outcome::Timeout, "sD")
        );
        let reset = || io::Error::from(io::ErrorKind::ConnectionReset);
        let client = RelayEnd::Error {
            side: Side::Client,
            error: reset(),
        };
        assert_eq!(Outcome::of_relay(&client), (Outcome::ClientError, "CD"));
        let upstream = RelayEnd::Error {
            side: Side::Upstream,
            error: reset(),
        };
        assert_eq!(Outcome::of_relay(&upstream), (Outcome::UpstreamError, "SD"));
    }
}
