//! Operator actions: `POST /pools/{pool}/members/{member}/drain` and `.../enable` on members,
//! and `POST /reload`.
//!
//! `{member}` is the member's configured address (`host:port`, percent-encoded where needed,
//! e.g. `%5B%3A%3A1%5D%3A9001` for `[::1]:9001`) or, failing that, the address it resolved
//! to. Draining flips the member's drain flag: the balancer skips it for new connections from
//! the next pick on, and its live connections run to their end. Enabling clears the flag.
//! Both are idempotent and answer
//!
//! ```json
//! {"pool": "web", "changed": true, "member": {"addr": "127.0.0.1:9001", "admin": "drain", ...}}
//! ```
//!
//! A request naming an unknown pool or member changes nothing and gets a 404 whose message
//! lists what exists.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::time::Instant;
use tracing::info;

use super::server::ApiError;
use super::status::{MemberStatus, member_status};
use super::{AdminState, PoolView, ReloadFailure};
use crate::upstream::Member;

/// The answer to a drain or enable.
#[derive(Debug, Serialize)]
pub(super) struct ActionResult {
    pool: String,
    /// False when the member already was in the requested state.
    changed: bool,
    member: MemberStatus,
}

pub(super) async fn drain(
    State(state): State<Arc<AdminState>>,
    Path((pool, member)): Path<(String, String)>,
) -> Result<Json<ActionResult>, ApiError> {
    set_drained(&state, &pool, &member, true)
}

pub(super) async fn enable(
    State(state): State<Arc<AdminState>>,
    Path((pool, member)): Path<(String, String)>,
) -> Result<Json<ActionResult>, ApiError> {
    set_drained(&state, &pool, &member, false)
}

fn set_drained(
    state: &AdminState,
    pool: &str,
    member: &str,
    drained: bool,
) -> Result<Json<ActionResult>, ApiError> {
    let all = state.view();
    let view = all.pool(pool).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such pool {pool:?} (defined: {})", all.pool_names()),
        )
    })?;
    let member = find_member(view, member)?;
    let changed = member.set_drained(drained);
    // Only the request that flipped the flag logs, so a retried script leaves one line.
    if changed && drained {
        info!(pool = %pool, member = %member.name(), "member drained");
    } else if changed {
        info!(pool = %pool, member = %member.name(), "member enabled");
    }
    Ok(Json(ActionResult {
        pool: pool.to_string(),
        changed,
        member: member_status(member, Instant::now()),
    }))
}

/// The member named `wanted`: by configured address first, then by resolved address, which two
/// members may share (two names for one host), and then the name must be used.
fn find_member<'a>(view: &'a PoolView, wanted: &str) -> Result<&'a Arc<Member>, ApiError> {
    let members = view.pool.members();
    if let Some(m) = members.iter().find(|m| m.name() == wanted) {
        return Ok(m);
    }
    let names = || {
        let names: Vec<&str> = members.iter().map(|m| m.name()).collect();
        names.join(", ")
    };
    let by_addr: Vec<&Arc<Member>> = match wanted.parse::<SocketAddr>() {
        Ok(addr) => members.iter().filter(|m| m.addr() == addr).collect(),
        Err(_) => Vec::new(),
    };
    match by_addr.as_slice() {
        [one] => Ok(one),
        [] => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no member {wanted:?} in pool {:?} (members: {})",
                view.config.name,
                names()
            ),
        )),
        several => {
            let matching: Vec<&str> = several.iter().map(|m| m.name()).collect();
            Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{wanted} is the resolved address of several members of pool {:?} ({}); name one by its configured address",
                    view.config.name,
                    matching.join(", ")
                ),
            ))
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Reloaded {
    result: &'static str,
    /// What changed: `routes +1 -0 ~1, pools ..., listeners ..., members ...`.
    changes: String,
}

#[derive(Debug, Serialize)]
pub(super) struct ReloadRejected {
    error: &'static str,
    /// Every problem, worded as `sluice check` words it.
    problems: Vec<String>,
}

/// `POST /reload`: re-reads the config file. An invalid file is the request's problem only
/// in the sense that nothing can be done with it: 422 with every problem, nothing changed.
pub(super) async fn reload(State(state): State<Arc<AdminState>>) -> Response {
    let Some(reload) = &state.reload else {
        return ApiError::new(
            StatusCode::CONFLICT,
            "nothing to reload: sluice was started without a config file".into(),
        )
        .into_response();
    };
    match reload.reload().await {
        Ok(changes) => Json(Reloaded {
            result: "ok",
            changes,
        })
        .into_response(),
        Err(ReloadFailure::Invalid(problems)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ReloadRejected {
                error: "the config file is invalid; still running the previous config",
                problems,
            }),
        )
            .into_response(),
        Err(ReloadFailure::Failed(message)) => ApiError::new(
            StatusCode::CONFLICT,
            format!("{message}; still running the previous config"),
        )
        .into_response(),
    }
}
