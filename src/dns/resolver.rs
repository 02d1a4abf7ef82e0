//! One DNS question and its answer, through hickory-resolver: no DNS parsing of our own.
//!
//! A `host:port` query asks for A records (AAAA only when a name has none, as `getaddrinfo`
//! prefers on most hosts); an SRV query asks for the SRV records and then each target's
//! addresses (from the additional section when the server sent them there). The answer's TTL
//! is the smallest TTL of the records it was built from; clamping is the caller's.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, Record};

use super::Target;
use crate::config::{DnsConfig, DnsQuery, MAX_TIER, MAX_WEIGHT};

/// Why a query gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// The server answered that the name has no such records (NXDOMAIN or an empty answer):
    /// the entry has no members until that changes.
    NotFound(String),
    /// No usable answer (timeout, no server reachable, SERVFAIL): the last good answer stays.
    Failed(String),
}

impl LookupError {
    pub fn reason(&self) -> &str {
        match self {
            Self::NotFound(r) | Self::Failed(r) => r,
        }
    }

    fn from_net(what: &str, e: &NetError) -> Self {
        if e.is_nx_domain() || e.is_no_records_found() {
            Self::NotFound(format!("{what}: no records ({e})"))
        } else {
            Self::Failed(format!("{what}: {e}"))
        }
    }
}

/// A resolver built from `[dns]`.
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// The servers of `config`, or the system's (`/etc/resolv.conf`) when it names none.
    pub fn new(config: &DnsConfig) -> Result<Self, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.servers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
        } else {
            let servers = config
                .servers
                .iter()
                .map(|s| {
                    let mut server = NameServerConfig::udp_and_tcp(s.ip());
                    for c in &mut server.connections {
                        c.port = s.port();
                    }
                    server
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                provider,
            )
        };
        let opts = builder.options_mut();
        // sluice keeps its own answers and asks again when their TTL runs out: a cache in
        // between would hand back the old answer for its own TTL.
        opts.cache_size = 0;
        opts.timeout = config.timeout;
        opts.attempts = 2;
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        let inner = builder
            .build()
            .map_err(|e| format!("cannot build a resolver: {e}"))?;
        Ok(Self { inner })
    }

    /// The targets `query` resolves to now, and the TTL of that answer.
    pub async fn lookup(&self, query: &DnsQuery) -> Result<(Vec<Target>, Duration), LookupError> {
        match query {
            DnsQuery::Host { host, port } => {
                let (ips, ttl) = self.ips(&fqdn(host)).await?;
                let targets = ips
                    .into_iter()
                    .map(|ip| Target {
                        addr: SocketAddr::new(ip, *port),
                        tier_offset: 0,
                        weight: None,
                    })
                    .collect();
                Ok((targets, ttl))
            }
            DnsQuery::Srv { name } => self.srv(name).await,
        }
    }

    async fn ips(&self, host: &str) -> Result<(BTreeSet<IpAddr>, Duration), LookupError> {
        let lookup = self
            .inner
            .lookup_ip(host)
            .await
            .map_err(|e| LookupError::from_net(host, &e))?;
        let records = lookup.as_lookup().answers();
        let ips: BTreeSet<IpAddr> = lookup.iter().collect();
        if ips.is_empty() {
            return Err(LookupError::NotFound(format!("{host}: no addresses")));
        }
        Ok((
            ips,
            min_ttl(records.iter().filter(|r| r.data.ip_addr().is_some())),
        ))
    }

    async fn srv(&self, name: &str) -> Result<(Vec<Target>, Duration), LookupError> {
        let lookup = self
            .inner
            .srv_lookup(fqdn(name))
            .await
            .map_err(|e| LookupError::from_net(name, &e))?;
        let srvs: Vec<(&Record, u16, u16, u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => {
                    Some((r, srv.priority, srv.weight, srv.port, srv.target.to_ascii()))
                }
                _ => None,
            })
            .collect();
        if srvs.is_empty() {
            return Err(LookupError::NotFound(format!("{name}: no SRV records")));
        }
        let mut ttl = min_ttl(srvs.iter().map(|s| s.0));
        // Addresses the server sent along, by target name.
        let mut glue: HashMap<String, (BTreeSet<IpAddr>, Duration)> = HashMap::new();
        for r in lookup.additionals() {
            if let Some(ip) = r.data.ip_addr() {
                let entry = glue
                    .entry(r.name.to_ascii())
                    .or_insert_with(|| (BTreeSet::new(), Duration::MAX));
                entry.0.insert(ip);
                entry.1 = entry.1.min(Duration::from_secs(u64::from(r.ttl)));
            }
        }
        let priorities: BTreeSet<u16> = srvs.iter().map(|s| s.1).collect();
        let mut targets = Vec::new();
        let mut errors = Vec::new();
        for (_, priority, weight, port, target) in &srvs {
            let ips = match glue.get(target) {
                Some(found) => found.clone(),
                None => match self.ips(target).await {
                    Ok(found) => found,
                    // One target that does not resolve leaves the others in.
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
            };
            ttl = ttl.min(ips.1);
            let rank = priorities.iter().position(|p| p == priority).unwrap_or(0);
            for ip in ips.0 {
                targets.push(Target {
                    addr: SocketAddr::new(ip, *port),
                    tier_offset: rank.min(usize::from(MAX_TIER)) as u8,
                    weight: Some(u32::from(*weight).clamp(1, MAX_WEIGHT)),
                });
            }
        }
        if targets.is_empty() {
            return Err(errors
                .into_iter()
                .next()
                .unwrap_or_else(|| LookupError::NotFound(format!("{name}: no targets"))));
        }
        Ok((targets, ttl))
    }
}

/// A configured name is absolute: no search domains are tried (`db` would otherwise become
/// `db.<search domain>` before `db`, and answer for another host).
fn fqdn(name: &str) -> String {
    if name.contains('.') {
        format!("{name}.")
    } else {
        name.to_string()
    }
}

fn min_ttl<'a>(records: impl Iterator<Item = &'a Record>) -> Duration {
    records
        .map(|r| Duration::from_secs(u64::from(r.ttl)))
        .min()
        .unwrap_or(Duration::ZERO)
}
