//! Plays a scenario's timeline: each step at its offset from the start of traffic, through the
//! Toxiproxy API (toxics, enable, disable, reset) or the member servers (kill, restart).
//!
//! The offsets are a schedule, not synchronization: nothing waits for sluice to react. What
//! counts for the verdicts is when a step took effect, so each is stamped when its call
//! returned; a step that fails stops the timeline and fails the drill, since the verdicts
//! would describe a fault that never happened.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::DrillError;
use super::control::Control;
use super::scenario::{Action, MemberSpec, Step};
use super::toxiproxy::Toxiproxy;
use super::upstream::Upstream;

/// What the timeline acts on.
pub struct Targets<'a> {
    pub api: &'a Toxiproxy,
    /// Proxy name per member.
    pub proxies: &'a [String],
    pub servers: &'a [Upstream],
    pub members: &'a [MemberSpec],
    /// What sluice dials, per member.
    pub proxy_addrs: &'a [std::net::SocketAddr],
    /// Operator actions on sluice.
    pub control: &'a Control,
}

/// One step as it ran.
#[derive(Clone, Debug, Serialize)]
pub struct Injected {
    #[serde(rename = "planned_ms", serialize_with = "super::report::ms")]
    pub planned: Duration,
    /// When it took effect; `None` when skipped (planned after the end of traffic).
    #[serde(rename = "at_ms", serialize_with = "super::report::opt_ms")]
    pub at: Option<Duration>,
    pub text: String,
    #[serde(skip)]
    pub action: Action,
}

/// Runs every step due before `end` (relative to `t0`); later ones are reported as skipped.
pub async fn play(
    steps: &[Step],
    t0: Instant,
    end: Duration,
    targets: Targets<'_>,
) -> Result<Vec<Injected>, DrillError> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let text = step.action.describe(targets.members);
        let mut injected = Injected {
            planned: step.at,
            at: None,
            text,
            action: step.action.clone(),
        };
        if step.at <= end {
            tokio::time::sleep_until(t0 + step.at).await;
            apply(&step.action, &targets)
                .await
                .map_err(|reason| DrillError::Fault {
                    step: injected.text.clone(),
                    reason,
                })?;
            injected.at = Some(Instant::now().saturating_duration_since(t0));
        }
        out.push(injected);
    }
    Ok(out)
}

async fn apply(action: &Action, t: &Targets<'_>) -> Result<(), String> {
    let proxy = |m: &usize| t.proxies.get(*m).map(String::as_str).unwrap_or_default();
    let server = |m: &usize| t.servers.get(*m).ok_or_else(|| format!("no member {m}"));
    match action {
        Action::AddToxic { member, toxic } => t.api.add_toxic(proxy(member), toxic).await,
        Action::RemoveToxic { member, name } => t.api.remove_toxic(proxy(member), name).await,
        Action::Disable { member } => t.api.set_enabled(proxy(member), false).await,
        Action::Enable { member } => t.api.set_enabled(proxy(member), true).await,
        Action::Reset => t.api.reset().await,
        Action::Kill { member } => {
            server(member)?.kill().await;
            return Ok(());
        }
        Action::Drain { member } | Action::Undrain { member } => {
            let proxy = t
                .proxy_addrs
                .get(*member)
                .ok_or_else(|| format!("no member {member}"))?;
            return t
                .control
                .drain(*proxy, matches!(action, Action::Drain { .. }))
                .await;
        }
        Action::Reload => return t.control.reload().await,
        Action::Restart { member } => {
            return server(member)?.restart().await;
        }
    }
    .map_err(|e| e.to_string())
}
