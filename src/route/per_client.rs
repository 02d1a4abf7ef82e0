//! `max_connections_per_client`: concurrent connections from one client address on a route
//! (HAProxy's `sc_conn_cur` pattern). A map from address to count behind one lock, touched
//! once when a connection starts and once when it ends, and only on routes that set the
//! option; an address with no connection left is removed, so the map holds only live clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The live connection count of each client address of one route.
#[derive(Debug)]
pub struct PerClient {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; its count is given back when dropped.
#[derive(Debug)]
pub struct PerClientGuard {
    owner: Arc<PerClient>,
    client: IpAddr,
}

impl PerClient {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A guard when `client` has fewer than `max` connections now, else `None`. IPv4-mapped
    /// IPv6 addresses count as their IPv4 address.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Option<PerClientGuard> {
        let client = client.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PerClientGuard {
            owner: Arc::clone(self),
            client,
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for PerClientGuard {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_max_and_leaves_nothing_behind() {
        let limit = PerClient::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.admit(a).unwrap();
        let second = limit.admit(mapped).unwrap();
        assert!(
            limit.admit(a).is_none(),
            "the mapped form counts as the same client"
        );
        let other = limit.admit(b).unwrap();
        drop(first);
        let third = limit.admit(a).unwrap();
        drop((second, third, other));
        assert_eq!(limit.tracked(), 0);
    }
}
