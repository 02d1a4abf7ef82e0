//! Configuration: the TOML file, its validation, and the runtime types the rest of sluice uses.
//!
//! `schema` holds the serde types that mirror the file one to one (every struct denies unknown
//! fields). `validate` turns them into the runtime types below in a single pass that reports
//! every problem it finds, each as `FILE: key.path = value: reason`. Nothing else in sluice reads
//! the file types: listeners, pools and health checkers see only validated values, so they never
//! re-check ranges or cross references.

mod error;
pub mod parse;
pub mod reload;
pub mod schema;
mod validate;
pub mod warnings;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors, Location};
pub use validate::{from_file, from_str};
pub use warnings::{Warning, warnings};

/// Default grace period given to live connections on shutdown.
/// 20 s: inside the 30 s Kubernetes (and systemd's default `TimeoutStopSec=90s`, Docker's
/// 10 s aside) gives a pod before SIGKILL, with room for a `shutdown_delay` of a few seconds,
/// so the cut is sluice's, counted and logged, not the kubelet's. At 30 s the pod was
/// killed exactly when sluice would have logged the cut.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Default connect timeout of a route.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default idle timeout of a route.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default listen backlog (the `somaxconn` cap of the kernel still applies).
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Default relay buffer size.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;

/// Splice pipe capacity when `pipe_size` is not set: 4× the kernel's 64 KiB. One stream through
/// sluice on loopback (iperf3, 8 s, 2 runs each): 64 KiB 14.8-15.1 Gbit/s at 65% of a core,
/// 256 KiB 17.5-17.9 at 55%, 1 MiB 18.4-18.5 at 50%. Not 1 MiB: a pipe's whole capacity counts
/// against the user's `fs.pipe-user-pages-soft` (64 MiB by default) whether or not it holds
/// data, and past it the kernel gives every new pipe 8 KiB; at 256 KiB that takes 256 pipes in
/// flight or pooled at once. Idle connections hold none.
pub const DEFAULT_PIPE_SIZE: usize = 256 * 1024;
/// Largest weight a member may have; keeps weighted sums far from overflow.
pub const MAX_WEIGHT: u32 = 256;

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this came from, for messages (`None` for `sluice forward`).
    pub source: Option<PathBuf>,
    /// How long live connections may run after shutdown begins before they are cut.
    pub shutdown_grace: Duration,
    /// After a stop signal, how long `/healthz` answers 503 while listeners still accept, so
    /// load balancers polling it stop sending before connects are refused. Zero by default.
    pub shutdown_delay: Duration,
    /// Seed for every random decision (balancer picks, probe jitter); `None` seeds from the OS.
    pub seed: Option<u64>,
    pub admin: Option<AdminConfig>,
    /// How `host:port` and `srv` members are resolved (`[dns]`).
    pub dns: DnsConfig,
    /// Connections relayed at once across every route; `None` = unlimited.
    pub max_connections: Option<usize>,
    /// Access log file (reopened on SIGUSR1); `None` = stderr with the other logs.
    pub access_log: Option<PathBuf>,
    /// Data-plane worker threads, each with its own event loop; `None` = one per CPU core.
    pub workers: Option<usize>,
    /// One `SO_REUSEPORT` listener per worker for each listen address (default), rather than
    /// one socket every worker accepts on.
    pub reuse_port: bool,
    /// Routes in file order (sorted by name, as TOML tables are).
    pub routes: Vec<RouteConfig>,
    /// Pools sorted by name.
    pub pools: Vec<PoolConfig>,
}

impl Config {
    /// Worker threads to start: `workers`, or one per CPU core.
    pub fn worker_count(&self) -> usize {
        self.workers
            .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
            .unwrap_or(1)
    }

    /// The pool a route refers to. Validation guarantees it exists.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Every distinct DNS query the pools' entries need, in a stable order.
    pub fn dns_queries(&self) -> Vec<DnsQuery> {
        let mut queries: Vec<DnsQuery> = self
            .pools
            .iter()
            .flat_map(|p| p.dns.iter().map(|e| e.query.clone()))
            .collect();
        queries.sort();
        queries.dedup();
        queries
    }

