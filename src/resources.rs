//! The process's own resources: its descriptor limit, the connection capacity that limit
//! carries, and telling sluice's own shortage from a member's failure.
//!
//! A connect or probe that fails with `EMFILE` (this process is out of descriptors), `ENFILE`
//! (the system is), `ENOBUFS`/`ENOMEM` (kernel memory) or `EADDRNOTAVAIL` (no local port left
//! for that destination) says nothing about the member: the connect stack reports it as
//! [`ConnectError::LocalResource`](crate::connect::ConnectError::LocalResource), which feeds
//! no breaker, and a health probe that meets it leaves the member's state as it was.
//!
//! At start `sluice run` raises the soft `RLIMIT_NOFILE` to the hard limit (as HAProxy and Go
//! programs do), and a config without `max_connections` gets a global cap the limit can carry
//! ([`Capacity`]), so clients past it are closed at once and counted instead of waiting in an
//! accept queue that sluice cannot drain.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Descriptors kept aside from the per-connection budget: stdio, the epoll and signal fds,
/// listeners, log files, the admin listener and its connections (at most 64), the splice
/// pipes' free list (64 pipes, 128 fds) and slack for resolvers and reload. Per member one
/// more (its health probe) is added by [`Capacity::of`].
pub const RESERVED_FDS: u64 = 320;

/// Descriptors one relayed connection holds when idle: its client and its member socket.
/// While bytes are in flight a splice direction borrows a pipe (two more) from a bounded pool,
/// so the cap leaves room by counting [`RESERVED_FDS`] for the pool.
pub const FDS_PER_CONNECTION: u64 = 2;

/// Whether `e` is this machine's shortage rather than anything the peer did.
pub fn is_local_exhaustion(e: &io::Error) -> bool {
    if matches!(e.kind(), io::ErrorKind::OutOfMemory) {
        return true;
    }
    e.raw_os_error()
        .is_some_and(|code| LOCAL_ERRNOS.contains(&code))
}

#[cfg(target_os = "linux")]
const LOCAL_ERRNOS: [i32; 5] = {
    use rustix::io::Errno;
    [
        Errno::MFILE.raw_os_error(),
        Errno::NFILE.raw_os_error(),
        Errno::NOBUFS.raw_os_error(),
        Errno::NOMEM.raw_os_error(),
        Errno::ADDRNOTAVAIL.raw_os_error(),
    ]
};

#[cfg(not(target_os = "linux"))]
const LOCAL_ERRNOS: [i32; 0] = [];

/// One descriptor held in reserve (on `/dev/null`) for [`shed_one`].
static SPARE_FD: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

/// Set while [`SPARE_FD`] is empty: another thread took the descriptor [`shed_one`] freed
/// before its accept could (or none was free to reopen it). Checked once per finished
/// connection, the moment a descriptor comes free.
static SPARE_MISSING: AtomicBool = AtomicBool::new(true);

/// Opens the spare descriptor [`shed_one`] needs, once per process (later calls, and a
/// failure to open it, change nothing).
pub fn reserve_spare_fd() {
    let mut spare = SPARE_FD.lock().unwrap_or_else(|p| p.into_inner());
    if spare.is_none() {
        *spare = std::fs::File::open("/dev/null").ok();
    }
    SPARE_MISSING.store(spare.is_none(), Ordering::Relaxed);
}

/// Takes the spare back if it was lost; one relaxed load when it was not. Called when a
/// connection ends, which frees the descriptors to take it with. Returns whether it took a
/// descriptor just now (then one was free, and a real accept may have one too).
pub fn restore_spare_fd() -> bool {
    if SPARE_MISSING.load(Ordering::Relaxed) {
        reserve_spare_fd();
        return !SPARE_MISSING.load(Ordering::Relaxed);
    }
    false
}

