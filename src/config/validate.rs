//! File types to runtime types, in one pass that reports every problem it finds.
//!
//! This is the only home of range rules and cross references (a route's pool exists, listen
//! addresses are unique, member tiers have no gaps). `sluice check`, startup and reload all call
//! [`from_file`], so they print the same messages.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use super::parse::{self, Parsed};
use super::schema::{
    BreakerFile, DnsFile, ExpectFile, ExpectRegexFile, FileConfig, HealthFile, HttpCheckFile,
    HumanDuration, InitState, KeepaliveFile, MemberFile, OnLimitKind, PoolFile, RateLimitFile,
    RetryFile, RouteFile,
};
use super::{
    AcceptProxy, AcceptProxyVersion, AdminConfig, AllDown, BalanceKind, BreakerConfig,
    ClientFilter, Config, ConfigError, ConfigErrors, DEFAULT_BACKLOG, DEFAULT_BUFFER_SIZE,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_PIPE_SIZE, DEFAULT_SHUTDOWN_GRACE,
    DnsConfig, DnsEntry, DnsQuery, Expect, HealthConfig, HttpCheck, Keepalive, MAX_WEIGHT,
    MemberConfig, OnLimit, OnSilent, PoolConfig, RateLimitConfig, RelayConfig, RetryConfig,
    RouteConfig, SilentConfig, SocketOptions, source_name,
};

/// The shortest `breaker.silent_after_request`: below it, scheduling noise looks like silence.
const MIN_SILENT_AFTER_REQUEST: Duration = Duration::from_millis(10);

/// Highest backup tier; a guard against typos such as `tier = 10` for `tier = 1`.
const MAX_TIER: i64 = super::MAX_TIER as i64;
/// The lowest `[dns] min_ttl`: a name with TTL 0 is asked at most this often.
const MIN_DNS_TTL: Duration = Duration::from_millis(100);
/// How long a queued connection waits for a slot by default.
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client of an `accept_proxy` route has to send its whole PROXY header.
const DEFAULT_ACCEPT_PROXY_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest health probe interval (and fast interval) a config may set.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Reads and validates a config file.
pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::at_file(&path.display().to_string(), format!("cannot read: {e}"))
    })?;
    from_str(&text, Some(path))
}

/// Validates config text; `source` names it in messages and in [`Config::source`].
pub fn from_str(text: &str, source: Option<&Path>) -> Result<Config, ConfigErrors> {
    let file = source_name(source);
    let Parsed {
        file: parsed,
        errors,
        removed,
    } = parse::parse(text, &file).map_err(|mut errors| {
        parse::locate(text, &mut errors);
        ConfigErrors(errors)
    })?;
    let mut v = Validator {
        file,
        errors,
        removed,
    };
    let config = v.config(parsed, source);
    if v.errors.is_empty() {
        Ok(config)
    } else {
        parse::locate(text, &mut v.errors);
        Err(ConfigErrors(v.errors))
    }
}

struct Validator {
    file: String,
    errors: Vec<ConfigError>,
    /// Keys the structural pass already reported and removed; not reported again as missing.
    removed: HashSet<String>,
}

// === impl Validator ===

impl Validator {
    fn error(&mut self, path: impl Into<String>, value: Option<String>, reason: impl Into<String>) {
        self.errors
            .push(ConfigError::at_key(&self.file, path, value, reason));
    }

    fn missing(&mut self, path: String, reason: &str) {
        if !self.removed.contains(&path) {
            self.error(path, None, reason);
        }
    }

