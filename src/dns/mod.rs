//! Members from names: `host:port` and `srv` entries resolved in the background and kept
//! current by their TTL.
//!
//! [`Dns`] holds each query's last good answer and its schedule; [`expand`] turns a validated
//! config plus those answers into the config the server runs, with one member per address
//! (`db.example:5432 (10.0.0.7)`: the name stays the same across re-resolves, so a member that
//! stays keeps its health, breaker, drain state and counters, exactly as across a reload).
//! The server's resolver task (`server::Reloader::keep_dns_current`) asks [`Dns::resolve_due`]
//! and applies the expanded config when an answer changed; nothing on the connection path
//! waits for DNS.
//!
//! Failures: an answer that the name has no records (NXDOMAIN, empty) empties the entry; a
//! query that gets no answer (timeout, no server, SERVFAIL) keeps the last good answer
//! (HAProxy's `hold valid`). Both are asked again with a backoff from `min_ttl` doubling up
//! to [`MAX_RETRY`] (and `max_ttl`).

mod resolver;

pub use resolver::{LookupError, Resolver};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{Config, DnsConfig, DnsQuery, MAX_TIER, MemberConfig};
use crate::telemetry::metrics as m;

/// The longest wait before a failed query is asked again.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// One address an entry resolved to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub addr: SocketAddr,
    /// Added to the entry's tier: an SRV priority's rank (0 for the lowest priority value).
    pub tier_offset: u8,
    /// From the SRV record (0 → 1, clamped to 1..=256); `None`: the entry's weight.
    pub weight: Option<u32>,
}

/// The current answer of every query.
pub type Answers = BTreeMap<DnsQuery, Vec<Target>>;

/// The config to run: `config` with one member per address its DNS entries resolved to, in
/// file order (an entry's members where the entry is). An entry with no answer yet adds none;
/// an address a literal member has, or an earlier entry gave, is not added again.
pub fn expand(config: &Config, answers: &Answers) -> Config {
    let mut out = config.clone();
    for pool in &mut out.pools {
        let mut addrs: HashSet<SocketAddr> = pool.members.iter().map(|m| m.addr).collect();
        let literal = std::mem::take(&mut pool.members);
        let mut members = Vec::with_capacity(literal.len());
        let mut entries = pool.dns.iter().peekable();
        for i in 0..=literal.len() {
            while let Some(entry) = entries.next_if(|e| e.position <= i) {
                for t in answers.get(&entry.query).into_iter().flatten() {
                    if !addrs.insert(t.addr) {
                        continue;
                    }
                    members.push(MemberConfig {
                        name: member_name(&entry.query, t.addr),
                        addr: t.addr,
                        weight: t.weight.unwrap_or(entry.weight),
                        tier: entry.tier.saturating_add(t.tier_offset).min(MAX_TIER),
                    });
                }
            }
            if let Some(m) = literal.get(i) {
                members.push(m.clone());
            }
        }
        pool.members = members;
    }
    out
}

/// `db.example:5432 (10.0.0.7)`, `_pg._tcp.example (10.0.0.7:5432)`.
pub fn member_name(query: &DnsQuery, addr: SocketAddr) -> String {
    match query {
        DnsQuery::Host { .. } => format!("{query} ({})", addr.ip()),
        DnsQuery::Srv { .. } => format!("{query} ({addr})"),
    }
}

/// What `/status` shows of one DNS entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryStatus {
    /// `host:port` or the SRV name, as configured.
    pub name: String,
    /// Addresses of the answer in use (the last good one while queries fail).
    pub addresses: Vec<SocketAddr>,
    /// RFC 3339 time of the last answer (`None`: never answered).
    pub last_resolved: Option<String>,
    /// Milliseconds until the name is asked again.
    pub next_in_ms: u64,
    /// Why the last query failed; `None` when it succeeded.
    pub last_error: Option<String>,
    /// Whether the addresses are held from an earlier answer because queries fail.
    pub stale: bool,
}

#[derive(Debug)]
struct Entry {
    /// `None`: never answered; `Some(empty)`: the name has no records.
    targets: Option<Vec<Target>>,
    resolved_at: Option<SystemTime>,
    due: Instant,
    last_error: Option<String>,
    failures: u32,
}

/// Each query's answer and schedule, shared by the resolver task, reloads and `/status`.
pub struct Dns {
    state: Mutex<State>,
    /// Wakes the resolver task when a reload brings new entries or DNS settings.
    wake: Notify,
}

struct State {
    config: DnsConfig,
    /// Built on first use; rebuilt when `[dns]` changes.
    resolver: Option<Arc<Resolver>>,
    entries: BTreeMap<DnsQuery, Entry>,
}

// === impl Dns ===

