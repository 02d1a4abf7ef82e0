//! The config file as serde sees it: one struct per TOML table, every one denying unknown keys.
//!
//! Fields are `Option` even where the key is required: `validate` removes a key whose value
//! serde rejects and deserializes again, so that one bad value does not hide the problems after
//! it. Required keys are enforced by `validate`, which also owns every range and cross-reference
//! rule. Leaf values that need parsing with a good error message (durations, addresses,
//! percentages, byte strings) stay strings here and are parsed there.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{
    AcceptProxyVersion, AllDown, BalanceKind, OnMemberDown, OnSilent, ProxyProtocol, RelayMode,
};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub shutdown_grace: Option<HumanDuration>,
    pub shutdown_delay: Option<HumanDuration>,
    pub seed: Option<u64>,
    pub max_connections: Option<i64>,
    /// Path of the access log file; absent = access lines go to stderr with the other logs.
    pub access_log: Option<String>,
    pub workers: Option<i64>,
    pub reuse_port: Option<bool>,
    pub admin: Option<AdminFile>,
    pub dns: Option<DnsFile>,
    #[serde(default)]
    pub routes: BTreeMap<String, RouteFile>,
    #[serde(default)]
    pub pools: BTreeMap<String, PoolFile>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: Option<String>,
    pub allow_remote: Option<bool>,
    pub max_connections: Option<i64>,
    pub token_file: Option<String>,
}

/// `[dns]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    pub servers: Option<Vec<String>>,
    pub min_ttl: Option<HumanDuration>,
    pub max_ttl: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
}

/// `[routes.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub listen: Option<OneOrMany>,
    pub pool: Option<String>,
    pub connect_timeout: Option<HumanDuration>,
    pub idle_timeout: Option<HumanDuration>,
    pub backlog: Option<i64>,
    pub buffer_size: Option<i64>,
    pub relay: Option<RelayMode>,
    pub pipe_size: Option<i64>,
    pub max_connections: Option<i64>,
    pub rate_limit: Option<RateLimitFile>,
    pub client_rate_limit: Option<RateLimitFile>,
    pub on_limit: Option<OnLimitKind>,
    pub queue_timeout: Option<HumanDuration>,
    pub retry: Option<RetryFile>,
    pub proxy_protocol: Option<ProxyProtocol>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub accept_proxy: Option<AcceptProxyVersion>,
    pub accept_proxy_from: Option<Vec<String>>,
    pub accept_proxy_timeout: Option<HumanDuration>,
    pub tcp_keepalive: Option<KeepaliveFile>,
    pub tcp_nodelay: Option<bool>,
    pub max_connections_per_client: Option<i64>,
}

/// `tcp_keepalive = { idle = "60s", interval = "10s", count = 3 }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepaliveFile {
    pub idle: Option<HumanDuration>,
    pub interval: Option<HumanDuration>,
    pub count: Option<i64>,
}

/// `{ per_second = 500, burst = 100 }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    pub per_second: Option<i64>,
    pub burst: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimitKind {
    Reject,
    Queue,
}

/// `{ attempts = 3, min_backoff = "25ms", max_backoff = "1s", jitter = true, budget = "5s" }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    pub attempts: Option<i64>,
    pub min_backoff: Option<HumanDuration>,
    pub max_backoff: Option<HumanDuration>,
    pub jitter: Option<bool>,
    pub budget: Option<HumanDuration>,
}

/// `[pools.NAME.breaker]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerFile {
    /// `false` turns the breaker off (member max_connections still applies).
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<i64>,
    pub open_for: Option<HumanDuration>,
    pub max_open_for: Option<HumanDuration>,
    pub half_open_trials: Option<i64>,
    pub early_close: Option<HumanDuration>,
    pub max_connections: Option<i64>,
    /// Opt-in: the client spoke and the member said nothing for this long (0 = off).
    pub silent_after_request: Option<HumanDuration>,
    pub on_silent: Option<OnSilent>,
}

/// `[pools.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    pub balance: Option<BalanceKind>,
    pub members: Option<Vec<MemberFile>>,
    pub health: Option<HealthFile>,
    pub min_healthy: Option<i64>,
    pub all_down: Option<AllDown>,
    pub slow_start: Option<HumanDuration>,
    pub breaker: Option<BreakerFile>,
    pub tcp_keepalive: Option<KeepaliveFile>,
    pub tcp_nodelay: Option<bool>,
    pub source: Option<String>,
    pub on_member_down: Option<OnMemberDown>,
    pub on_primary_return: Option<OnMemberDown>,
    pub max_connection_lifetime: Option<HumanDuration>,
}

/// One entry of `pools.NAME.members`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    pub addr: Option<String>,
    /// An SRV name (`_pg._tcp.example`): one member per target.
    pub srv: Option<String>,
    pub weight: Option<i64>,
    pub tier: Option<i64>,
}

/// `[pools.NAME.health]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    /// `false` turns health checking off: every member counts as up.
    pub enabled: Option<bool>,
    pub interval: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    /// `"10%"`.
    pub jitter: Option<String>,
    pub fast_interval: Option<HumanDuration>,
    pub init_state: Option<InitState>,
    /// Text, or `hex:...` for binary.
    pub send: Option<String>,
    pub expect: Option<ExpectFile>,
    /// Probe this port instead of the member's traffic port.
    pub port: Option<i64>,
    /// Probe this IP instead of the member's (a literal, never resolved).
    pub addr: Option<String>,
    /// An HTTP/1.1 GET probe instead of send/expect.
    pub http: Option<HttpCheckFile>,
}

/// `expect = "+PONG"` (the reply starts with these bytes) or `expect = { regex = "..." }` (the
/// pattern matches somewhere in the reply's first bytes).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a string (the reply's first bytes) or a table { regex = \"...\" }"
)]
pub enum ExpectFile {
    Literal(String),
    Regex(ExpectRegexFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectRegexFile {
    pub regex: String,
}

/// `health.http = { path = "/primary", expect_status = 200 }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckFile {
    pub path: Option<String>,
    pub expect_status: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitState {
    Up,
    Down,
}

/// A string or an array of strings (`listen`).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "an address string or an array of address strings"
)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The longest duration any key takes: a year is beyond every timeout, interval and grace
/// period anyone means, and far from where `Instant + Duration` overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest non-zero duration: sluice's timers have millisecond resolution.
pub const MIN_DURATION: Duration = Duration::from_millis(1);

/// A duration written for humans ("250ms", "5s", "1m30s"), parsed by `humantime` so a typo
/// reports humantime's own explanation rather than serde's "expected a duration".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\", \"5s\" or \"1m30s\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                let d = humantime::parse_duration(text).map_err(|e| {
                    E::custom(format!(
                        "not a duration ({e}); write e.g. \"250ms\", \"5s\" or \"1m30s\""
                    ))
                })?;
                // Bounds every duration key shares, so no timer ever overflows an `Instant`
                // (`"500000000000y"` once passed `check` and then panicked every connection)
                // and none ticks faster than the millisecond timers sluice runs on. Keys with
                // tighter ranges (probe intervals) check those in `validate`.
                if d > MAX_DURATION {
                    return Err(E::custom("must be at most 365d"));
                }
                if !d.is_zero() && d < MIN_DURATION {
                    return Err(E::custom("must be 0 or at least 1ms"));
                }
                Ok(HumanDuration(d))
            }
        }

        deserializer.deserialize_str(DurationVisitor)
    }
}
