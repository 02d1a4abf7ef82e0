//! What a reload changes: a pure comparison of two validated configs.
//!
//! The server applies the diff: listeners whose address stays keep their socket (no refused
//! connect during a reload), members that keep their pool and name keep their state (health,
//! breaker, drain, active count), and only what was added or removed is started or stopped.
//! Keeping this a pure function makes those rules testable without sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::{Config, PoolConfig, RouteConfig};

/// Names added, removed, changed (present in both but different) and kept unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes<K: Ord> {
    pub added: BTreeSet<K>,
    pub removed: BTreeSet<K>,
    pub changed: BTreeSet<K>,
    pub unchanged: BTreeSet<K>,
}

impl<K: Ord> Default for Changes<K> {
    fn default() -> Self {
        Self {
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
            changed: BTreeSet::new(),
            unchanged: BTreeSet::new(),
        }
    }
}

impl<K: Ord> Changes<K> {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Everything a reload from `old` to `new` changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub routes: Changes<String>,
    pub pools: Changes<String>,
    /// Listen addresses (any route); a kept address keeps its socket, even if it moves to
    /// another route.
    pub listeners: Changes<SocketAddr>,
    /// Per pool present in both: members by configured name. A member whose address, weight
    /// or tier changed is `changed`; it keeps its state all the same.
    pub members: BTreeMap<String, Changes<String>>,
    /// Top-level settings (shutdown_grace, max_connections, seed, admin, access_log) differ.
    pub globals_changed: bool,
    /// Changed settings a running process cannot apply (set up once at startup): `admin`,
    /// `access_log`, `workers`.
    pub restart_needed: Vec<&'static str>,
}

impl ConfigDiff {
    /// Nothing to do: the new file means the same as the running one.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.pools.is_empty()
            && self.listeners.is_empty()
            && self.members.values().all(Changes::is_empty)
            && !self.globals_changed
    }

    /// One line for logs: `routes +1 -0 ~1, pools +0 -0 ~1, listeners +1 -1, members +2 -0 ~0`.
    pub fn summary(&self) -> String {
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        for m in self.members.values() {
            added += m.added.len();
            removed += m.removed.len();
            changed += m.changed.len();
        }
        format!(
            "routes +{} -{} ~{}, pools +{} -{} ~{}, listeners +{} -{}, members +{added} -{removed} ~{changed}",
            self.routes.added.len(),
            self.routes.removed.len(),
            self.routes.changed.len(),
            self.pools.added.len(),
            self.pools.removed.len(),
            self.pools.changed.len(),
            self.listeners.added.len(),
            self.listeners.removed.len(),
        ) + &if self.restart_needed.is_empty() {
            String::new()
        } else {
            format!("; restart needed for: {}", self.restart_needed.join(", "))
        }
    }
}

/// Compares two validated configs.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let routes = changes(
        old.routes.iter().map(|r| (r.name.clone(), r)),
        new.routes.iter().map(|r| (r.name.clone(), r)),
        |a: &&RouteConfig, b: &&RouteConfig| a == b,
    );
    let pools = changes(
        old.pools.iter().map(|p| (p.name.clone(), p)),
        new.pools.iter().map(|p| (p.name.clone(), p)),
        |a: &&PoolConfig, b: &&PoolConfig| a == b,
    );
    let listen = |c: &Config| -> Vec<(SocketAddr, ())> {
        c.routes
            .iter()
            .flat_map(|r| r.listen.iter().map(|&a| (a, ())))
            .collect()
    };
    let listeners = changes(listen(old), listen(new), |_, _| true);
    let mut members = BTreeMap::new();
    for p in &new.pools {
        let Some(before) = old.pool(&p.name) else {
            continue;
        };
        let by_name = |pool: &PoolConfig| -> Vec<(String, super::MemberConfig)> {
            pool.members
                .iter()
                .map(|m| (m.name.clone(), m.clone()))
                .collect()
        };
        members.insert(
            p.name.clone(),
            changes(by_name(before), by_name(p), |a, b| a == b),
        );
    }
    let globals_changed = old.shutdown_grace != new.shutdown_grace
        || old.shutdown_delay != new.shutdown_delay
        || old.max_connections != new.max_connections
        || old.seed != new.seed
        || old.admin != new.admin
        || old.access_log != new.access_log
        || old.workers != new.workers
        || old.reuse_port != new.reuse_port;
    let mut restart_needed = Vec::new();
    if old.admin != new.admin {
        restart_needed.push("admin");
    }
    if old.access_log != new.access_log {
        restart_needed.push("access_log");
    }
    if old.workers != new.workers {
        restart_needed.push("workers");
    }
    ConfigDiff {
        routes,
        pools,
        listeners,
        members,
        globals_changed,
        restart_needed,
    }
}

