//! The soak report: built once from everything measured, printed as text (`Display`, in
//! `text.rs`) or written as JSON (`Serialize`) with the same content. Unlike a drill report it
//! holds no per-client records (a full run has 100,000): the ledger's totals, the samples and
//! the schedule are the record.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::gauge::Gauge;
use super::ledger::Tally;
use super::plan::{FaultKind, Soak};
use super::schedule::Fault;
use crate::observe::{Breaker, History};
use crate::report::{MemberInfo, Started, TrafficInfo, ms, rfc3339};
use crate::timeline::Injected;
use crate::verdict::{Verdict, failure_ratio, fmt_ms};

/// A soak's complete outcome.
#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub soak: String,
    pub file: String,
    pub description: Option<String>,
    /// When the soak started, by the wall clock (RFC 3339 in JSON).
    #[serde(serialize_with = "rfc3339")]
    pub started_at: SystemTime,
    /// How long the soak took: from starting the injector to the verdicts.
    #[serde(rename = "elapsed_ms", serialize_with = "ms")]
    pub elapsed: Duration,
    pub seed: u64,
    pub injector: String,
    pub listen: SocketAddr,
    pub balance: String,
    pub members: Vec<MemberInfo>,
    pub traffic: TrafficInfo,
    pub warmup: Warmup,
    /// Connections started after the warm-up.
    pub started: u64,
    /// From the start of traffic until its last client finished.
    #[serde(rename = "traffic_done_ms", serialize_with = "ms")]
    pub traffic_done: Duration,
    pub schedule: Schedule,
    /// Per member, in pool order.
    pub transitions: Vec<Transitions>,
    pub samples: Vec<Sample>,
    pub tally: Tally,
    pub resources: Resources,
    pub verdicts: Vec<Verdict>,
    pub passed: bool,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Warmup {
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
    pub clients: u64,
    pub ok: u64,
}

/// The faults drawn from the seed, and each step as it ran.
#[derive(Clone, Debug, Serialize)]
pub struct Schedule {
    /// FNV-1a of every step: equal seeds, equal fingerprints.
    pub fingerprint: String,
    pub faults: Vec<Fault>,
    pub by_kind: BTreeMap<FaultKind, KindCount>,
    pub injected: Vec<Injected>,
}

/// How often a kind was drawn, and for how long in all.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct KindCount {
    pub faults: u64,
    #[serde(rename = "total_ms", serialize_with = "ms")]
    pub total: Duration,
}

/// A member's health flips and breaker openings over the soak.
#[derive(Clone, Debug, Serialize)]
pub struct Transitions {
    pub member: String,
    pub health: usize,
    pub breaker_opened: usize,
}

/// Counts and resources at one moment, from the start of traffic.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    #[serde(rename = "at_ms", serialize_with = "ms")]
    pub at: Duration,
    /// Clients finished, and how.
    pub done: u64,
    pub ok: u64,
    pub failed: u64,
    /// Connections sluice held to members.
    pub open: u64,
    #[serde(flatten)]
    pub gauge: Gauge,
}

/// fds and RSS after the warm-up and after the settle.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Resources {
    pub before: Gauge,
    pub after: Gauge,
    #[serde(rename = "settled_in_ms", serialize_with = "ms")]
    pub settled_in: Duration,
}

/// What the runner knows about the run, besides the measurements.
pub struct SoakSetup {
    pub started: Started,
    pub seed: u64,
    pub injector: String,
    pub listen: SocketAddr,
    pub balance: String,
    pub members: Vec<MemberInfo>,
    pub duration: Duration,
    pub traffic_done: Duration,
    pub fingerprint: u64,
    /// Whether the access tap was installed (else bytes are checked by the clients alone).
    pub tapped: bool,
}

/// What happened.
pub struct Ran<'a> {
    pub warmup: (u64, u64),
    pub started: u64,
    pub faults: Vec<Fault>,
    pub injected: Vec<Injected>,
    pub history: &'a History,
    pub samples: Vec<Sample>,
    pub tally: Tally,
    pub resources: Resources,
}

