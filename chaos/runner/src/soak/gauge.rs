//! The process's own resources, read from `/proc/self`: open fds and resident memory.
//!
//! sluice, the member servers and the clients all live in this process, so every socket a
//! connection used, on every side of it, shows in one fd count, and a connection leaked
//! anywhere keeps its fds. The injector runs in its own process and is not counted.
//!
//! The relay keeps up to 64 empty splice pipes (two fds each) for reuse, on purpose
//! (`relay::pipes_pooled`); [`Gauge::net_fds`] leaves them out so a pool that filled up
//! during the run does not read as a leak. Reading `/proc` is a few in-memory syscalls,
//! cheap enough to do on a runtime thread.

use std::io;

use serde::Serialize;

/// One reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Gauge {
    /// Open fds of the process (not counting the one used to list them).
    pub fds: u64,
    /// Empty splice pipes the relay keeps for reuse (two fds each).
    pub pooled_pipes: u64,
    /// Resident set size, bytes (`VmRSS`).
    pub rss: u64,
}

impl Gauge {
    /// Reads the fd count, the pipe pool and RSS now.
    pub fn read() -> io::Result<Self> {
        Ok(Self {
            fds: open_fds()?,
            pooled_pipes: sluice::relay::pipes_pooled() as u64,
            rss: rss()?,
        })
    }

    /// Open fds less the pooled pipes': what connections and everything else hold.
    pub fn net_fds(&self) -> u64 {
        self.fds.saturating_sub(2 * self.pooled_pipes)
    }
}

fn open_fds() -> io::Result<u64> {
    // The listing holds one fd of its own while it runs.
    let n = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(n.saturating_sub(1))
}

fn rss() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS line in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_shows_in_the_count() {
        let before = Gauge::read().unwrap();
        assert!(before.rss > 0);
        let _a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let after = Gauge::read().unwrap();
        // Other tests run in parallel and open fds too: at least ours is there.
        assert!(after.fds >= 1);
        assert!(after.net_fds() <= after.fds);
    }
}