/// Whether `e` is the process or the system out of descriptors: the shortage a spare
/// descriptor can shed clients through (ENOBUFS/ENOMEM are memory: closing a spare frees none).
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::io::Errno;
        e.raw_os_error().is_some_and(|code| {
            code == Errno::MFILE.raw_os_error() || code == Errno::NFILE.raw_os_error()
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = e;
        false
    }
}

/// Out of descriptors, a client waiting in `listener`'s accept queue would wait until one
/// frees up, with no answer (measured: 940 of 1,500 clients hung). This closes the spare
/// descriptor, accepts one waiting client into it, closes that client at once (it learns now)
/// and takes the spare back: the trick libev and nginx-unit use. `false` when there was no
/// spare or no waiting client.
pub fn shed_one(listener: &impl std::os::fd::AsFd) -> bool {
    let mut spare = SPARE_FD.lock().unwrap_or_else(|p| p.into_inner());
    let Some(file) = spare.take() else {
        return false;
    };
    drop(file);
    let shed = socket2::SockRef::from(listener).accept().is_ok();
    *spare = std::fs::File::open("/dev/null").ok();
    SPARE_MISSING.store(spare.is_none(), Ordering::Relaxed);
    shed
}

/// Where a shortage was met: the `op` label of `sluice_local_resource_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortageAt {
    /// Accepting a client.
    Accept,
    /// Connecting to a member for a client.
    Connect,
    /// A health probe's connect.
    Probe,
}

impl ShortageAt {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Connect => "connect",
            Self::Probe => "probe",
        }
    }
}

/// Counts a shortage and logs it, at most once a second per `at` with how many were held
/// back: under descriptor exhaustion every worker meets one per accept and per connect.
pub fn report_shortage(at: ShortageAt, error: &io::Error) {
    use crate::telemetry::throttle::Throttle;
    static THROTTLES: [Throttle; 3] = [
        Throttle::new(std::time::Duration::from_secs(1)),
        Throttle::new(std::time::Duration::from_secs(1)),
        Throttle::new(std::time::Duration::from_secs(1)),
    ];
    metrics::counter!(crate::telemetry::metrics::LOCAL_RESOURCE_ERRORS_TOTAL, "op" => at.as_str())
        .increment(1);
    if let Some(suppressed) = THROTTLES[at as usize].admit() {
        tracing::error!(
            op = at.as_str(),
            %error,
            suppressed,
            fd_limit = current_fd_limit(),
            "sluice is short of its own resources (not a member's fault: no member is blamed); \
             raise LimitNOFILE / ulimit -n or lower max_connections"
        );
    }
}

/// The descriptor limit as `sluice run` found and left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit in force now.
    pub soft: u64,
    /// The hard limit (the ceiling an unprivileged process may raise the soft one to).
    pub hard: u64,
    /// The soft limit before it was raised, when it was.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns what is in force. A limit
/// that cannot be read or raised is left as it is (the error says why).
#[cfg(target_os = "linux")]
pub fn raise_fd_limit() -> io::Result<FdLimit> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let (soft, hard) = (now.current, now.maximum);
    let Some(soft) = soft else {
        // Unlimited: nothing to raise.
        return Ok(FdLimit {
            soft: u64::MAX,
            hard: u64::MAX,
            raised_from: None,
        });
    };
    let hard_value = hard.unwrap_or(u64::MAX);
    if soft >= hard_value {
        return Ok(FdLimit {
            soft,
            hard: hard_value,
            raised_from: None,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    )?;
    Ok(FdLimit {
        soft: hard_value,
        hard: hard_value,
        raised_from: Some(soft),
    })
}

/// The soft `RLIMIT_NOFILE` in force now (`u64::MAX` when unlimited or unknown).
pub fn current_fd_limit() -> u64 {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX)
    }
    #[cfg(not(target_os = "linux"))]
    {
        u64::MAX
    }
}