    /// `routes=N pools=N members=N`, the summary `sluice check` prints (a DNS entry counts as
    /// one member, whatever it resolves to).
    pub fn summary(&self) -> String {
        let members: usize = self
            .pools
            .iter()
            .map(|p| p.members.len() + p.dns.len())
            .sum();
        format!(
            "routes={} pools={} members={}",
            self.routes.len(),
            self.pools.len(),
            members
        )
    }

    /// Name used in messages: the file name, or `<command line>`.
    pub fn source_name(&self) -> String {
        source_name(self.source.as_deref())
    }
}

pub(crate) fn source_name(path: Option<&Path>) -> String {
    match path {
        Some(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string()),
        None => "<command line>".to_string(),
    }
}

/// The admin listener.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub allow_remote: bool,
    /// Concurrent admin connections (1..=1024, default 64); one more is closed at accept, so
    /// the admin API never holds more than this many descriptors.
    pub max_connections: usize,
    /// The bearer token every endpoint but `/healthz` requires, read from `token_file` when the
    /// config is loaded; `None` = no token.
    pub token: Option<AdminToken>,
}

/// Default for `[admin] max_connections`.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;

/// A bearer token (never empty). Its `Debug` hides the secret so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// `None` when `secret` is empty.
    pub fn new(secret: String) -> Option<Self> {
        (!secret.is_empty()).then_some(Self(secret))
    }

    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// `[dns]`: how member names are resolved and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers asked, in order; empty = the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// A record's TTL is raised to at least this before the name is asked again.
    pub min_ttl: Duration,
    /// ... and lowered to at most this.
    pub max_ttl: Duration,
    /// One query's timeout (per server and attempt).
    pub timeout: Duration,
}

/// Default `[dns] min_ttl`.
pub const DEFAULT_DNS_MIN_TTL: Duration = Duration::from_secs(1);
/// Default `[dns] max_ttl`.
pub const DEFAULT_DNS_MAX_TTL: Duration = Duration::from_secs(300);
/// Default `[dns] timeout`.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            min_ttl: DEFAULT_DNS_MIN_TTL,
            max_ttl: DEFAULT_DNS_MAX_TTL,
            timeout: DEFAULT_DNS_TIMEOUT,
        }
    }
}

/// What one DNS entry asks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DnsQuery {
    /// `host:port`: every address of `host` (A records; AAAA when there are none), at `port`.
    Host { host: String, port: u16 },
    /// An SRV name: every target's addresses at the target's port.
    Srv { name: String },
}

impl std::fmt::Display for DnsQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Host { host, port } => write!(f, "{host}:{port}"),
            Self::Srv { name } => f.write_str(name),
        }
    }
}

/// A pool member given by name: it stands for as many members as its name resolves to, kept
/// current in the background (`crate::dns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEntry {
    pub query: DnsQuery,
    /// 1..=256; for SRV entries each target's weight comes from its record instead.
    pub weight: u32,
    /// Tier of its members; for SRV the lowest priority's, later priorities count up from it.
    pub tier: u8,
    /// How many literal members come before it in the file: its members go there, so a
    /// pool's members keep file order.
    pub position: usize,
}

/// Highest tier a member may have (SRV priorities stop counting up here).
pub const MAX_TIER: u8 = 15;

/// One route: a set of listen addresses whose connections go to one pool.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Every address this route listens on (at least one; no address appears in two routes).
    pub listen: Vec<SocketAddr>,
    pub pool: String,
    pub connect_timeout: Duration,
    /// `None` disables the idle timeout (`"0s"` in the file).
    pub idle_timeout: Option<Duration>,
    /// Listen backlog passed to `listen(2)`.
    pub backlog: u32,
    pub relay: RelayConfig,
    /// Connections relayed at once on this route; `None` = unlimited.
    pub max_connections: Option<usize>,
    /// New connections per second, route-wide.
    pub rate_limit: Option<RateLimitConfig>,
    /// New connections per second from one client IP.
    pub client_rate_limit: Option<RateLimitConfig>,
    /// What a connection over a limit gets.
    pub on_limit: OnLimit,
    pub retry: RetryConfig,
    /// PROXY protocol header sent to the upstream before any client byte.
    pub proxy_protocol: ProxyProtocol,
    /// Which client addresses may connect (`allow` / `deny`), judged on the real client
    /// (the PROXY header's source when `accept_proxy` is on).
    pub clients: ClientFilter,
    /// `None` unless `accept_proxy` is on.
    pub accept_proxy: Option<AcceptProxy>,
    /// Client sockets: `tcp_keepalive`, `tcp_nodelay`.
    pub socket: SocketOptions,
    /// Connections one client address may hold at once on this route; `None` = unlimited.
    pub max_connections_per_client: Option<usize>,
}

