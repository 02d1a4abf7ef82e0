//! `GET /status`: routes, pools and members as JSON, read from the live atomics.
//!
//! ```json
//! {"status": "ok",
//!  "routes": [{"name": "web", "listen": ["127.0.0.1:8080"], "pool": "web"}],
//!  "pools": [{"name": "web", "balance": "round_robin", "min_healthy": 1, "all_down": "reject",
//!             "members": [{"addr": "app1:9001", "resolved": "10.0.0.5:9001", "tier": 0,
//!                          "weight": 1, "health": "up", "admin": "enabled",
//!                          "breaker": {"state": "closed"}, "active": 3,
//!                          "max_connections": null}]}]}
//! ```
//!
//! `breaker` is `null` for a pool without breakers, else one of `{"state": "closed"}`,
//! `{"state": "half_open", "trials_in_flight": 1}` and `{"state": "open", "half_open_in_ms":
//! 4200}`. Each member is read field by field (atomics, and the breaker's short lock), so one
//! member's fields may straddle a concurrent change; each field on its own is current.
//!
//! Routes carry no connection count: a route keeps none that can be read back, only the
//! `sluice_active_connections` gauge it sets.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tokio::time::Instant;

use super::{AdminState, PoolView, ReloadOutcome};
use crate::config::AllDown;
use crate::upstream::{BreakerState, Member};

/// The whole `/status` document.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    /// `ok`, or `draining` once shutdown began (as `/healthz`).
    status: &'static str,
    routes: Vec<RouteStatus>,
    pools: Vec<PoolStatus>,
    /// The outcome of the last reload, if any was tried (absent without a config file).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reload: Option<ReloadOutcome>,
    /// DNS entries (`host:port` names and `srv` members); absent when the config has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns: Vec<crate::dns::EntryStatus>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RouteStatus {
    name: String,
    /// Bound addresses, with the kernel's port where the config said 0.
    listen: Vec<SocketAddr>,
    pool: String,
    /// Connections being served now.
    active: u64,
    /// Connections accepted since startup (kept across reloads).
    total: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct PoolStatus {
    name: String,
    balance: &'static str,
    min_healthy: usize,
    all_down: &'static str,
    members: Vec<MemberStatus>,
}

/// One member as `/status` and the drain/enable answers show it.
#[derive(Debug, Serialize)]
pub(crate) struct MemberStatus {
    /// The address as configured (`host:port`), which names the member in the API.
    addr: String,
    /// What `addr` resolved to when the config was loaded.
    resolved: SocketAddr,
    tier: u8,
    weight: u32,
    /// `up` or `down`, from health probes (`up` without health checks).
    health: &'static str,
    /// `enabled` or `drain`.
    admin: &'static str,
    /// `None` when the pool has no breakers.
    breaker: Option<BreakerStatus>,
    /// Connections being dialled or relayed to it now.
    active: u64,
    /// Its connection cap; `None` = unlimited.
    max_connections: Option<u64>,
}

/// A member's circuit breaker as JSON, tagged by `state`.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum BreakerStatus {
    Closed,
    HalfOpen {
        trials_in_flight: u32,
    },
    /// Rejecting; admits a trial in `half_open_in_ms` milliseconds (0 once the period is over).
    Open {
        half_open_in_ms: u64,
    },
}

impl BreakerStatus {
    fn new(state: BreakerState, now: Instant) -> Self {
        match state {
            BreakerState::Closed => Self::Closed,
            BreakerState::HalfOpen { trials_in_flight } => Self::HalfOpen { trials_in_flight },
            BreakerState::Open { until } => Self::Open {
                half_open_in_ms: until.saturating_duration_since(now).as_millis() as u64,
            },
        }
    }
}

pub(super) async fn status(State(state): State<Arc<AdminState>>) -> Json<Status> {
    let view = state.view();
    Json(Status {
        status: if state.draining.is_draining() {
            "draining"
        } else {
            "ok"
        },
        routes: view
            .routes
            .iter()
            .map(|r| RouteStatus {
                name: r.name.clone(),
                listen: r.listen.clone(),
                pool: r.pool.clone(),
                active: r.stats.active(),
                total: r.stats.total(),
            })
            .collect(),
        pools: view.pools.iter().map(pool_status).collect(),
        last_reload: state.reload.as_ref().and_then(|r| r.last()),
        dns: state.reload.as_ref().map(|r| r.dns()).unwrap_or_default(),
    })
}

fn pool_status(view: &PoolView) -> PoolStatus {
    let config = &view.config;
    PoolStatus {
        name: config.name.clone(),
        balance: config.balance.as_str(),
        min_healthy: config.min_healthy,
        all_down: match config.all_down {
            AllDown::Reject => "reject",
            AllDown::Panic => "panic",
        },
        members: view
            .pool
            .members()
            .iter()
            .map(|m| member_status(m, Instant::now()))
            .collect(),
    }
}

/// The JSON of one member at `now`: the single place that decides what an operator sees of a
/// member, in `/status` and in the answers to drain and enable.
pub(crate) fn member_status(member: &Member, now: Instant) -> MemberStatus {
    MemberStatus {
        addr: member.name().to_string(),
        resolved: member.addr(),
        tier: member.tier(),
        weight: member.weight(),
        health: if member.is_up() { "up" } else { "down" },
        admin: if member.is_drained() {
            "drain"
        } else {
            "enabled"
        },
        breaker: member
            .breaker_state(now)
            .map(|state| BreakerStatus::new(state, now)),
        active: member.active(),
        max_connections: member.max_connections(),
    }
}