impl Dns {
    pub fn new(config: &DnsConfig) -> Self {
        Self {
            state: Mutex::new(State {
                config: config.clone(),
                resolver: None,
                entries: BTreeMap::new(),
            }),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a reloaded config's `[dns]` and queries; the resolver task looks at them at once.
    /// New settings apply from the next query; answers already held stay until then.
    pub fn configure(&self, config: &Config) {
        let mut state = self.state();
        if state.config != config.dns {
            state.config = config.dns.clone();
            state.resolver = None;
            let now = Instant::now();
            for entry in state.entries.values_mut() {
                entry.due = now;
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Resolves every query of `queries` that is due (new ones at once), all at the same time,
    /// and forgets queries not listed. Returns whether any answer in use changed.
    pub async fn resolve_due(&self, queries: &[DnsQuery]) -> bool {
        let now = Instant::now();
        let (resolver, due) = {
            let mut state = self.state();
            let wanted: BTreeSet<&DnsQuery> = queries.iter().collect();
            state.entries.retain(|q, _| wanted.contains(q));
            for q in queries {
                state.entries.entry(q.clone()).or_insert_with(|| Entry {
                    targets: None,
                    resolved_at: None,
                    due: now,
                    last_error: None,
                    failures: 0,
                });
            }
            let due: Vec<DnsQuery> = state
                .entries
                .iter()
                .filter(|(_, e)| e.due <= now)
                .map(|(q, _)| q.clone())
                .collect();
            if due.is_empty() {
                return false;
            }
            if state.resolver.is_none() {
                match Resolver::new(&state.config) {
                    Ok(r) => state.resolver = Some(Arc::new(r)),
                    Err(reason) => {
                        let config = state.config.clone();
                        for q in &due {
                            let entry = state.entries.get_mut(q).expect("inserted above");
                            fail(q, entry, &config, LookupError::Failed(reason.clone()));
                        }
                        return false;
                    }
                }
            }
            (state.resolver.clone().expect("built above"), due)
        };
        let answers = futures_util::future::join_all(due.iter().map(|q| {
            let resolver = Arc::clone(&resolver);
            async move { resolver.lookup(q).await }
        }))
        .await;
        let mut state = self.state();
        let config = state.config.clone();
        let mut changed = false;
        for (q, answer) in due.iter().zip(answers) {
            // Forgotten by a reload meanwhile.
            let Some(entry) = state.entries.get_mut(q) else {
                continue;
            };
            let before = entry.targets.clone();
            match answer {
                Ok((mut targets, ttl)) => {
                    targets.sort();
                    targets.dedup();
                    metrics::counter!(m::DNS_RESOLUTIONS_TOTAL, "entry" => q.to_string(), "result" => "ok")
                        .increment(1);
                    let wait = ttl.clamp(config.min_ttl, config.max_ttl);
                    entry.targets = Some(targets);
                    entry.resolved_at = Some(SystemTime::now());
                    entry.due = Instant::now() + wait;
                    entry.last_error = None;
                    entry.failures = 0;
                }
                Err(e) => fail(q, entry, &config, e),
            }
            let addrs = entry.targets.as_ref().map_or(0, Vec::len);
            metrics::gauge!(m::DNS_ADDRESSES, "entry" => q.to_string()).set(addrs as f64);
            if entry.targets != before {
                let now: Vec<String> = entry
                    .targets
                    .iter()
                    .flatten()
                    .map(|t| t.addr.to_string())
                    .collect();
                info!(entry = %q, addresses = %now.join(", "), "DNS answer changed");
                changed = true;
            }
        }
        changed
    }

    /// The answers in use.
    pub fn answers(&self) -> Answers {
        self.state()
            .entries
            .iter()
            .filter_map(|(q, e)| e.targets.clone().map(|t| (q.clone(), t)))
            .collect()
    }

    /// When the next query is due; `None` without entries.
    pub fn next_due(&self) -> Option<Instant> {
        self.state().entries.values().map(|e| e.due).min()
    }

    /// Waits for [`Dns::configure`] (a reload).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Every entry, by name.
    pub fn status(&self) -> Vec<EntryStatus> {
        let now = Instant::now();
        self.state()
            .entries
            .iter()
            .map(|(q, e)| EntryStatus {
                name: q.to_string(),
                addresses: e.targets.iter().flatten().map(|t| t.addr).collect(),
                last_resolved: e
                    .resolved_at
                    .map(|t| humantime::format_rfc3339_millis(t).to_string()),
                next_in_ms: e.due.saturating_duration_since(now).as_millis() as u64,
                stale: e.last_error.is_some() && e.targets.as_ref().is_some_and(|t| !t.is_empty()),
                last_error: e.last_error.clone(),
            })
            .collect()
    }
}

/// Records a failed query: `NotFound` empties the entry, `Failed` keeps its last answer; both
/// retry after a backoff doubling from `min_ttl`.
fn fail(query: &DnsQuery, entry: &mut Entry, config: &DnsConfig, error: LookupError) {
    let result = match error {
        LookupError::NotFound(_) => "not_found",
        LookupError::Failed(_) => "error",
    };
    metrics::counter!(m::DNS_RESOLUTIONS_TOTAL, "entry" => query.to_string(), "result" => result)
        .increment(1);
    let held = entry.targets.as_ref().map_or(0, Vec::len);
    if let LookupError::NotFound(_) = error {
        entry.targets = Some(Vec::new());
    }
    warn!(entry = %query, error = error.reason(), held, "DNS query failed");
    entry.failures = entry.failures.saturating_add(1);
    let backoff = config
        .min_ttl
        .saturating_mul(1 << entry.failures.min(16).saturating_sub(1))
        .min(MAX_RETRY)
        .min(config.max_ttl);
    entry.due = Instant::now() + backoff;
    entry.last_error = Some(error.reason().to_string());
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;

/// `sluice check`'s DNS warnings: each entry that does not resolve now, asked once (sluice
/// would start without its members and add them when the name resolves).
pub async fn warnings(config: &Config) -> Vec<crate::config::Warning> {
    let queries = config.dns_queries();
    if queries.is_empty() {
        return Vec::new();
    }
    let dns = Dns::new(&config.dns);
    dns.resolve_due(&queries).await;
    let status = dns.status();
    let mut out = Vec::new();
    for pool in &config.pools {
        for entry in &pool.dns {
            let name = entry.query.to_string();
            let Some(s) = status.iter().find(|s| s.name == name) else {
                continue;
            };
            if s.addresses.is_empty() {
                let why = s.last_error.as_deref().unwrap_or("no addresses");
                out.push(crate::config::Warning {
                    key: format!("pools.{}.members", pool.name),
                    reason: format!(
                        "{name} does not resolve now ({why}); sluice starts without its members and adds them when it resolves"
                    ),
                });
            }
        }
    }
    out
}
