//! `[[timeline]]` rules: each step's action, its members, its toxic and its repeats.

use std::time::Duration;

use toml::Value;

use super::{Validator, human, quote};
use crate::scenario::{Action, MemberSpec, Step, Toxic};
use crate::schema::{ActionKind, StepFile, ToxicFile};

/// Toxiproxy's toxic types, then sluice-toxiproxy's extensions (docs/CHAOS.md, "Extensions
/// beyond Toxiproxy"), which a real Toxiproxy rejects when the step runs.
const TOXIC_TYPES: [&str; 10] = [
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "limit_data",
    "slicer",
    "noop",
    "connect_timeout",
    "slow_accept",
];
const ACTIONS: [&str; 7] = [
    "add_toxic",
    "remove_toxic",
    "disable",
    "enable",
    "kill",
    "restart",
    "reset",
];
/// Repeated steps expand to at most this many, so a typo in `every` cannot hang the runner.
const MAX_STEPS: usize = 1000;

impl Validator {
    /// Every step, repeats expanded, sorted by time (steps at one instant keep file order).
    pub(super) fn timeline(
        &mut self,
        raw: &[StepFile],
        members: &[MemberSpec],
        end: Duration,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let key = |k: &str| format!("timeline[{i}].{k}");
            let Some(kind) = s.action else {
                let reason = format!("missing; one of {}", ACTIONS.join(", "));
                self.error(key("action"), None, reason);
                continue;
            };
            let Some(at) = s.at.map(|d| d.0) else {
                let reason = "missing; the offset from the start of traffic, e.g. \"2s\"";
                self.error(key("at"), None, reason);
                continue;
            };
            if at > end {
                let reason = format!("after the traffic ends (traffic.duration = {})", human(end));
                self.error(key("at"), Some(human(at)), reason);
            }
            let targets = self.targets(i, s, kind, members);
            let Some(actions) = self.actions(i, s, kind, &targets) else {
                continue;
            };
            for t in self.times(i, s, at, end) {
                steps.extend(actions.iter().map(|a| Step {
                    at: t,
                    action: a.clone(),
                }));
            }
        }
        if steps.len() > MAX_STEPS {
            let reason = format!("expands to {} steps; at most {MAX_STEPS}", steps.len());
            self.error("timeline", None, reason);
        }
        steps.sort_by_key(|s| s.at);
        self.removals_match(&steps, members);
        steps
    }

    /// Member indexes named by `member` or `members` (exactly one of them, none for reset).
    fn targets(
        &mut self,
        i: usize,
        s: &StepFile,
        kind: ActionKind,
        members: &[MemberSpec],
    ) -> Vec<usize> {
        let names: Vec<&String> = match (&s.member, &s.members) {
            (None, None) if matches!(kind, ActionKind::Reset | ActionKind::Reload) => {
                return Vec::new();
            }
            (Some(_), _) | (_, Some(_))
                if matches!(kind, ActionKind::Reset | ActionKind::Reload) =>
            {
                let reason = format!("{} acts on every member; remove member", kind.as_str());
                self.error(format!("timeline[{i}].member"), None, reason);
                return Vec::new();
            }
            (Some(m), None) => vec![m],
            (None, Some(ms)) if !ms.is_empty() => ms.iter().collect(),
            (Some(_), Some(_)) => {
                let reason = "set member or members, not both";
                self.error(format!("timeline[{i}].members"), None, reason);
                return Vec::new();
            }
            _ => {
                let reason = format!("missing; {} needs the member it acts on", kind.as_str());
                self.error(format!("timeline[{i}].member"), None, reason);
                return Vec::new();
            }
        };
        let key = if s.member.is_some() {
            "member"
        } else {
            "members"
        };
        let mut out = Vec::new();
        for n in names {
            match members.iter().position(|m| &m.name == n) {
                Some(p) => out.push(p),
                None => {
                    let defined: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                    let reason = format!("no such member (defined: {})", defined.join(", "));
                    self.error(format!("timeline[{i}].{key}"), Some(quote(n)), reason);
                }
            }
        }
        out
    }

    fn actions(
        &mut self,
        i: usize,
        s: &StepFile,
        kind: ActionKind,
        targets: &[usize],
    ) -> Option<Vec<Action>> {
        let key = |k: &str| format!("timeline[{i}].{k}");
        if kind != ActionKind::AddToxic && s.toxic.is_some() {
            let reason = format!("only add_toxic takes a toxic, not {}", kind.as_str());
            self.error(key("toxic"), None, reason);
        }
        if kind != ActionKind::RemoveToxic && s.name.is_some() {
            let reason = format!(
                "only remove_toxic takes a toxic name, not {}",
                kind.as_str()
            );
            self.error(key("name"), None, reason);
        }
        let one = |member: usize| -> Option<Action> {
            Some(match kind {
                ActionKind::Disable => Action::Disable { member },
                ActionKind::Enable => Action::Enable { member },
                ActionKind::Kill => Action::Kill { member },
                ActionKind::Restart => Action::Restart { member },
                ActionKind::Drain => Action::Drain { member },
                ActionKind::Undrain => Action::Undrain { member },
                _ => return None,
            })
        };
        match kind {
            ActionKind::Reset => Some(vec![Action::Reset]),
            ActionKind::Reload => Some(vec![Action::Reload]),
            ActionKind::AddToxic => {
                let Some(raw) = &s.toxic else {
                    let reason =
                        "missing; add_toxic needs toxic = { type = ..., attributes = {...} }";
                    self.error(key("toxic"), None, reason);
                    return None;
                };
                let toxic = self.toxic(&key("toxic"), raw)?;
                let add = |&member: &usize| Action::AddToxic {
                    member,
                    toxic: toxic.clone(),
                };
                Some(targets.iter().map(add).collect())
            }
            ActionKind::RemoveToxic => {
                let Some(name) = &s.name else {
                    let reason =
                        "missing; remove_toxic needs the toxic's name (default: TYPE_STREAM)";
                    self.error(key("name"), None, reason);
                    return None;
                };
                let remove = |&member: &usize| Action::RemoveToxic {
                    member,
                    name: name.clone(),
                };
                Some(targets.iter().map(remove).collect())
            }
            _ => targets.iter().map(|&m| one(m)).collect(),
        }
    }

    /// `at`, then every `every` up to `until` (inclusive).
    fn times(&mut self, i: usize, s: &StepFile, at: Duration, end: Duration) -> Vec<Duration> {
        match (s.every.map(|d| d.0), s.until.map(|d| d.0)) {
            (None, None) => vec![at],
            (Some(every), Some(until)) => {
                if every.is_zero() {
                    let key = format!("timeline[{i}].every");
                    self.error(key, Some(human(every)), "must be above 0");
                    return vec![at];
                }
                if until < at || until > end {
                    let reason = format!(
                        "must be between at ({}) and the end of traffic ({})",
                        human(at),
                        human(end)
                    );
                    self.error(format!("timeline[{i}].until"), Some(human(until)), reason);
                    return vec![at];
                }
                let mut out = Vec::new();
                let mut t = at;
                while t <= until && out.len() <= MAX_STEPS {
                    out.push(t);
                    t += every;
                }
                out
            }
            _ => {
                let reason = "every and until go together: repeat every D up to until";
                self.error(format!("timeline[{i}].every"), None, reason);
                vec![at]
            }
        }
    }

    fn toxic(&mut self, key: &str, t: &ToxicFile) -> Option<Toxic> {
        let valid = TOXIC_TYPES.join(", ");
        let Some(kind) = t.kind.clone() else {
            self.error(
                format!("{key}.type"),
                None,
                format!("missing; one of {valid}"),
            );
            return None;
        };
        if !TOXIC_TYPES.contains(&kind.as_str()) {
            let reason = format!("unknown toxic type (valid: {valid})");
            self.error(format!("{key}.type"), Some(quote(&kind)), reason);
            return None;
        }
        let stream = t.stream.unwrap_or_default();
        let toxicity = t.toxicity.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&toxicity) {
            let value = Some(toxicity.to_string());
            self.error(
                format!("{key}.toxicity"),
                value,
                "must be between 0.0 and 1.0",
            );
        }
        let mut attributes = serde_json::Map::new();
        for (name, value) in &t.attributes {
            match value {
                // Extension: targeting by source, `clients = ["127.0.0.2/32"]`.
                Value::Array(list) if name == "clients" => {
                    if let Some(list) = self.clients(&format!("{key}.attributes.clients"), list) {
                        attributes.insert(name.clone(), list);
                    }
                }
                Value::Integer(n) if *n >= 0 => {
                    attributes.insert(name.clone(), serde_json::Value::from(*n));
                }
                other => {
                    let reason = "expected a non-negative integer (Toxiproxy attributes are ms, KB/s or bytes)";
                    let path = format!("{key}.attributes.{name}");
                    self.error(path, Some(other.to_string()), reason);
                }
            }
        }
        let targeted = ["clients", "first"]
            .iter()
            .find(|k| t.attributes.contains_key(**k));
        if let (true, Some(k)) = (kind == "connect_timeout", targeted) {
            let reason = "connect_timeout acts on the listener before any connection exists, so it cannot be targeted";
            let value = t.attributes.get(*k).map(ToString::to_string);
            self.error(format!("{key}.attributes.{k}"), value, reason);
        }
        let name = t.name.clone();
        Some(Toxic {
            name: name.unwrap_or_else(|| format!("{kind}_{}", stream.as_str())),
            kind,
            stream,
            toxicity,
            attributes,
        })
    }

    /// `clients`: address blocks (`"127.0.0.2/32"`, or a bare address for one host).
    fn clients(&mut self, path: &str, list: &[Value]) -> Option<serde_json::Value> {
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let ok = item.as_str().filter(|s| is_cidr(s));
            match ok {
                Some(s) => out.push(serde_json::Value::from(s)),
                None => {
                    let reason = "expected an address block like \"127.0.0.2/32\"";
                    self.error(format!("{path}[{i}]"), Some(item.to_string()), reason);
                }
            }
        }
        (out.len() == list.len()).then_some(serde_json::Value::Array(out))
    }

    /// A remove_toxic must name a toxic some add_toxic puts on that member.
    fn removals_match(&mut self, steps: &[Step], members: &[MemberSpec]) {
        for step in steps {
            let Action::RemoveToxic { member, name } = &step.action else {
                continue;
            };
            let added = steps.iter().any(|s| {
                matches!(&s.action, Action::AddToxic { member: m, toxic }
                    if m == member && &toxic.name == name)
            });
            if !added {
                let who = members.get(*member).map_or("?", |m| m.name.as_str());
                let reason = format!("remove_toxic on {who}: no add_toxic of that name on it");
                self.error("timeline", Some(quote(name)), reason);
            }
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    let Ok(addr) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    prefix.is_empty() || prefix.parse::<u8>().is_ok_and(|p| p <= max)
}
