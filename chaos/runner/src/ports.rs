//! Fixed loopback ports for listeners that must bind the same address again: a `start`
//! member's command (and its restart), a deployed sluice's route in a test.
//!
//! A port-0 pick released and bound again later can be taken in between by any connection's
//! ephemeral source port (a health probe, a client, the workload). A port below the kernel's
//! ephemeral range is handed out only to explicit binds, so it stays free until its owner
//! binds it unless something else asks for that very number.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};

/// Lowest port handed out: above the well-known and most registered service ports.
const FLOOR: u16 = 10_000;

/// A loopback address below the ephemeral port range that nothing listens on now. Successive
/// calls in one process walk the range from a PID-derived start, so two drills on one machine
/// rarely probe the same ports.
pub fn fixed_loopback() -> io::Result<SocketAddr> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    // A range that starts at or below the floor leaves no room: fall back to the floor's span
    // up to the default start (binds there may meet ephemeral ports, and are checked anyway).
    let top = if ephemeral > FLOOR + 1_000 {
        ephemeral
    } else {
        32_768
    };
    let span = top - FLOOR;
    let base = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let offset = (base + NEXT.fetch_add(1, Ordering::Relaxed) % span) % span;
        let addr = SocketAddr::from(([127, 0, 0, 1], FLOOR + offset));
        if TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free loopback port between {FLOOR} and {top}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_free_distinct_and_below_the_ephemeral_range() {
        let a = fixed_loopback().unwrap();
        let b = fixed_loopback().unwrap();
        assert_ne!(a, b);
        for addr in [a, b] {
            assert!(addr.port() >= FLOOR);
            TcpListener::bind(addr).unwrap();
        }
    }
}