    fn config(&mut self, file: FileConfig, source: Option<&Path>) -> Config {
        let admin = file.admin.and_then(|a| self.admin(a, source));
        let dns = self.dns(file.dns.unwrap_or_default());
        if file.routes.is_empty() && !self.removed.contains("routes") {
            self.errors.push(ConfigError::at_file(
                &self.file,
                "no routes defined; add a [routes.NAME] table with listen and pool",
            ));
        }
        let defined_pools: Vec<&str> = file.pools.keys().map(String::as_str).collect();
        let defined = defined_pools.join(", ");
        let mut routes = Vec::new();
        let mut listen_owner: HashMap<SocketAddr, String> = HashMap::new();
        for (name, route) in &file.routes {
            if let Some(r) = self.route(name, route, &defined_pools, &defined, &mut listen_owner) {
                routes.push(r);
            }
        }
        let pools = file
            .pools
            .into_iter()
            .filter_map(|(name, pool)| self.pool(name, pool))
            .collect();
        let max_connections = self.limit("max_connections", file.max_connections);
        let workers = match file.workers {
            None | Some(0) => None,
            Some(n) => self
                .int_in("workers", Some(n), 1, 1, 1024)
                .map(|n| n as usize),
        };
        let access_log = file.access_log.and_then(|p| {
            if p.trim().is_empty() {
                self.error(
                    "access_log",
                    Some("\"\"".into()),
                    "must be a file path; remove the key to log to stderr",
                );
                None
            } else {
                Some(std::path::PathBuf::from(p))
            }
        });
        Config {
            source: source.map(Path::to_path_buf),
            shutdown_grace: file.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0),
            shutdown_delay: file.shutdown_delay.map_or(Duration::ZERO, |d| d.0),
            seed: file.seed,
            admin,
            dns,
            max_connections,
            access_log,
            workers,
            reuse_port: file.reuse_port.unwrap_or(true),
            routes,
            pools,
        }
    }

    fn dns(&mut self, dns: DnsFile) -> DnsConfig {
        let d = DnsConfig::default();
        let servers = dns
            .servers
            .unwrap_or_default()
            .iter()
            .filter_map(|s| {
                // A bare IP means port 53, as in resolv.conf.
                match s.parse::<IpAddr>() {
                    Ok(ip) => Some(SocketAddr::new(ip, 53)),
                    Err(_) => self.socket_addr("dns.servers", s),
                }
            })
            .collect();
        const TTL_FLOOR: &str =
            "must be at least 100ms (a name with TTL 0 would be asked without pause)";
        let min_ttl = self.at_least(
            "dns.min_ttl",
            dns.min_ttl,
            d.min_ttl,
            MIN_DNS_TTL,
            TTL_FLOOR,
        );
        let max_ttl = self.at_least(
            "dns.max_ttl",
            dns.max_ttl,
            d.max_ttl.max(min_ttl),
            MIN_DNS_TTL,
            TTL_FLOOR,
        );
        if min_ttl > max_ttl {
            self.error(
                "dns.min_ttl",
                Some(quote(&humantime::format_duration(min_ttl).to_string())),
                format!(
                    "must not exceed max_ttl ({})",
                    humantime::format_duration(max_ttl)
                ),
            );
        }
        let timeout = self.positive("dns.timeout", dns.timeout, d.timeout);
        DnsConfig {
            servers,
            min_ttl,
            max_ttl,
            timeout,
        }
    }

    fn admin(
        &mut self,
        admin: super::schema::AdminFile,
        source: Option<&Path>,
    ) -> Option<AdminConfig> {
        let allow_remote = admin.allow_remote.unwrap_or(false);
        let max_connections = self.int_in(
            "admin.max_connections",
            admin.max_connections,
            super::DEFAULT_ADMIN_MAX_CONNECTIONS as i64,
            1,
            1024,
        );
        let token = match &admin.token_file {
            None => Some(None),
            Some(path) => self.admin_token(path, source).map(Some),
        };
        let Some(listen) = admin.listen else {
            self.missing(
                "admin.listen".into(),
                "missing key; e.g. listen = \"127.0.0.1:9901\"",
            );
            return None;
        };
        let addr = self.socket_addr("admin.listen", &listen)?;
        if !addr.ip().is_loopback() && !allow_remote {
            self.error(
                "admin.listen",
                Some(quote(&listen)),
                "not a loopback address; the admin API can drain members and reload, so set admin.allow_remote = true to expose it",
            );
            return None;
        }
        Some(AdminConfig {
            listen: addr,
            allow_remote,
            max_connections: max_connections? as usize,
            token: token?,
        })
    }

    /// Reads `admin.token_file` (relative to the config file's directory) now, so a missing or
    /// empty file fails `check`, startup and reload alike; surrounding whitespace (the trailing
    /// newline an editor adds) is not part of the token.
    fn admin_token(&mut self, path: &str, source: Option<&Path>) -> Option<super::AdminToken> {
        let full = match source.and_then(Path::parent) {
            Some(dir) => dir.join(path),
            None => std::path::PathBuf::from(path),
        };
        let reason = match std::fs::read_to_string(&full) {
            Ok(text) => match super::AdminToken::new(text.trim().to_string()) {
                Some(token) => return Some(token),
                None => "the file is empty; put the token in it or remove the key".to_string(),
            },
            Err(e) => format!("cannot read {}: {e}", full.display()),
        };
        self.error("admin.token_file", Some(quote(path)), reason);
        None
    }

    fn route(
        &mut self,
        name: &str,
        route: &RouteFile,
        pools: &[&str],
        defined: &str,
        listen_owner: &mut HashMap<SocketAddr, String>,
    ) -> Option<RouteConfig> {
        let key = |k: &str| format!("routes.{name}.{k}");
        let route_errors_before = self.errors.len();
        let mut ok = true;

        let mut listen = Vec::new();
        match &route.listen {
            None => {
                self.missing(
                    key("listen"),
                    "missing key; e.g. listen = \"127.0.0.1:8080\"",
                );
                ok = false;
            }
            Some(l) => {
                let addrs = match l {
                    super::schema::OneOrMany::One(s) => vec![s.clone()],
                    super::schema::OneOrMany::Many(v) => v.clone(),
                };
                if addrs.is_empty() {
                    self.error(
                        key("listen"),
                        Some("[]".into()),
                        "needs at least one address",
                    );
                    ok = false;
                }
                for text in addrs {
                    let Some(addr) = self.socket_addr(&key("listen"), &text) else {
                        ok = false;
                        continue;
                    };
                    // Port 0 asks the kernel for a free port, so it never collides.
                    if addr.port() != 0 {
                        if let Some(owner) = listen_owner.get(&addr) {
                            let reason = format!("address already used by {owner}");
                            self.error(key("listen"), Some(quote(&text)), reason);
                            ok = false;
                            continue;
                        }
                        listen_owner.insert(addr, format!("routes.{name}"));
                    }
                    listen.push(addr);
                }
            }
        }

        let pool = match &route.pool {
            None => {
                self.missing(key("pool"), "missing key: the pool this route forwards to");
                None
            }
            Some(p) if !pools.contains(&p.as_str()) => {
                let reason = if pools.is_empty() {
                    "no such pool (no pools are defined)".to_string()
                } else {
                    format!("no such pool (defined: {defined})")
                };
                self.error(key("pool"), Some(quote(p)), reason);
                None
            }
            Some(p) => Some(p.clone()),
        };

        let connect_timeout = route
            .connect_timeout
            .map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0);
        if connect_timeout.is_zero() {
            self.error(
                key("connect_timeout"),
                Some("\"0s\"".into()),
                "must be greater than zero",
            );
            ok = false;
        }
        let idle_timeout = match route.idle_timeout {
            None => Some(DEFAULT_IDLE_TIMEOUT),
            Some(HumanDuration(d)) if d.is_zero() => None,
            Some(HumanDuration(d)) => Some(d),
        };
        let backlog = self.int_in(
            &key("backlog"),
            route.backlog,
            DEFAULT_BACKLOG as i64,
            1,
            65_535,
        );
        let buffer_size = self.int_in(
            &key("buffer_size"),
            route.buffer_size,
            DEFAULT_BUFFER_SIZE as i64,
            1024,
            1 << 20,
        );

        let max_connections = self.limit(&key("max_connections"), route.max_connections);
        let rate_limit = route
            .rate_limit
            .as_ref()
            .and_then(|r| self.rate(&key("rate_limit"), r));
        let client_rate_limit = route
            .client_rate_limit
            .as_ref()
            .and_then(|r| self.rate(&key("client_rate_limit"), r));
        let on_limit = match route.on_limit {
            None | Some(OnLimitKind::Reject) => {
                if route.queue_timeout.is_some() {
                    self.error(
                        key("queue_timeout"),
                        None,
                        "only applies with on_limit = \"queue\"",
                    );
                }
                OnLimit::Reject
            }
            Some(OnLimitKind::Queue) => OnLimit::Queue {
                timeout: self.positive(
                    &key("queue_timeout"),
                    route.queue_timeout,
                    DEFAULT_QUEUE_TIMEOUT,
                ),
            },
        };
        let retry = self.retry(&key("retry"), route.retry.as_ref());
        let accept_proxy = self.accept_proxy(&key, route);
        let socket = SocketOptions {
            keepalive: self.keepalive(&key("tcp_keepalive"), route.tcp_keepalive.as_ref()),
            nodelay: route.tcp_nodelay.unwrap_or(true),
            source: None,
        };
        let clients = ClientFilter {
            allow: self.cidrs(&key("allow"), route.allow.as_deref()),
            deny: self.cidrs(&key("deny"), route.deny.as_deref()),
        };

        let errors_here = self.errors.len() != route_errors_before;
        // 4 KiB (a page) to 1 GiB (the kernel's pipe-max-size ceiling).
        let pipe_size = match route.pipe_size {
            None => Some(Some(DEFAULT_PIPE_SIZE)),
            Some(n) => self
                .int_in(&key("pipe_size"), Some(n), 0, 4096, 1 << 30)
                .map(|n| Some(n as usize)),
        };
        let (Some(pool), Some(backlog), Some(buffer_size), Some(pipe_size), true, false) =
            (pool, backlog, buffer_size, pipe_size, ok, errors_here)
        else {
            return None;
        };
        Some(RouteConfig {
            name: name.to_string(),
            listen,
            pool,
            connect_timeout,
            idle_timeout,
            backlog: backlog as u32,
            relay: RelayConfig {
                buffer_size: buffer_size as usize,
                mode: route.relay.unwrap_or_default(),
                pipe_size,
            },
            max_connections,
            rate_limit,
            client_rate_limit,
            on_limit,
            retry: retry?,
            proxy_protocol: route.proxy_protocol.unwrap_or_default(),
            clients,
            accept_proxy,
            socket,
            max_connections_per_client: self.limit(
                &key("max_connections_per_client"),
                route.max_connections_per_client,
            ),
        })
    }

    /// `tcp_keepalive`: every key optional (idle 60s, interval 10s, count 3, as the kernel's
    /// own scale goes: whole seconds, count 1..127).
    fn keepalive(&mut self, path: &str, file: Option<&KeepaliveFile>) -> Option<Keepalive> {
        let file = file?;
        let mut seconds = |k: &str, value: Option<HumanDuration>, default: u64| {
            let d = value.map_or(Duration::from_secs(default), |d| d.0);
            if d < Duration::from_secs(1) || d > Duration::from_secs(32_767) {
                self.error(
                    format!("{path}.{k}"),
                    Some(quote(&humantime::format_duration(d).to_string())),
                    "must be between 1s and 32767s (the kernel counts whole seconds)",
                );
            }
            Duration::from_secs(d.as_secs().clamp(1, 32_767))
        };
        let idle = seconds("idle", file.idle, 60);
        let interval = seconds("interval", file.interval, 10);
        let count = self.int_in(&format!("{path}.count"), file.count, 3, 1, 127)?;
        Some(Keepalive {
            idle,
            interval,
            count: count as u32,
        })
    }

    /// `accept_proxy`, `accept_proxy_from` (required when on: a header from anyone else would
    /// let any client claim any address) and `accept_proxy_timeout` (default 5s).
    fn accept_proxy(
        &mut self,
        key: &dyn Fn(&str) -> String,
        route: &RouteFile,
    ) -> Option<AcceptProxy> {
        let version = route.accept_proxy.unwrap_or_default();
        let from = self.cidrs(
            &key("accept_proxy_from"),
            route.accept_proxy_from.as_deref(),
        );
        if version == AcceptProxyVersion::Off {
            for (set, name) in [
                (route.accept_proxy_from.is_some(), "accept_proxy_from"),
                (route.accept_proxy_timeout.is_some(), "accept_proxy_timeout"),
            ] {
                if set {
                    self.error(
                        key(name),
                        None,
                        "only applies with accept_proxy = \"v1\", \"v2\" or \"any\"",
                    );
                }
            }
            return None;
        }
        if from.is_empty() && route.accept_proxy_from.as_ref().is_none_or(Vec::is_empty) {
            self.error(
                key("accept_proxy_from"),
                None,
                "required with accept_proxy: the load balancers' addresses (CIDRs) whose headers \
                 are trusted; a header from anyone else would let a client claim any address",
            );
        }
        let timeout = self.positive(
            &key("accept_proxy_timeout"),
            route.accept_proxy_timeout,
            DEFAULT_ACCEPT_PROXY_TIMEOUT,
        );
        Some(AcceptProxy {
            version,
            from,
            timeout,
        })
    }

    /// `allow` / `deny` entries: CIDRs (`10.0.0.0/8`, `::1/128`) or single addresses.
    fn cidrs(&mut self, path: &str, entries: Option<&[String]>) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (i, text) in entries.unwrap_or_default().iter().enumerate() {
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                // Stored as written minus host bits, so `10.1.2.3/8` means 10.0.0.0/8.
                Ok(net) => out.push(net.trunc()),
                Err(_) => self.error(
                    format!("{path}[{i}]"),
                    Some(quote(text)),
                    "not an address or CIDR; write e.g. \"10.0.0.0/8\", \"192.0.2.7\" or \"::1/128\"",
                ),
            }
        }
        out
    }

    fn pool(&mut self, name: String, pool: PoolFile) -> Option<PoolConfig> {
        let key = |k: &str| format!("pools.{name}.{k}");
        let error_count = self.errors.len();
        let pool_has_members_key = pool.members.is_some();

        let members_file = pool.members.unwrap_or_default();
        if members_file.is_empty() {
            let path = key("members");
            if pool_has_members_key {
                self.error(path, Some("[]".into()), "a pool needs at least one member");
            } else {
                self.missing(path, "missing key: a pool needs at least one member");
            }
        }
        // Tiers as written, so a member rejected for another reason does not fake a gap.
        let tiers: BTreeSet<u8> = members_file
            .iter()
            .filter_map(|m| u8::try_from(m.tier.unwrap_or(0)).ok())
            .filter(|&t| i64::from(t) <= MAX_TIER)
            .collect();
        let mut members: Vec<MemberConfig> = Vec::new();
        let mut dns: Vec<DnsEntry> = Vec::new();
        for (i, member) in members_file.into_iter().enumerate() {
            match self.member(&format!("pools.{name}.members[{i}]"), member) {
                Some(Entry::Literal(m)) => members.push(m),
                Some(Entry::Dns(e)) => dns.push(DnsEntry {
                    position: members.len(),
                    ..e
                }),
                None => {}
            }
        }
        let mut seen = HashMap::new();
        for (i, m) in members.iter().enumerate() {
            if let Some(first) = seen.insert(m.addr, i) {
                self.error(
                    format!("pools.{name}.members[{i}].addr"),
                    Some(quote(&m.name)),
                    format!("duplicate member (same address as members[{first}])"),
                );
            }
        }
        if let Some(&max) = tiers.iter().next_back() {
            let missing: Vec<String> = (0..=max)
                .filter(|t| !tiers.contains(t))
                .map(|t| t.to_string())
                .collect();
            if !missing.is_empty() {
                let used: Vec<String> = tiers.iter().map(|t| t.to_string()).collect();
                self.error(
                    key("members"),
                    None,
                    format!(
                        "tier gap: no member has tier {} (tiers used: {}); tiers must count up from 0 (primary)",
                        missing.join(", "),
                        used.join(", ")
                    ),
                );
            }
        }

        let primaries = members.iter().filter(|m| m.tier == 0).count() as i64;
        let min_healthy = self.int_in(&key("min_healthy"), pool.min_healthy, 1, 1, i64::MAX);
        // A name at tier 0 may resolve to any number of primaries: nothing to compare with.
        if let Some(n) = min_healthy
            && primaries > 0
            && !dns.iter().any(|e| e.tier == 0)
            && n > primaries
        {
            self.error(
                key("min_healthy"),
                Some(n.to_string()),
                format!("exceeds the {primaries} primary (tier 0) members, so backups would always take traffic"),
            );
        }

        let health = match pool.health {
            Some(h) => self.health(&format!("pools.{name}.health"), h),
            None => Some(Some(HealthConfig::default())),
        };
        let slow_start = pool.slow_start.map(|d| d.0).filter(|d| !d.is_zero());
        let breaker_file = pool.breaker.unwrap_or_default();
        let member_max_connections = self.limit(
            &key("breaker.max_connections"),
            breaker_file.max_connections,
        );
        let silent = self.silent(&key("breaker"), &breaker_file);
        let breaker = self.breaker(&key("breaker"), &breaker_file);
        let early_close = breaker_file
            .early_close
            .map_or(BreakerConfig::default().early_close, |e| e.0);

        if self.errors.len() != error_count {
            return None;
        }
        let socket = SocketOptions {
            keepalive: self.keepalive(&key("tcp_keepalive"), pool.tcp_keepalive.as_ref()),
            nodelay: pool.tcp_nodelay.unwrap_or(true),
            source: pool.source.as_deref().and_then(|text| {
                let ip = text.parse::<std::net::IpAddr>().ok();
                if ip.is_none() {
                    self.error(
                        key("source"),
                        Some(quote(text)),
                        "not an IP address; write the local address member connections come from, e.g. \"10.0.0.5\"",
                    );
                }
                ip
            }),
        };
        Some(PoolConfig {
            name,
            balance: pool.balance.unwrap_or(BalanceKind::RoundRobin),
            members,
            dns,
            health: health?,
            min_healthy: min_healthy? as usize,
            all_down: pool.all_down.unwrap_or(AllDown::Reject),
            slow_start,
            breaker,
            member_max_connections,
            early_close: Some(early_close).filter(|d| !d.is_zero()),
            socket,
            silent,
            on_member_down: pool.on_member_down.unwrap_or_default(),
            on_primary_return: pool.on_primary_return.unwrap_or_default(),
            max_connection_lifetime: pool
                .max_connection_lifetime
                .map(|d| d.0)
                .filter(|d| !d.is_zero()),
        })
    }

    fn member(&mut self, path: &str, member: MemberFile) -> Option<Entry> {
        let weight = self.int_in(
            &format!("{path}.weight"),
            member.weight,
            1,
            1,
            MAX_WEIGHT as i64,
        );
        let tier = self.int_in(&format!("{path}.tier"), member.tier, 0, 0, MAX_TIER);
        let query = match (member.addr, member.srv) {
            (Some(_), Some(srv)) => {
                self.error(
                    format!("{path}.srv"),
                    Some(quote(&srv)),
                    "a member has either addr or srv, not both",
                );
                return None;
            }
            (None, None) => {
                self.missing(
                    format!("{path}.addr"),
                    "missing key; e.g. addr = \"127.0.0.1:9001\", or srv = \"_pg._tcp.example\"",
                );
                return None;
            }
            (Some(text), None) => match self.member_addr(&format!("{path}.addr"), &text)? {
                Ok(addr) => {
                    return Some(Entry::Literal(MemberConfig {
                        name: text,
                        addr,
                        weight: weight? as u32,
                        tier: tier? as u8,
                    }));
                }
                Err(query) => query,
            },
            (None, Some(name)) => {
                let name = name.trim_end_matches('.').to_string();
                if !is_dns_name(&name) {
                    self.error(
                        format!("{path}.srv"),
                        Some(quote(&name)),
                        "not a DNS name; write e.g. \"_pg._tcp.db.example\"",
                    );
                    return None;
                }
                DnsQuery::Srv { name }
            }
        };
        Some(Entry::Dns(DnsEntry {
            query,
            weight: weight? as u32,
            tier: tier? as u8,
            position: 0,
        }))
    }

    /// `Some(None)`: health checks explicitly disabled; `None`: invalid.
    fn health(&mut self, path: &str, h: HealthFile) -> Option<Option<HealthConfig>> {
        let key = |k: &str| format!("{path}.{k}");
        if h.enabled == Some(false) {
            return Some(None);
        }
        let defaults = HealthConfig::default();
        let error_count = self.errors.len();
        let interval = self.probe_interval(&key("interval"), h.interval, defaults.interval);
        let timeout = self.positive(&key("timeout"), h.timeout, defaults.timeout);
        let fast_default = defaults.fast_interval.min(interval);
        let fast_interval =
            self.probe_interval(&key("fast_interval"), h.fast_interval, fast_default);
        let rise = self.int_in(&key("rise"), h.rise, defaults.rise as i64, 1, 100);
        let fall = self.int_in(&key("fall"), h.fall, defaults.fall as i64, 1, 100);
        let jitter = match h.jitter {
            None => Some(defaults.jitter),
            Some(text) => self.percent(&key("jitter"), &text, 50.0),
        };
        let send = h.send.and_then(|s| self.bytes(&key("send"), &s));
        let expect = h.expect.and_then(|e| self.expect(&key("expect"), e));
        let port = h
            .port
            .and_then(|p| self.int_in(&key("port"), Some(p), 0, 1, 65535));
        let addr = h.addr.and_then(|a| self.probe_ip(&key("addr"), &a));
        let http = h.http.and_then(|c| self.http_check(&key("http"), c));
        if http.is_some() {
            for (other, set) in [("send", send.is_some()), ("expect", expect.is_some())] {
                if set {
                    self.error(
                        key("http"),
                        None,
                        format!(
                            "cannot be set with {other}: an HTTP probe sends its own request and checks the status"
                        ),
                    );
                }
            }
        }
        if self.errors.len() != error_count {
            return None;
        }
        Some(Some(HealthConfig {
            interval,
            timeout,
            rise: rise? as u32,
            fall: fall? as u32,
            jitter: jitter?,
            fast_interval,
            init_up: h.init_state != Some(InitState::Down),
            send,
            expect,
            port: port.map(|p| p as u16),
            addr,
            http,
        }))
    }

    /// `expect`: bytes the reply starts with, or `{ regex = "..." }`.
    fn expect(&mut self, path: &str, e: ExpectFile) -> Option<Expect> {
        match e {
            ExpectFile::Literal(text) => self.bytes(path, &text).map(Expect::Prefix),
            ExpectFile::Regex(ExpectRegexFile { regex }) => {
                let path = format!("{path}.regex");
                if regex.is_empty() {
                    self.error(
                        path,
                        Some(quote(&regex)),
                        "must not be empty; remove the key instead",
                    );
                    return None;
                }
                // The size limit keeps a pattern such as `\w{1000}{1000}` from taking
                // hundreds of MB to compile; real role patterns are far below it.
                match regex::bytes::RegexBuilder::new(&regex)
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(re) => Some(Expect::Regex(re)),
                    Err(e) => {
                        self.error(path, Some(quote(&regex)), regex_reason(&e));
                        None
                    }
                }
            }
        }
    }

    /// `health.addr`: an IP literal. Not a name: the probe target must not move apart from
    /// the member on a DNS change, and the checker resolves nothing.
    fn probe_ip(&mut self, path: &str, text: &str) -> Option<IpAddr> {
        let parsed = text.parse::<IpAddr>();
        if parsed.is_err() {
            let reason = if text.parse::<SocketAddr>().is_ok() {
                "must be an IP address without port; set the port with health.port"
            } else {
                "not an IP address; write e.g. \"127.0.0.1\" or \"::1\" (names are not resolved)"
            };
            self.error(path, Some(quote(text)), reason);
        }
        parsed.ok()
    }

    /// `health.http = { path = "/primary", expect_status = 200 }`.
    fn http_check(&mut self, path: &str, c: HttpCheckFile) -> Option<HttpCheck> {
        let status = self.int_in(
            &format!("{path}.expect_status"),
            c.expect_status,
            200,
            100,
            599,
        );
        let url_path = match c.path {
            None => {
                self.missing(
                    format!("{path}.path"),
                    "missing key: the path to GET, e.g. \"/primary\"",
                );
                None
            }
            Some(p) if !p.starts_with('/') => {
                self.error(
                    format!("{path}.path"),
                    Some(quote(&p)),
                    "must start with '/'",
                );
                None
            }
            // The path goes into the request line as written: reject what would break it.
            Some(p)
                if p.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) =>
            {
                self.error(
                    format!("{path}.path"),
                    Some(quote(&p)),
                    "must not contain spaces or control characters; percent-encode them",
                );
                None
            }
            Some(p) => Some(p),
        };
        Some(HttpCheck {
            path: url_path?,
            expect_status: status? as u16,
        })
    }

    fn retry(&mut self, path: &str, retry: Option<&RetryFile>) -> Option<RetryConfig> {
        let defaults = RetryConfig::default();
        let Some(r) = retry else {
            return Some(defaults);
        };
        let key = |k: &str| format!("{path}.{k}");
        let attempts = self.int_in(
            &key("attempts"),
            r.attempts,
            defaults.attempts as i64,
            1,
            100,
        );
        let min_backoff = self.positive(&key("min_backoff"), r.min_backoff, defaults.min_backoff);
        let max_backoff = self.positive(&key("max_backoff"), r.max_backoff, defaults.max_backoff);
        let budget = self.positive(&key("budget"), r.budget, defaults.budget);
        if min_backoff > max_backoff {
            self.error(
                key("min_backoff"),
                Some(quote(&humantime::format_duration(min_backoff).to_string())),
                format!(
                    "must not exceed max_backoff ({})",
                    humantime::format_duration(max_backoff)
                ),
            );
            return None;
        }
        Some(RetryConfig {
            attempts: attempts? as u32,
            min_backoff,
            max_backoff,
            jitter: r.jitter.unwrap_or(defaults.jitter),
            budget,
        })
    }

    fn breaker(&mut self, path: &str, b: &BreakerFile) -> Option<BreakerConfig> {
        if b.enabled == Some(false) {
            return None;
        }
        let key = |k: &str| format!("{path}.{k}");
        let d = BreakerConfig::default();
        let failures = self.int_in(
            &key("consecutive_failures"),
            b.consecutive_failures,
            d.consecutive_failures as i64,
            1,
            1000,
        );
        let open_for = self.positive(&key("open_for"), b.open_for, d.open_for);
        let max_open_for = self.positive(
            &key("max_open_for"),
            b.max_open_for,
            d.max_open_for.max(open_for),
        );
        let trials = self.int_in(
            &key("half_open_trials"),
            b.half_open_trials,
            d.half_open_trials as i64,
            1,
            1000,
        );
        let early_close = b.early_close.map_or(d.early_close, |e| e.0);
        if open_for > max_open_for {
            self.error(
                key("open_for"),
                Some(quote(&humantime::format_duration(open_for).to_string())),
                format!(
                    "must not exceed max_open_for ({})",
                    humantime::format_duration(max_open_for)
                ),
            );
            return None;
        }
        Some(BreakerConfig {
            consecutive_failures: failures? as u32,
            open_for,
            max_open_for,
            half_open_trials: trials? as u32,
            early_close,
            // Checked by `silent`; here it only sizes the half-open probation.
            silent_after_request: b.silent_after_request.map_or(Duration::ZERO, |d| d.0),
        })
    }

    /// `breaker.silent_after_request` and `breaker.on_silent`: off when absent or zero, else at
    /// least [`MIN_SILENT_AFTER_REQUEST`]; `on_silent` alone is an error (it would do nothing).
    fn silent(&mut self, path: &str, b: &BreakerFile) -> Option<SilentConfig> {
        let after = b.silent_after_request.map(|d| d.0).filter(|d| !d.is_zero());
        let on_silent = b.on_silent;
        match (after, on_silent) {
            (None, Some(on_silent)) => {
                let value = match on_silent {
                    OnSilent::Keep => "keep",
                    OnSilent::Close => "close",
                };
                self.error(
                    format!("{path}.on_silent"),
                    Some(quote(value)),
                    format!(
                        "needs {path}.silent_after_request (absent or zero turns the silent-member \
                         watch off, so on_silent would do nothing)"
                    ),
                );
                None
            }
            (None, None) => None,
            (Some(after), _) if after < MIN_SILENT_AFTER_REQUEST => {
                self.error(
                    format!("{path}.silent_after_request"),
                    Some(quote(&humantime::format_duration(after).to_string())),
                    "must be at least 10ms (or 0 to turn the watch off)",
                );
                None
            }
            (Some(after), on_silent) => Some(SilentConfig {
                after,
                on_silent: on_silent.unwrap_or_default(),
            }),
        }
    }

    fn rate(&mut self, path: &str, r: &RateLimitFile) -> Option<RateLimitConfig> {
        let Some(per_second) = r.per_second else {
            self.missing(
                format!("{path}.per_second"),
                "missing key: new connections allowed per second",
            );
            return None;
        };
        let per_second = self.int_in(
            &format!("{path}.per_second"),
            Some(per_second),
            1,
            1,
            u32::MAX as i64,
        )?;
        // Default burst: one second's worth, as a token bucket usually starts.
        let burst = self.int_in(
            &format!("{path}.burst"),
            r.burst,
            per_second,
            1,
            u32::MAX as i64,
        )?;
        Some(RateLimitConfig {
            per_second: NonZeroU32::new(per_second as u32)?,
            burst: NonZeroU32::new(burst as u32)?,
        })
    }

    /// A connection limit: absent or 0 means unlimited.
    fn limit(&mut self, path: &str, value: Option<i64>) -> Option<usize> {
        match value {
            None | Some(0) => None,
            Some(n) if n < 0 => {
                self.error(path, Some(n.to_string()), "must be 0 (unlimited) or more");
                None
            }
            Some(n) => Some(n as usize),
        }
    }

    // --- leaf parsers: each reports its own problem and returns None on error ---

    /// An integer in `min..=max`, or `default` when absent.
    fn int_in(
        &mut self,
        path: &str,
        value: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            let reason = if max == i64::MAX {
                format!("must be at least {min}")
            } else {
                format!("must be between {min} and {max}")
            };
            self.error(path, Some(v.to_string()), reason);
            return None;
        }
        Some(v)
    }

    fn positive(
        &mut self,
        path: &str,
        value: Option<HumanDuration>,
        default: Duration,
    ) -> Duration {
        let d = value.map_or(default, |d| d.0);
        if d.is_zero() {
            self.error(path, Some("\"0s\"".into()), "must be greater than zero");
        }
        d
    }

    /// A health probe interval: at least [`MIN_PROBE_INTERVAL`] (`"1ns"` once meant 915
    /// probes a second against every member).
    fn probe_interval(
        &mut self,
        path: &str,
        value: Option<HumanDuration>,
        default: Duration,
    ) -> Duration {
        self.at_least(
            path,
            value,
            default,
            MIN_PROBE_INTERVAL,
            "must be at least 10ms (one probe per member every 10ms is already 100 a second)",
        )
    }

    /// A duration (or `default`) of at least `floor`; below it, `reason` is the error and the
    /// floor stands in so validation can go on.
    fn at_least(
        &mut self,
        path: &str,
        value: Option<HumanDuration>,
        default: Duration,
        floor: Duration,
        reason: &str,
    ) -> Duration {
        let d = value.map_or(default, |d| d.0);
        if d < floor {
            self.error(
                path,
                Some(quote(&humantime::format_duration(d).to_string())),
                reason,
            );
        }
        d.max(floor)
    }

    /// `"10%"` as a fraction in `0..=max_percent/100`.
    fn percent(&mut self, path: &str, text: &str, max_percent: f64) -> Option<f64> {
        let parsed = text
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|p| (0.0..=max_percent).contains(p));
        if parsed.is_none() {
            let reason = format!("must be a percentage from 0% to {max_percent}%, e.g. \"10%\"");
            self.error(path, Some(quote(text)), reason);
        }
        parsed.map(|p| p / 100.0)
    }

    /// Probe bytes: text as written, or `hex:...` for binary.
    fn bytes(&mut self, path: &str, text: &str) -> Option<Vec<u8>> {
        let bytes = match text.strip_prefix("hex:") {
            Some(hex) => match decode_hex(hex) {
                Ok(b) => b,
                Err(reason) => {
                    self.error(path, Some(quote(text)), reason);
                    return None;
                }
            },
            None => text.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            self.error(
                path,
                Some(quote(text)),
                "must not be empty; remove the key instead",
            );
            return None;
        }
        Some(bytes)
    }

    /// A literal `ip:port` (listen addresses are never resolved: binding to a name is ambiguous).
    fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    Some(quote(text)),
                    "not an IP address with port; write e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"",
                );
                None
            }
        }
    }

    /// A member address: `Ok` for a literal `ip:port`, `Err` with the query for `host:port`.
    /// Names are not resolved here: one that does not resolve yet is not an error (`crate::dns`
    /// keeps asking, and `sluice check` warns).
    fn member_addr(&mut self, path: &str, text: &str) -> Option<Result<SocketAddr, DnsQuery>> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Some(Ok(addr));
        }
        let reason = match text.rsplit_once(':') {
            None => "missing port; write host:port, e.g. \"127.0.0.1:9001\"".to_string(),
            Some((host, port)) => match port.parse::<u16>() {
                Err(_) => format!("bad port {port:?}; write host:port with a port from 0 to 65535"),
                Ok(_) if host.parse::<IpAddr>().is_ok() => {
                    "IPv6 addresses need brackets, e.g. \"[::1]:9001\"".to_string()
                }
                Ok(port) if is_dns_name(host.trim_end_matches('.')) => {
                    let host = host.trim_end_matches('.').to_string();
                    return Some(Err(DnsQuery::Host { host, port }));
                }
                Ok(_) => format!("{host:?} is not a host name (letters, digits, '-', '_' and '.')"),
            },
        };
        self.error(path, Some(quote(text)), reason);
        None
    }
}

/// A validated pool member: an address, or a name resolved in the background.
enum Entry {
    Literal(MemberConfig),
    Dns(DnsEntry),
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1..=63, at most 253 in all.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The regex crate's syntax errors draw the pattern with a caret under it over several lines;
/// a config error is one line, so keep only its `error: ...` line.
fn regex_reason(e: &regex::Error) -> String {
    let what = match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(text)
            .to_string(),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiles to more than {limit} bytes; simplify it")
        }
        other => other.to_string(),
    };
    format!("not a valid regular expression: {what}")
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("hex needs an even number of digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("{s:?} is not a hex byte"))
        })
        .collect()
}