/// How many relayed connections a descriptor limit carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// The soft descriptor limit it was computed from.
    pub fd_limit: u64,
    /// Descriptors kept aside: [`RESERVED_FDS`] plus one per member (its health probe).
    pub reserved: u64,
    /// Connections the rest carries at [`FDS_PER_CONNECTION`] each (at least 1).
    pub connections: usize,
}

impl Capacity {
    /// The capacity of `fd_limit` for `config`: one probe descriptor per member, and an admin
    /// connection cap above the 64 [`RESERVED_FDS`] counts on kept aside too.
    pub fn for_config(fd_limit: u64, config: &crate::config::Config) -> Self {
        let members: usize = config.pools.iter().map(|p| p.members.len()).sum();
        let admin_extra = config
            .admin
            .as_ref()
            .map_or(0, |a| a.max_connections.saturating_sub(64));
        Self::of(fd_limit, members + admin_extra)
    }

    /// The capacity of `fd_limit` for a config with `members` members in all.
    pub fn of(fd_limit: u64, members: usize) -> Self {
        let reserved = RESERVED_FDS + members as u64;
        let connections = (fd_limit.saturating_sub(reserved) / FDS_PER_CONNECTION).max(1);
        Self {
            fd_limit,
            reserved,
            connections: usize::try_from(connections).unwrap_or(usize::MAX),
        }
    }
}

/// The hard `RLIMIT_NOFILE`: what `sluice run` will raise the soft limit to (`sluice check`
/// judges a config against it).
pub fn hard_fd_limit() -> u64 {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .unwrap_or(u64::MAX)
    }
    #[cfg(not(target_os = "linux"))]
    {
        u64::MAX
    }
}

/// A configured `max_connections` the descriptor limit cannot carry, as a warning naming both
/// figures; `None` when it fits or is unset (then the cap is the capacity itself).
pub fn cap_warning(max_connections: Option<usize>, capacity: Capacity) -> Option<String> {
    let max = max_connections?;
    (max > capacity.connections).then(|| {
        format!(
            "max_connections = {max}: the descriptor limit ({}) carries about {} connections \
             ({} fds kept aside, {FDS_PER_CONNECTION} per connection); past that clients meet \
             EMFILE instead of a clean refusal: raise LimitNOFILE / ulimit -n, or lower \
             max_connections",
            capacity.fd_limit, capacity.connections, capacity.reserved
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_shortages_are_told_from_peer_failures() {
        for local in [
            rustix::io::Errno::MFILE,
            rustix::io::Errno::NFILE,
            rustix::io::Errno::NOBUFS,
            rustix::io::Errno::ADDRNOTAVAIL,
        ] {
            let e = io::Error::from_raw_os_error(local.raw_os_error());
            assert!(is_local_exhaustion(&e), "{e}");
        }
        for peer in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::TimedOut,
        ] {
            assert!(!is_local_exhaustion(&io::Error::from(peer)));
        }
        let unreachable =
            io::Error::from_raw_os_error(rustix::io::Errno::HOSTUNREACH.raw_os_error());
        assert!(!is_local_exhaustion(&unreachable));
    }

    #[test]
    fn capacity_leaves_the_reserve_and_two_fds_per_connection() {
        let c = Capacity::of(1024, 4);
        assert_eq!(c.reserved, 324);
        assert_eq!(c.connections, 350);
        assert_eq!(Capacity::of(100, 4).connections, 1);
        assert_eq!(
            Capacity::of(u64::MAX, 0).connections as u64,
            (u64::MAX - 320) / 2
        );
    }

    #[test]
    fn a_cap_above_capacity_is_a_warning_naming_both() {
        let c = Capacity::of(1024, 4);
        assert_eq!(cap_warning(None, c), None);
        assert_eq!(cap_warning(Some(350), c), None);
        let w = cap_warning(Some(10_000), c).unwrap();
        assert!(
            w.starts_with("max_connections = 10000: the descriptor limit (1024) carries about 350"),
            "{w}"
        );
    }
}
