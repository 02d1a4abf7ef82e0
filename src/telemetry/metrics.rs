//! Every metric name sluice emits, in one place (`sluice_` prefix, unit suffixes).
//!
//! Labels: `route`, `pool`, `member`, `outcome`/`reason`/`to`.

/// Counter: connections by route and outcome.
pub const CONNECTIONS_TOTAL: &str = "sluice_connections_total";
/// Gauge: connections being relayed, by route.
pub const ACTIVE_CONNECTIONS: &str = "sluice_active_connections";
/// Gauge: connections being relayed to a member.
pub const MEMBER_ACTIVE_CONNECTIONS: &str = "sluice_member_active_connections";
/// Counter: bytes relayed by route and direction (`upstream` = client to member).
pub const BYTES_TOTAL: &str = "sluice_bytes_total";
/// Histogram: time to connect to a member.
pub const CONNECT_DURATION_SECONDS: &str = "sluice_connect_duration_seconds";
/// Counter: connect attempts by pool, member and result.
pub const CONNECT_ATTEMPTS_TOTAL: &str = "sluice_connect_attempts_total";
/// Gauge: 1 when a member's health checks say up.
pub const MEMBER_UP: &str = "sluice_member_up";
/// Counter: health transitions by pool, member and `to` (up/down).
pub const MEMBER_HEALTH_TRANSITIONS_TOTAL: &str = "sluice_member_health_transitions_total";
/// Histogram: duration of one health probe by pool and member.
pub const HEALTH_CHECK_DURATION_SECONDS: &str = "sluice_health_check_duration_seconds";
/// Gauge: a member's circuit breaker by pool and member: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "sluice_breaker_state";
/// Counter: breaker transitions by pool, member and `to` (closed/half_open/open).
pub const BREAKER_TRANSITIONS_TOTAL: &str = "sluice_breaker_transitions_total";
/// Counter: redials to another member after a failed connect, by route.
pub const RETRIES_TOTAL: &str = "sluice_retries_total";
