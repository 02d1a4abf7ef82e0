//! Every metric name sluice emits, in one place (`sluice_` prefix, unit suffixes), with its
//! help text, and the process-wide Prometheus recorder that the admin listener renders.
//!
//! Labels: `route`, `pool`, `member`, and per metric `outcome`, `result`, `to`, `direction`,
//! `entry` (a DNS entry's `host:port` or SRV name).
//!
//! Emitting a metric is the business of the module that observes the event; this module only
//! names, describes and exports. Without [`install`] (no `[admin]` section) the `metrics` macros
//! go to the facade's no-op recorder and cost next to nothing.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::warn;

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
/// Counter: connections whose member stayed silent after the client spoke
/// (`breaker.silent_after_request`), by pool and member.
pub const MEMBER_SILENT_TOTAL: &str = "sluice_member_silent_total";
/// Gauge: 1 while an operator has drained the member (admin API).
pub const MEMBER_DRAINED: &str = "sluice_member_drained";
/// Counter: sluice's own resource shortages (EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL)
/// by `op` (accept, connect, probe): never a member's failure.
pub const LOCAL_RESOURCE_ERRORS_TOTAL: &str = "sluice_local_resource_errors_total";
/// Counter: DNS queries of member entries by `entry` and `result` (ok, not_found, error).
pub const DNS_RESOLUTIONS_TOTAL: &str = "sluice_dns_resolutions_total";
/// Gauge: addresses a DNS entry's answer in use holds, by `entry`.
pub const DNS_ADDRESSES: &str = "sluice_dns_addresses";
/// Counter: config reloads by `result` (ok/error).
pub const CONFIG_RELOADS_TOTAL: &str = "sluice_config_reloads_total";
/// Gauge: Unix time of the last reload that was applied.
pub const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: &str =
    "sluice_config_last_reload_success_timestamp_seconds";

/// Bucket upper bounds (seconds) for the connect and health-probe histograms. A loopback or
/// same-rack handshake takes well under a millisecond and a probe or connect timeout is a few
/// seconds, so the buckets span 250µs..10s, dense where a healthy member's times fall.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Gauge: 1, labelled with the running version, so dashboards can tell what runs where.
pub const BUILD_INFO: &str = "sluice_build_info";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The `process_*` series every Prometheus client library exports (open and max fds, resident
/// memory, CPU seconds, start time, threads), read from /proc at each scrape by a well-kept
/// crate rather than by our own parsing.
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// The exposition text for `/metrics`: refreshes the process series, then renders.
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(process) = PROCESS.get() {
        process.collect();
    }
    handle.render()
}

/// Installs the Prometheus recorder as the process's global `metrics` recorder (once; later
/// calls return the same handle) and describes every metric. Idempotent because the facade
/// accepts one global recorder per process, while several servers may run in one process
/// (integration tests).
///
/// Metrics recorded before the first call are lost: call it before anything is emitted
/// (`Server::bind` does, when the config has an admin listener).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                // Only an embedder that installed its own recorder gets here; /metrics then
                // renders nothing, and their recorder gets the descriptions below.
                warn!(error = %e, "a metrics recorder is already installed; /metrics will be empty");
            }
            describe();
            let process = PROCESS.get_or_init(metrics_process::Collector::default);
            process.describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    [CONNECT_DURATION_SECONDS, HEALTH_CHECK_DURATION_SECONDS]
        .into_iter()
        .fold(PrometheusBuilder::new(), |builder, name| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.to_string()), LATENCY_BUCKETS)
                .expect("LATENCY_BUCKETS is a non-empty constant")
        })
}

/// Registers unit and help text of every metric with the current global recorder.
fn describe() {
    describe_counter!(
        CONNECTIONS_TOTAL,
        Unit::Count,
        "Client connections by route and outcome (ok, upstream_error, timeout, rejected_rate, rejected_limit, no_member, denied, local_resource, client_error, idle_timeout, shutdown, member_down, backup_closed, lifetime_ended)."
    );
    describe_gauge!(
        ACTIVE_CONNECTIONS,
        Unit::Count,
        "Connections being relayed, by route."
    );
    describe_gauge!(
        MEMBER_ACTIVE_CONNECTIONS,
        Unit::Count,
        "Connections being relayed to a member, by pool and member."
    );
    describe_counter!(
        BYTES_TOTAL,
        Unit::Bytes,
        "Bytes relayed by route and direction (upstream: client to member; downstream: member to client)."
    );
    describe_histogram!(
        CONNECT_DURATION_SECONDS,
        Unit::Seconds,
        "Time to establish a TCP connection to a member, by pool and member."
    );
    describe_counter!(
        CONNECT_ATTEMPTS_TOTAL,
        Unit::Count,
        "Connect attempts to members, by pool, member and result."
    );
    describe_gauge!(
        MEMBER_UP,
        "1 while a member's health checks say up, 0 while down, by pool and member."
    );
    describe_counter!(
        MEMBER_HEALTH_TRANSITIONS_TOTAL,
        Unit::Count,
        "Health transitions of a member, by pool, member and to (up, down)."
    );
    describe_histogram!(
        HEALTH_CHECK_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one health probe, by pool and member."
    );
    describe_gauge!(
        BREAKER_STATE,
        "A member's circuit breaker, by pool and member: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        BREAKER_TRANSITIONS_TOTAL,
        Unit::Count,
        "Circuit breaker transitions, by pool, member and to (closed, half_open, open)."
    );
    describe_counter!(
        MEMBER_SILENT_TOTAL,
        Unit::Count,
        "Connections whose member sent nothing for breaker.silent_after_request after the client's first bytes reached it, by pool and member. Each counts one failure against the member's breaker."
    );
    describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Redials to another member after a failed connect, by route."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the running sluice."
    );
    describe_counter!(
        LOCAL_RESOURCE_ERRORS_TOTAL,
        Unit::Count,
        "sluice's own resource shortages (out of descriptors, kernel memory or local ports), by op (accept, connect, probe). Never counted against a member."
    );
    describe_counter!(
        DNS_RESOLUTIONS_TOTAL,
        Unit::Count,
        "DNS queries of member entries, by entry and result (ok; not_found: the name has no records, the entry empties; error: no answer, the last good one is kept)."
    );
    describe_gauge!(
        DNS_ADDRESSES,
        Unit::Count,
        "Addresses in the DNS answer an entry uses now (each one a member), by entry."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        Unit::Count,
        "Config reloads, by result (ok, error)."
    );
    describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the last config reload that was applied."
    );
}
