//! Measurements of one drill, from what happened: the steps as they ran, the sampled member
//! states, every client and sluice's access lines. Pure functions; `verdict` compares them
//! with the bounds and `report` prints them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::access::AccessEvent;
use super::faults::{self, Window};
use super::observe::History;
use super::report::{ms, opt_ms};
use super::scenario::Scenario;
use super::timeline::Injected;
use super::traffic::{ClientRecord, Outcome};

mod accounting;
pub use accounting::{BytesCheck, Disagreement, FirstRedial, Redials};

/// What the measurements are taken from.
pub struct Inputs<'a> {
    pub scenario: &'a Scenario,
    pub injected: &'a [Injected],
    pub history: &'a History,
    pub clients: &'a [ClientRecord],
    pub access: &'a [AccessEvent],
    /// Whether the access tap was installed (else redials are unknown).
    pub tapped: bool,
    /// Start of traffic, to place access lines in time.
    pub t0: Instant,
}

/// Everything measured.
#[derive(Clone, Debug, Serialize)]
pub struct Measures {
    pub clients: ClientTotals,
    pub ejections: Vec<Ejection>,
    pub returns: Vec<Return>,
    pub backup: Vec<BackupServe>,
    pub failed_after_ejection: u64,
    /// Clients sluice turned away itself: connect refused, or closed (FIN or reset) before any
    /// member's banner arrived. A reload or restart that drops its listener shows here.
    pub refused: u64,
    /// Health flips per member, in member order.
    pub transitions: Vec<usize>,
    pub slow_shares: Vec<Share>,
    pub bytes: BytesCheck,
    pub redials: Redials,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientTotals {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    pub by_outcome: BTreeMap<&'static str, u64>,
}

/// From a member's fault to its ejection (health down or breaker open).
#[derive(Clone, Debug, Serialize)]
pub struct Ejection {
    pub member: usize,
    #[serde(rename = "fault_ms", serialize_with = "ms")]
    pub fault_at: Duration,
    /// `None`: not ejected before its restore (or the end).
    #[serde(rename = "ejected_after_ms", serialize_with = "opt_ms")]
    pub after: Option<Duration>,
}

/// From a member's restore to its return (state back) and its first served client.
#[derive(Clone, Debug, Serialize)]
pub struct Return {
    pub member: usize,
    #[serde(rename = "restored_ms", serialize_with = "ms")]
    pub restored_at: Duration,
    #[serde(rename = "back_after_ms", serialize_with = "opt_ms")]
    pub back_after: Option<Duration>,
    #[serde(rename = "serves_after_ms", serialize_with = "opt_ms")]
    pub serves_after: Option<Duration>,
}

/// From the moment every primary is faulted to the first client a backup served.
#[derive(Clone, Debug, Serialize)]
pub struct BackupServe {
    #[serde(rename = "primaries_down_ms", serialize_with = "ms")]
    pub primaries_down_at: Duration,
    #[serde(rename = "served_after_ms", serialize_with = "opt_ms")]
    pub served_after: Option<Duration>,
}

/// The share of successful connections a toxic member took while its toxic was on.
#[derive(Clone, Debug, Serialize)]
pub struct Share {
    pub member: usize,
    pub share: f64,
    pub of: u64,
}

/// Fault windows over the times the steps took effect.
pub fn windows(i: &Inputs<'_>) -> Vec<Window> {
    let ran = i
        .injected
        .iter()
        .filter_map(|s| s.at.map(|at| (at, &s.action)));
    faults::windows(i.scenario.members.len(), ran)
}

pub fn measure(i: &Inputs<'_>) -> Measures {
    let windows = windows(i);
    let ejections: Vec<Ejection> = windows
        .iter()
        .map(|w| Ejection {
            member: w.member,
            fault_at: w.start,
            after: i
                .history
                .ejected_in(w.member, w.start, w.end)
                .map(|t| t - w.start),
        })
        .collect();
    let ok_on = |member: usize, from: Duration| {
        i.clients
            .iter()
            .filter(|c| c.outcome.is_ok() && c.start >= from && c.member == Some(member as u32))
            .map(|c| c.end)
            .min()
    };
    let returns = windows
        .iter()
        .filter_map(|w| {
            let end = w.end?;
            Some(Return {
                member: w.member,
                restored_at: end,
                back_after: i.history.back_after(w.member, end).map(|t| t - end),
                serves_after: ok_on(w.member, end).map(|t| t.saturating_sub(end)),
            })
        })
        .collect();
    Measures {
        clients: totals(i.clients),
        failed_after_ejection: failed_after_ejection(i.clients, &windows, &ejections),
        refused: i
            .clients
            .iter()
            .filter(|c| {
                c.outcome == Outcome::Refused
                    || (matches!(c.outcome, Outcome::Reset | Outcome::ClosedEarly)
                        && c.member.is_none()
                        && c.detail.is_none())
            })
            .count() as u64,
        backup: backup(i, &windows),
        ejections,
        returns,
        transitions: (0..i.scenario.members.len())
            .map(|m| i.history.health_transitions(m))
            .collect(),
        slow_shares: slow_shares(i),
        bytes: accounting::bytes(i),
        redials: accounting::redials(i),
    }
}

fn totals(clients: &[ClientRecord]) -> ClientTotals {
    let mut t = ClientTotals::default();
    for c in clients {
        t.total += 1;
        if c.outcome.is_ok() {
            t.ok += 1;
        } else {
            t.failed += 1;
        }
        *t.by_outcome.entry(c.outcome.as_str()).or_default() += 1;
    }
    t
}

/// Failed clients that arrived while some member was faulted and every faulted member had
/// already been ejected: the failures sluice had no excuse for.
fn failed_after_ejection(clients: &[ClientRecord], windows: &[Window], ej: &[Ejection]) -> u64 {
    let settled = |t: Duration| {
        let mut open = windows
            .iter()
            .zip(ej)
            .filter(|(w, _)| w.contains(t))
            .peekable();
        open.peek().is_some()
            && open.all(|(w, e)| e.after.is_some_and(|after| w.start + after <= t))
    };
    clients
        .iter()
        .filter(|c| !c.outcome.is_ok() && settled(c.start))
        .count() as u64
}

fn backup(i: &Inputs<'_>, windows: &[Window]) -> Vec<BackupServe> {
    let primaries: Vec<usize> = (0..i.scenario.members.len())
        .filter(|&m| i.scenario.is_primary(m))
        .collect();
    if primaries.len() == i.scenario.members.len() {
        // No backup tier: nothing could fail over.
        return Vec::new();
    }
    faults::all_faulted(windows, &primaries)
        .into_iter()
        .map(|(start, end)| BackupServe {
            primaries_down_at: start,
            served_after: i
                .clients
                .iter()
                .filter(|c| {
                    c.outcome.is_ok() && c.start >= start && end.is_none_or(|e| c.start < e)
                })
                .filter(|c| c.member.is_some_and(|m| !i.scenario.is_primary(m as usize)))
                .map(|c| c.end.saturating_sub(start))
                .min(),
        })
        .collect()
}

fn slow_shares(i: &Inputs<'_>) -> Vec<Share> {
    let ran = i
        .injected
        .iter()
        .filter_map(|s| s.at.map(|at| (at, &s.action)));
    faults::toxic_windows(i.scenario.members.len(), ran)
        .into_iter()
        .map(|w| {
            let ok: Vec<&ClientRecord> = i
                .clients
                .iter()
                .filter(|c| c.outcome.is_ok() && w.contains(c.start))
                .collect();
            let on = ok
                .iter()
                .filter(|c| c.member == Some(w.member as u32))
                .count();
            Share {
                member: w.member,
                share: if ok.is_empty() {
                    0.0
                } else {
                    on as f64 / ok.len() as f64
                },
                of: ok.len() as u64,
            }
        })
        .collect()
}
