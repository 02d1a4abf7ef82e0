//! Configuration: the TOML file, its validation, and the runtime types the rest of sluice uses.
//!
//! `schema` holds the serde types that mirror the file one to one (every struct denies unknown
//! fields). `validate` turns them into the runtime types below in a single pass that reports
//! every problem it finds, each as `FILE: key.path = value: reason`. Nothing else in sluice reads
//! the file types: listeners, pools and health checkers see only validated values, so they never
//! re-check ranges or cross references.

mod error;
mod parse;
pub mod schema;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors, Location};
pub use validate::{from_file, from_str};

/// Default grace period given to live connections on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default connect timeout of a route.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default idle timeout of a route.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default listen backlog (the `somaxconn` cap of the kernel still applies).
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Default relay buffer size.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;
/// Largest weight a member may have; keeps weighted sums far from overflow.
pub const MAX_WEIGHT: u32 = 256;

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this came from, for messages (`None` for `sluice forward`).
    pub source: Option<PathBuf>,
    /// How long live connections may run after shutdown begins before they are cut.
    pub shutdown_grace: Duration,
    /// Seed for every random decision (balancer picks, probe jitter); `None` seeds from the OS.
    pub seed: Option<u64>,
    pub admin: Option<AdminConfig>,
    /// Routes in file order (sorted by name, as TOML tables are).
    pub routes: Vec<RouteConfig>,
    /// Pools sorted by name.
    pub pools: Vec<PoolConfig>,
}

impl Config {
    /// The pool a route refers to. Validation guarantees it exists.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// `routes=N pools=N members=N`, the summary `sluice check` prints.
    pub fn summary(&self) -> String {
        let members: usize = self.pools.iter().map(|p| p.members.len()).sum();
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

/// The admin listener (served by later work; validated now so files stay forward compatible).
#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub allow_remote: bool,
}

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
}

/// How bytes are copied between client and upstream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelayConfig {
    /// Size of one pooled copy buffer, taken only while data is in flight.
    pub buffer_size: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

/// One upstream pool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub balance: BalanceKind,
    /// Members in file order; at least one, tier 0 present, tiers without gaps.
    pub members: Vec<MemberConfig>,
    /// `None`: no active health checking, every member is considered up.
    pub health: Option<HealthConfig>,
    /// The lowest tier with at least this many eligible members takes the traffic.
    pub min_healthy: usize,
    pub all_down: AllDown,
    /// Ramp a member's weight from 10% to full over this window after it comes up.
    pub slow_start: Option<Duration>,
}

/// One member of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    /// The address as written (`host:port`); names members in logs, metrics and the admin API.
    pub name: String,
    /// The address it resolved to at load time.
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
    /// The reply must start with these bytes.
    pub expect: Option<Vec<u8>>,
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