/// A route's `allow` and `deny` lists. Deny wins; a non-empty allow list admits only what it
/// names; both empty admit everyone. IPv4-mapped IPv6 clients (`::ffff:192.0.2.7`, what a
/// dual-stack listener sees) match the IPv4 rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFilter {
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
}

impl ClientFilter {
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn admits(&self, client: std::net::IpAddr) -> bool {
        let client = client.to_canonical();
        let listed = |nets: &[ipnet::IpNet]| nets.iter().any(|n| n.contains(&client));
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }
}

/// A token bucket: `per_second` tokens refill continuously, at most `burst` are banked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// What happens to a new connection over a connection or rate limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnLimit {
    /// Close it at once, counted with its reason.
    #[default]
    Reject,
    /// Hold it (unaccepted bytes stay in the kernel) until a slot frees, up to `timeout`.
    Queue { timeout: Duration },
}

/// Redial policy: on a connect failure, pick another member after an exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Connect attempts in all, the first included (1 = never redial).
    pub attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Full jitter on each backoff (drawn from the config's seed).
    pub jitter: bool,
    /// Total time from the first attempt after which no new attempt starts.
    pub budget: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            min_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
            jitter: true,
            budget: Duration::from_secs(5),
        }
    }
}

/// PROXY protocol version sent to upstreams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocol {
    #[default]
    Off,
    V1,
    V2,
}

/// `tcp_keepalive = { idle, interval, count }`: kernel keepalive probes on a socket, so a
/// peer that vanished without a FIN (a crashed host, a dropped NAT entry) is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

/// Options of the sockets sluice accepts (per route) or opens (per pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOptions {
    /// Off by default on both sides.
    pub keepalive: Option<Keepalive>,
    /// On by default: interactive protocols must not wait on Nagle.
    pub nodelay: bool,
    /// Upstream side only: the local address member connections come from (HAProxy `source`).
    pub source: Option<std::net::IpAddr>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            keepalive: None,
            nodelay: true,
            source: None,
        }
    }
}

/// PROXY protocol versions a route accepts from the load balancer in front of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcceptProxyVersion {
    #[default]
    Off,
    V1,
    V2,
    Any,
}

/// `accept_proxy`: every connection must start with a PROXY header naming the real client,
/// and only from `from` (the load balancers), within `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptProxy {
    pub version: AcceptProxyVersion,
    pub from: Vec<ipnet::IpNet>,
    pub timeout: Duration,
}

/// How bytes are copied between client and upstream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelayConfig {
    /// Size of one pooled copy buffer, taken only while data is in flight.
    pub buffer_size: usize,
    pub mode: RelayMode,
    /// Capacity asked of each splice pipe (`F_SETPIPE_SZ`); `None` keeps the kernel's default.
    pub pipe_size: Option<usize>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            buffer_size: DEFAULT_BUFFER_SIZE,
            mode: RelayMode::Auto,
            pipe_size: Some(DEFAULT_PIPE_SIZE),
        }
    }
}

/// How the relay moves bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayMode {
    /// Copy first; splice a direction once its traffic looks bulk (reads in a row fill the
    /// copy buffer), as HAProxy's `splice-auto`. User-space copy only off Linux.
    #[default]
    Auto,
    /// Zero-copy `splice(2)` through a pipe (Linux); falls back to copy if a splice fails.
    Splice,
    /// User-space copy through pooled buffers.
    Copy,
}

