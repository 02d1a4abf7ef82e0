//! Active health checking: one heartbeat task per member, flipping its health after rise/fall
//! probes.
//!
//! - `state`: [`HealthState`], the rise/fall state machine and probe schedule; pure, no I/O.
//! - `probe`: [`check()`], one probe as the config says, [`probe()`], one TCP probe (connect,
//!   send, expect a prefix or a regex), and the [`ProbeFailure`] of either.
//! - `http`: the HTTP GET probe of `health.http`, which passes on the expected status.
//! - `grid`: rounds probe start times to a shared grid, so one wake-up starts many probes.
//! - `checker`: the task tying them to the clock, the [`Member`] and telemetry.
//!
//! A probe goes to the member's address unless `health.port` or `health.addr` moves it
//! ([`HealthConfig::probe_addr`]): a role endpoint on another port decides whether the member
//! gets traffic, and traffic still goes to the member's own address.
//!
//! Health is one of a member's eligibility signals; combining it with drain and the circuit
//! breaker is left to [`crate::upstream`]. Pools without a health config spawn no checker.

mod checker;
mod grid;
mod http;
mod probe;
mod state;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HealthConfig;
use crate::upstream::Member;

pub use probe::{ProbeFailure, ProbePhase, check, probe};
pub use state::{HealthState, Transition};

/// How much later than its delay a probe may start for `config`: the checker rounds each start
/// up to a grid shared by every checker (a 16th of the shorter interval, at most 20 ms), so one
/// wake-up starts many probes. Zero when the intervals are under 16 ns.
pub fn probe_grid_tick(config: &HealthConfig) -> std::time::Duration {
    grid::tick_for(config)
}

/// Starts the heartbeat task of one member. It probes [`HealthConfig::probe_addr`] until `shutdown` is cancelled, flipping
/// `member`'s health after `rise` successes or `fall` failures. `seed` drives its jitter.
///
/// The member's health when this is called is its initial state, and the first probe decides
/// it at once (see [`HealthState`]). Each transition sets `sluice_member_up`, counts
/// `sluice_member_health_transitions_total` and is logged once (`member down` at warn,
/// `member up` at info, with `pool`, `member`, `reason` and `after` fields). Every probe is
/// timed in `sluice_health_check_duration_seconds`. The task ends promptly on `shutdown`, even
/// mid-probe.
pub fn spawn_checker(
    pool: Arc<str>,
    member: Arc<Member>,
    config: Arc<HealthConfig>,
    seed: u64,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let addr = config.probe_addr(member.addr());
    let checker = checker::Checker::new(pool, member, Arc::clone(&config), seed)
        .aligned_to(grid::ProbeGrid::shared(&config));
    let tcp_probe = move || {
        let config = Arc::clone(&config);
        async move { check(addr, &config).await }
    };
    tokio::spawn(checker.run(tcp_probe, shutdown))
}
