//! The drill report: built once from everything observed, printed as text (`Display`) or
//! written as JSON (`Serialize`) with the same content, so CI artifacts and terminals agree.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};
use tokio::time::Instant;

use super::measure::{self, Inputs, Measures};
use super::observe::History;
use super::scenario::{Action, Scenario};
use super::timeline::Injected;
use super::traffic::ClientRecord;
use super::verdict::{self, Verdict, fmt_ms};
use super::wire::ServerKind;

/// A drill's complete outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub file: String,
    pub description: Option<String>,
    /// When the drill started, by the wall clock (RFC 3339 in JSON).
    #[serde(serialize_with = "rfc3339")]
    pub started_at: SystemTime,
    /// How long the drill took: from starting the injector to the verdicts.
    #[serde(rename = "elapsed_ms", serialize_with = "ms")]
    pub elapsed: Duration,
    pub seed: u64,
    pub injector: String,
    /// Where sluice listened.
    pub listen: SocketAddr,
    pub balance: String,
    pub members: Vec<MemberInfo>,
    pub traffic: TrafficInfo,
    /// Faults, restores, member and breaker transitions, redials, in time order.
    pub events: Vec<Event>,
    pub per_second: Vec<Second>,
    pub measures: Measures,
    pub verdicts: Vec<Verdict>,
    pub passed: bool,
    pub injected: Vec<Injected>,
    pub clients: Vec<ClientRecord>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberInfo {
    pub name: String,
    pub server: ServerKind,
    /// `echo`, `addr 127.0.0.1:6379` or `start "redis-server --port {port}"`.
    pub source: String,
    pub tier: u8,
    pub weight: u32,
    pub server_addr: SocketAddr,
    pub proxy: String,
    /// What sluice dials: the member's proxy.
    pub proxy_addr: SocketAddr,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrafficInfo {
    /// `[traffic] command` as written (placeholders unsubstituted); `None`: built-in clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// How often a command run starts; `None` with a command: it ran once.
    #[serde(
        rename = "every_ms",
        serialize_with = "opt_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    pub clients: usize,
    pub rate: f64,
    pub payload_min: u64,
    pub payload_max: u64,
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
    #[serde(rename = "timeout_ms", serialize_with = "ms")]
    pub timeout: Duration,
    /// Clients send their first bytes before reading the banner (`traffic.client_first`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub client_first: bool,
}

impl TrafficInfo {
    /// The traffic as it ran: the scenario's, with the duration actually used (it may be
    /// overridden).
    pub fn new(traffic: &super::scenario::Traffic, duration: Duration) -> Self {
        Self {
            command: traffic.command.as_ref().map(|c| c.command.clone()),
            every: traffic.command.as_ref().and_then(|c| c.every),
            clients: traffic.clients,
            rate: traffic.rate,
            payload_min: traffic.payload_min,
            payload_max: traffic.payload_max,
            duration,
            timeout: traffic.timeout,
            client_first: traffic.client_first,
        }
    }
}

/// One line of the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    #[serde(rename = "at_ms", serialize_with = "ms")]
    pub at: Duration,
    pub kind: &'static str,
    pub text: String,
}

/// Clients by the second they arrived in.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    pub second: u64,
    pub ok: u64,
    pub failed: u64,
}

/// When a drill or soak started: the wall clock for the report's timestamp, tokio's clock for
/// its length (so a paused test clock reaches it too).
#[derive(Clone, Copy, Debug)]
pub struct Started {
    pub at: SystemTime,
    pub instant: Instant,
}

impl Started {
    pub fn now() -> Self {
        Self {
            at: SystemTime::now(),
            instant: Instant::now(),
        }
    }
}

/// What the runner knows about a finished drill, besides the measurement inputs.
pub struct Setup {
    pub started: Started,
    pub seed: u64,
    pub injector: String,
    pub listen: SocketAddr,
    pub balance: String,
    pub members: Vec<MemberInfo>,
    pub duration: Duration,
}

/// Measures, judges and lays out one drill.
pub fn build(setup: Setup, i: &Inputs<'_>) -> Report {
    let s: &Scenario = i.scenario;
    let measures = measure::measure(i);
    let mut verdicts = verdict::verdicts(&s.bounds, &measures, &s.members);
    if let Some(command) = s.traffic.command.as_ref().filter(|c| c.every.is_none()) {
        verdicts.push(verdict::workload_exit(&command.command, i.clients));
    }
    let passed = verdicts.iter().all(|v| v.pass);
    let events = events(&setup, i, &measures);
    Report {
        scenario: s.name.clone(),
        file: s.file.clone(),
        description: s.description.clone(),
        started_at: setup.started.at,
        elapsed: setup.started.instant.elapsed(),
        seed: setup.seed,
        injector: setup.injector,
        listen: setup.listen,
        balance: setup.balance,
        members: setup.members,
        traffic: TrafficInfo::new(&s.traffic, setup.duration),
        events,
        per_second: per_second(i.clients),
        measures,
        verdicts,
        passed,
        injected: i.injected.to_vec(),
        clients: i.clients.to_vec(),
    }
}