/// One upstream pool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub balance: BalanceKind,
    /// Members in file order; tier 0 present, tiers without gaps. As validated these are the
    /// literal `ip:port` members; the running config adds one per address `dns` resolved to.
    pub members: Vec<MemberConfig>,
    /// Entries given by name (`host:port` or `srv`), in file order.
    pub dns: Vec<DnsEntry>,
    /// `None`: no active health checking, every member is considered up.
    pub health: Option<HealthConfig>,
    /// The lowest tier with at least this many eligible members takes the traffic.
    pub min_healthy: usize,
    pub all_down: AllDown,
    /// Ramp a member's weight from 10% to full over this window after it comes up.
    pub slow_start: Option<Duration>,
    /// Per-member circuit breaker; `None` when disabled.
    pub breaker: Option<BreakerConfig>,
    /// Connections one member may hold at once; a full member is skipped. `None` = unlimited.
    pub member_max_connections: Option<usize>,
    /// `breaker.early_close`: a member that closes or resets without a byte within this after
    /// connect has failed the attempt (redialled while the client is silent). A redial trigger
    /// in its own right, so it applies with the breaker off too. `None` when set to zero.
    pub early_close: Option<Duration>,
    /// Member sockets: `tcp_keepalive`, `tcp_nodelay`, `source`.
    pub socket: SocketOptions,
    /// `breaker.silent_after_request` and `breaker.on_silent`; `None` when off (the default).
    /// Like `early_close` it applies with the breaker off too (log, metric, `close`).
    pub silent: Option<SilentConfig>,
    /// What happens to a member's live connections when it goes down, is drained or leaves.
    pub on_member_down: OnMemberDown,
    /// `Close`: connections on backup tiers are cut when a primary (tier 0) comes up.
    pub on_primary_return: OnMemberDown,
    /// Longest a connection may stay on a member (±10 % jitter); `None` = unbounded.
    pub max_connection_lifetime: Option<Duration>,
}

/// `on_member_down`: HAProxy's `on-marked-down shutdown-sessions`, Envoy's
/// `close_connections_on_host_health_failure`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMemberDown {
    /// Live connections keep flowing (only new ones go elsewhere).
    #[default]
    Keep,
    /// Live connections are cut at once (outcome `member_down`, termination `KD`).
    Close,
}

/// A member that accepts and then says nothing: the client has sent bytes and the member has
/// sent nothing for `after` since the first of them reached it. Counted once per connection
/// as a member failure (its breaker, `sluice_member_silent_total`, a WARN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SilentConfig {
    /// At least 10 ms.
    pub after: Duration,
    pub on_silent: OnSilent,
}

/// `breaker.on_silent`: what happens to the connection whose member stayed silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSilent {
    /// Only count it; the connection goes on and the member may still answer.
    #[default]
    Keep,
    /// Count it and end the connection (outcome `timeout`, termination `sD`).
    Close,
}

/// Per-member circuit breaker fed by real connect outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive connect failures (refused, reset, timeout, early close) that open it.
    pub consecutive_failures: u32,
    /// First open period; doubled on each re-open from half-open, capped at `max_open_for`.
    pub open_for: Duration,
    pub max_open_for: Duration,
    /// Connections admitted while half-open; all succeeding closes it, one failing re-opens.
    pub half_open_trials: u32,
    /// An upstream that closes without sending a byte within this after connect has failed.
    pub early_close: Duration,
    /// `silent_after_request`, zero when off. A silent connection within twice this of the
    /// breaker closing from half-open means the trial failed after all (see `Breaker`).
    pub silent_after_request: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(120),
            half_open_trials: 1,
            early_close: Duration::from_millis(200),
            silent_after_request: Duration::ZERO,
        }
    }
}

/// One member of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    /// The address as written (`ip:port`), or for a member from DNS the entry and the address
    /// (`db.example:5432 (10.0.0.7)`); names members in logs, metrics and the admin API.
    pub name: String,
    pub addr: SocketAddr,
    /// 1..=256.
    pub weight: u32,
    /// 0 = primary, 1.. = backup tiers.
    pub tier: u8,
}