/// Judges and lays out one soak.
pub fn build(soak: &Soak, setup: SoakSetup, ran: Ran<'_>) -> SoakReport {
    let s = &soak.scenario;
    let mut by_kind: BTreeMap<FaultKind, KindCount> = BTreeMap::new();
    for f in &ran.faults {
        let k = by_kind.entry(f.kind).or_default();
        k.faults += 1;
        k.total += f.end - f.start;
    }
    let transitions = s
        .members
        .iter()
        .enumerate()
        .map(|(m, spec)| Transitions {
            member: spec.name.clone(),
            health: ran.history.health_transitions(m),
            breaker_opened: ran.history.changes.get(m).map_or(0, |c| {
                c.windows(2)
                    .filter(|w| w[0].1.breaker != Breaker::Open && w[1].1.breaker == Breaker::Open)
                    .count()
            }),
        })
        .collect();
    let mut report = SoakReport {
        soak: s.name.clone(),
        file: s.file.clone(),
        description: s.description.clone(),
        started_at: setup.started.at,
        elapsed: Duration::ZERO,
        seed: setup.seed,
        injector: setup.injector,
        listen: setup.listen,
        balance: setup.balance,
        members: setup.members,
        traffic: TrafficInfo::new(&s.traffic, setup.duration),
        warmup: Warmup {
            duration: soak.plan.warmup,
            clients: ran.warmup.0,
            ok: ran.warmup.1,
        },
        started: ran.started,
        traffic_done: setup.traffic_done,
        schedule: Schedule {
            fingerprint: format!("{:016x}", setup.fingerprint),
            faults: ran.faults,
            by_kind,
            injected: ran.injected,
        },
        transitions,
        samples: ran.samples,
        tally: ran.tally,
        resources: ran.resources,
        verdicts: Vec::new(),
        passed: false,
    };
    report.verdicts = verdicts(soak, &report, setup.tapped);
    report.passed = report.verdicts.iter().all(|v| v.pass);
    report.elapsed = setup.started.instant.elapsed();
    report
}

fn verdicts(soak: &Soak, r: &SoakReport, tapped: bool) -> Vec<Verdict> {
    let b = &soak.bounds;
    let t = &r.tally;
    let mut out = Vec::new();
    if let Some(min) = b.min_connections {
        out.push(Verdict {
            bound: "min_connections",
            limit: min.to_string(),
            measured: format!(
                "{} connections started, {} finished",
                r.started, t.clients.total
            ),
            pass: r.started >= min && t.clients.total == r.started,
        });
    }
    if b.all_bytes_intact {
        let bytes = &t.bytes;
        let measured = if tapped {
            format!(
                "{} corrupt; access log disagrees on {} of {} verified connections",
                bytes.corrupt, bytes.access_disagrees, bytes.verified
            )
        } else {
            format!(
                "{} corrupt of {} verified connections (access log not tapped)",
                bytes.corrupt, bytes.verified
            )
        };
        out.push(Verdict {
            bound: "all_bytes_intact",
            limit: "true".into(),
            measured,
            pass: bytes.intact() && bytes.verified > 0,
        });
    }
    if let Some(slack) = b.max_wait_slack {
        let timeout = r.traffic.timeout;
        let measured = t.slowest.map_or("no client".to_string(), |s| {
            format!(
                "slowest client waited {} ({}); timeout {}",
                fmt_ms(s.wait),
                s.outcome.as_str(),
                fmt_ms(timeout)
            )
        });
        out.push(Verdict {
            bound: "max_wait_slack",
            limit: humantime::format_duration(slack).to_string(),
            measured,
            pass: t.slowest.is_some_and(|s| s.wait <= timeout + slack),
        });
    }
    let res = &r.resources;
    if let Some(limit) = b.fd_growth {
        let (before, after) = (res.before.net_fds(), res.after.net_fds());
        out.push(Verdict {
            bound: "fd_growth",
            limit: limit.to_string(),
            measured: format!(
                "{:+} ({before} → {after} fds less pooled splice pipes; settled in {})",
                after as i64 - before as i64,
                fmt_ms(res.settled_in)
            ),
            pass: before.abs_diff(after) <= limit,
        });
    }
    if let Some(g) = b.rss_growth {
        let (before, after) = (res.before.rss, res.after.rss);
        let allowed = g.allowed(before);
        out.push(Verdict {
            bound: "rss_growth",
            limit: format!("{} MiB or {}%", g.mib, g.ratio * 100.0),
            measured: format!(
                "{:+.1} MiB ({} → {}); allowed ±{}",
                (after as f64 - before as f64) / MIB,
                mib(before),
                mib(after),
                mib(allowed)
            ),
            pass: before.abs_diff(after) <= allowed,
        });
    }
    if let Some(limit) = b.max_client_failure_ratio {
        let c = &t.clients;
        out.push(failure_ratio(limit, c.failed, c.total));
    }
    out
}

const MIB: f64 = 1024.0 * 1024.0;

/// `41.2 MiB`.
pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::text::render(self, f)
    }
}