fn events(setup: &Setup, i: &Inputs<'_>, m: &Measures) -> Vec<Event> {
    let name = |k: usize| {
        setup
            .members
            .get(k)
            .map_or("?".to_string(), |m| m.name.clone())
    };
    let mut ev = vec![Event {
        at: Duration::ZERO,
        kind: "traffic",
        text: "starts".into(),
    }];
    for s in i.injected {
        let kind = match s.action {
            Action::AddToxic { .. } | Action::Disable { .. } | Action::Kill { .. } => "fault",
            _ => "restore",
        };
        match s.at {
            Some(at) => ev.push(Event {
                at,
                kind,
                text: s.text.clone(),
            }),
            None => ev.push(Event {
                at: s.planned,
                kind,
                text: format!("{} (skipped: after the end of traffic)", s.text),
            }),
        }
    }
    ev.extend(transitions(i.history, &name));
    if let Some(f) = &m.redials.first {
        let client = f.client.map_or("?".into(), |c| c.to_string());
        let member = f
            .member
            .as_deref()
            .and_then(|a| setup.members.iter().find(|m| m.proxy_addr.to_string() == a));
        let member = member.map_or("?", |m| m.name.as_str());
        let text = format!(
            "first successful redial: client {client} served by {member} after {} attempts",
            f.attempts
        );
        ev.push(Event {
            at: f.at,
            kind: "redial",
            text,
        });
    }
    for b in &m.backup {
        if let Some(after) = b.served_after {
            ev.push(Event {
                at: b.primaries_down_at + after,
                kind: "serve",
                text: "first client served by the backup tier".into(),
            });
        }
    }
    for r in &m.returns {
        if let Some(after) = r.serves_after {
            ev.push(Event {
                at: r.restored_at + after,
                kind: "serve",
                text: format!("{} serves a client again", name(r.member)),
            });
        }
    }
    let total = i.clients.len();
    ev.push(Event {
        at: setup.duration,
        kind: "traffic",
        text: format!("ends ({total} clients)"),
    });
    ev.sort_by_key(|e| e.at);
    // Several restores of one member (a flap) can find the same first served client.
    ev.dedup_by(|a, b| a.at == b.at && a.kind == b.kind && a.text == b.text);
    ev
}

/// Health and breaker changes after the first sample.
fn transitions(h: &History, name: &dyn Fn(usize) -> String) -> Vec<Event> {
    let mut ev = Vec::new();
    for (m, changes) in h.changes.iter().enumerate() {
        for w in changes.windows(2) {
            let ((_, a), (at, b)) = (w[0], w[1]);
            if a.up != b.up {
                let (from, to) = if b.up { ("down", "up") } else { ("up", "down") };
                ev.push(Event {
                    at,
                    kind: "member",
                    text: format!("{} {from} → {to}", name(m)),
                });
            }
            if a.breaker != b.breaker {
                let text = format!(
                    "{} breaker {} → {}",
                    name(m),
                    a.breaker.as_str(),
                    b.breaker.as_str()
                );
                ev.push(Event {
                    at,
                    kind: "breaker",
                    text,
                });
            }
        }
    }
    ev
}

fn per_second(clients: &[ClientRecord]) -> Vec<Second> {
    let last = clients.iter().map(|c| c.start.as_secs()).max().unwrap_or(0);
    let mut out: Vec<Second> = (0..=last)
        .map(|second| Second {
            second,
            ok: 0,
            failed: 0,
        })
        .collect();
    for c in clients {
        if let Some(s) = out.get_mut(c.start.as_secs() as usize) {
            if c.outcome.is_ok() {
                s.ok += 1;
            } else {
                s.failed += 1;
            }
        }
    }
    out
}

/// Serializes a duration as milliseconds (0.1ms resolution).
pub fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 10_000.0).round() / 10.0)
}

/// Serializes a wall-clock time as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

pub fn opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ms(d, s),
        None => s.serialize_none(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::text::render(self, f)
    }
}

/// `fmt_ms` for the text renderer.
pub(super) fn human(d: Duration) -> String {
    fmt_ms(d)
}