fn changes<K: Ord + Clone, V>(
    old: impl IntoIterator<Item = (K, V)>,
    new: impl IntoIterator<Item = (K, V)>,
    same: impl Fn(&V, &V) -> bool,
) -> Changes<K> {
    let old: BTreeMap<K, V> = old.into_iter().collect();
    let new: BTreeMap<K, V> = new.into_iter().collect();
    let mut c = Changes::default();
    for (k, v) in &new {
        match old.get(k) {
            None => c.added.insert(k.clone()),
            Some(before) if same(before, v) => c.unchanged.insert(k.clone()),
            Some(_) => c.changed.insert(k.clone()),
        };
    }
    c.removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_str;

    const BASE: &str = r#"
        [routes.web]
        listen = ["127.0.0.1:8080", "127.0.0.1:8081"]
        pool = "web"
        [routes.api]
        listen = "127.0.0.1:9090"
        pool = "api"
        [pools.web]
        members = [{ addr = "127.0.0.1:9001" }, { addr = "127.0.0.1:9002" }]
        [pools.api]
        members = [{ addr = "127.0.0.1:9101" }]
    "#;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn identical_configs_differ_in_nothing() {
        let a = from_str(BASE, None).unwrap();
        let d = diff(&a, &a.clone());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.routes.unchanged, set(&["api", "web"]));
        assert_eq!(
            d.summary(),
            "routes +0 -0 ~0, pools +0 -0 ~0, listeners +0 -0, members +0 -0 ~0"
        );
    }

    #[test]
    fn added_removed_and_changed_routes_pools_members_and_listeners() {
        let old = from_str(BASE, None).unwrap();
        let new = from_str(
            r#"
            [routes.web]
            listen = ["127.0.0.1:8080", "127.0.0.1:8082"]
            pool = "web"
            [routes.admin2]
            listen = "127.0.0.1:9191"
            pool = "web"
            [pools.web]
            balance = "least_conn"
            members = [{ addr = "127.0.0.1:9001", weight = 3 }, { addr = "127.0.0.1:9003" }]
            "#,
            None,
        )
        .unwrap();
        let d = diff(&old, &new);
        assert_eq!(d.routes.added, set(&["admin2"]));
        assert_eq!(d.routes.removed, set(&["api"]));
        assert_eq!(d.routes.changed, set(&["web"]));
        assert_eq!(d.pools.removed, set(&["api"]));
        assert_eq!(d.pools.changed, set(&["web"]));
        let addrs = |v: &[&str]| {
            v.iter()
                .map(|a| a.parse().unwrap())
                .collect::<BTreeSet<SocketAddr>>()
        };
        assert_eq!(d.listeners.unchanged, addrs(&["127.0.0.1:8080"]));
        assert_eq!(
            d.listeners.added,
            addrs(&["127.0.0.1:8082", "127.0.0.1:9191"])
        );
        assert_eq!(
            d.listeners.removed,
            addrs(&["127.0.0.1:8081", "127.0.0.1:9090"])
        );
        let web = &d.members["web"];
        assert_eq!(web.changed, set(&["127.0.0.1:9001"]));
        assert_eq!(web.added, set(&["127.0.0.1:9003"]));
        assert_eq!(web.removed, set(&["127.0.0.1:9002"]));
        assert!(
            !d.members.contains_key("api"),
            "a removed pool has no member diff"
        );
        assert!(!d.globals_changed);
    }

    #[test]
    fn a_listen_address_moving_between_routes_is_kept() {
        let old = from_str(BASE, None).unwrap();
        let moved = BASE
            .replace(
                r#"listen = "127.0.0.1:9090""#,
                r#"listen = "127.0.0.1:8081""#,
            )
            .replace(
                r#"["127.0.0.1:8080", "127.0.0.1:8081"]"#,
                r#"["127.0.0.1:8080", "127.0.0.1:9090"]"#,
            );
        let d = diff(&old, &from_str(&moved, None).unwrap());
        assert!(d.listeners.is_empty(), "{:?}", d.listeners);
        assert_eq!(d.routes.changed, set(&["api", "web"]));
    }

    #[test]
    fn top_level_settings_are_noticed() {
        let old = from_str(BASE, None).unwrap();
        let new = from_str(&format!("shutdown_grace = \"5s\"\n{BASE}"), None).unwrap();
        assert!(diff(&old, &new).globals_changed);
        assert!(diff(&old, &new).restart_needed.is_empty());
        let new = from_str(&format!("access_log = \"/tmp/a.log\"\n{BASE}"), None).unwrap();
        let d = diff(&old, &new);
        assert_eq!(d.restart_needed, ["access_log"]);
        assert!(
            d.summary().ends_with("; restart needed for: access_log"),
            "{}",
            d.summary()
        );
    }
}