/// Which balancer picks among eligible members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceKind {
    /// Smooth weighted round robin (nginx's algorithm).
    RoundRobin,
    /// Fewest active connections relative to weight.
    LeastConn,
    /// Power of two random choices on active connections.
    P2c,
    /// Consistent hashing on the client IP.
    Hash,
}

impl BalanceKind {
    pub const ALL: [&'static str; 4] = ["round_robin", "least_conn", "p2c", "hash"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastConn => "least_conn",
            Self::P2c => "p2c",
            Self::Hash => "hash",
        }
    }
}

/// What a pool does when no member of any tier is eligible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllDown {
    /// Refuse the connection at once with a logged reason.
    #[default]
    Reject,
    /// Balance over every member, ignoring health (Envoy's panic mode).
    Panic,
}

/// Active health checking of a pool's members.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthConfig {
    /// Between probes while a member is stable.
    pub interval: Duration,
    /// Per probe: connect, and send/expect when set.
    pub timeout: Duration,
    /// Consecutive successes that bring a down member up (>= 1).
    pub rise: u32,
    /// Consecutive failures that take an up member down (>= 1).
    pub fall: u32,
    /// Each delay is drawn uniformly from `d * (1 ± jitter)`; 0.0..=0.5.
    pub jitter: f64,
    /// Between probes while a member is changing state or down.
    pub fast_interval: Duration,
    /// State of a member before its first probe.
    pub init_up: bool,
    /// Bytes written after connect.
    pub send: Option<Vec<u8>>,
    /// What the reply must hold.
    pub expect: Option<Expect>,
    /// Probe this port instead of the member's traffic port (`health.port`).
    pub port: Option<u16>,
    /// Probe this IP instead of the member's (`health.addr`).
    pub addr: Option<IpAddr>,
    /// An HTTP/1.1 GET probe; never set together with `send` or `expect`.
    pub http: Option<HttpCheck>,
}

impl HealthConfig {
    /// Where the probes of the member whose traffic goes to `member` are sent: `addr` and
    /// `port` replace its IP and port when set. Traffic still goes to `member`.
    pub fn probe_addr(&self, member: SocketAddr) -> SocketAddr {
        SocketAddr::new(
            self.addr.unwrap_or(member.ip()),
            self.port.unwrap_or(member.port()),
        )
    }
}

/// What a probe's reply must hold (`health.expect`).
#[derive(Clone, Debug)]
pub enum Expect {
    /// The reply starts with these bytes (`expect = "+PONG"`).
    Prefix(Vec<u8>),
    /// The pattern matches somewhere in the reply's first 16 KiB (`expect = { regex = ".." }`).
    Regex(regex::bytes::Regex),
}

/// Patterns compare by their text, so a reload that keeps the pattern keeps the checker.
impl PartialEq for Expect {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Prefix(a), Self::Prefix(b)) => a == b,
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// `health.http`: a GET whose response status must be `expect_status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// Starts with `/`.
    pub path: String,
    /// 100..=599; 200 by default.
    pub expect_status: u16,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            jitter: 0.1,
            fast_interval: Duration::from_millis(500),
            init_up: true,
            send: None,
            expect: None,
            port: None,
            addr: None,
            http: None,
        }
    }
}

/// The config of `sluice forward`: one route named `forward` over one pool of the given
/// primaries (tier 0) and backups (tier 1), with every default a config file would get. It is
/// built as TOML text and validated like a file, so the one-liner and a file can never differ.
pub fn forward(
    listen: &[String],
    upstreams: &[String],
    backups: &[String],
) -> Result<Config, ConfigErrors> {
    let quote = |s: &String| toml::Value::String(s.clone()).to_string();
    let listen: Vec<String> = listen.iter().map(quote).collect();
    let members: Vec<String> = upstreams
        .iter()
        .map(|a| format!("{{ addr = {} }}", quote(a)))
        .chain(
            backups
                .iter()
                .map(|a| format!("{{ addr = {}, tier = 1 }}", quote(a))),
        )
        .collect();
    let text = format!(
        "[routes.forward]\nlisten = [{}]\npool = \"forward\"\n\n[pools.forward]\nmembers = [{}]\n",
        listen.join(", "),
        members.join(", ")
    );
    from_str(&text, None)
}
