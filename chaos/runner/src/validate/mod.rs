//! Scenario text to [`Scenario`]: parse, apply defaults, check ranges and cross references.
//!
//! Every problem found is reported, each as `FILE: key.path = value: reason`, in sluice's
//! config error style (and type). The embedded sluice config is validated by sluice itself,
//! with placeholder member addresses, so a bad `[sluice]` table fails before anything starts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ::sluice::config::{ConfigError, ConfigErrors};
use toml::Value;

use super::parse;
use super::scenario::{MemberSpec, Scenario, Traffic};
use super::schema::{MemberFile, TrafficFile};
use super::wire::ServerKind;

mod bounds;
mod sluice;
mod target;
mod timeline;
mod user;

const MAX_PAYLOAD: i64 = 16 << 20;
/// Each member is a server, a proxy and a health task; a drill needs a handful.
const MAX_MEMBERS: usize = 64;

pub(super) fn scenario(text: &str, path: &Path) -> Result<Scenario, ConfigErrors> {
    let file = parse::file_name(path);
    let raw = parse::parse(text, &file)?;
    let mut v = Validator {
        file: file.clone(),
        errors: Vec::new(),
    };
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = raw.name.or(stem).unwrap_or_else(|| "drill".to_string());
    let members = v.members(&raw.members);
    let members_ok = v.errors.is_empty();
    let traffic = v.traffic(raw.traffic.as_ref());
    v.client_first(&traffic, &members);
    let timeline = v.timeline(&raw.timeline, &members, traffic.duration);
    let target = raw.target.as_ref().and_then(|t| v.target(t, path));
    let sluice = if raw.target.is_some() {
        v.no_sluice_with_target(raw.sluice.is_some(), raw.sluice_config.is_some());
        None
    } else {
        v.sluice(raw.sluice, raw.sluice_config.as_deref(), path)
    };
    v.proxies(&members, raw.target.is_some());
    let mut bounds = v.bounds(&raw.bounds, &members, &timeline);
    v.user_rules(&members, &raw.timeline, traffic.command.as_ref(), &bounds);
    if let Some(t) = &target {
        v.target_can_measure(t, traffic.command.is_some(), &bounds);
    }
    // sluice reports its own problems too, unless broken members would only echo ours.
    if let Some(sluice) = &sluice
        && members_ok
    {
        // Placeholder addresses: the real ones are the proxies, known only at run time.
        let addrs: Vec<SocketAddr> = (1..=members.len())
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p as u16)))
            .collect();
        match sluice.config(&members, &addrs, 0) {
            Ok(config) => v.explained(&mut bounds, &config, &sluice.pool),
            Err(e) => v.errors.extend(e.0),
        }
    }
    let runnable = sluice.is_some() || target.is_some();
    match (v.errors.is_empty(), runnable) {
        (true, true) => Ok(Scenario {
            name,
            description: raw.description,
            file,
            sluice,
            target,
            members,
            traffic,
            timeline,
            bounds,
        }),
        _ => Err(ConfigErrors(v.errors)),
    }
}

pub(super) struct Validator {
    file: String,
    errors: Vec<ConfigError>,
}

impl Validator {
    pub(super) fn error(
        &mut self,
        path: impl Into<String>,
        value: Option<String>,
        reason: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::at_key(&self.file, path, value, reason));
    }

    fn members(&mut self, raw: &[MemberFile]) -> Vec<MemberSpec> {
        if raw.is_empty() {
            self.error(
                "members",
                None,
                "at least one [[members]] entry is required",
            );
        }
        if raw.len() > MAX_MEMBERS {
            let reason = format!("{} members; a drill takes at most {MAX_MEMBERS}", raw.len());
            self.error("members", None, reason);
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, m) in raw.iter().enumerate() {
            let at = |k: &str| format!("members[{i}].{k}");
            let valid_name = !m.name.is_empty()
                && m.name.len() <= 32
                && m.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                self.error(
                    at("name"),
                    Some(quote(&m.name)),
                    "must be 1-32 of A-Z a-z 0-9 - _ (it names a Toxiproxy proxy)",
                );
            } else if !seen.insert(m.name.clone()) {
                self.error(at("name"), Some(quote(&m.name)), "duplicate member name");
            }
            let tier = m.tier.unwrap_or(0);
            if !(0..=7).contains(&tier) {
                self.error(
                    at("tier"),
                    Some(tier.to_string()),
                    "must be between 0 and 7",
                );
            }
            let weight = m.weight.unwrap_or(1);
            if !(1..=i64::from(::sluice::config::MAX_WEIGHT)).contains(&weight) {
                self.error(
                    at("weight"),
                    Some(weight.to_string()),
                    "must be between 1 and 256",
                );
            }
            let source = self.member_source(i, m);
            let proxy = self.proxy_addr(i, m);
            out.push(MemberSpec {
                name: m.name.clone(),
                server: m.server.unwrap_or_default(),
                source,
                proxy,
                tier: tier.clamp(0, 7) as u8,
                weight: weight.clamp(1, 256) as u32,
            });
        }
        if !raw.is_empty() && out.iter().all(|m| m.tier != 0) {
            self.error("members", None, "no member has tier 0 (the primaries)");
        }
        out
    }

    fn traffic(&mut self, raw: Option<&TrafficFile>) -> Traffic {
        let Some(t) = raw else {
            self.error("traffic", None, "a [traffic] table is required");
            return Traffic {
                command: None,
                clients: 1,
                rate: 1.0,
                payload_min: 0,
                payload_max: 0,
                duration: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                client_first: false,
            };
        };
        let command = self.command_traffic(t);
        let clients = t.clients.unwrap_or(8);
        if !(1..=1024).contains(&clients) {
            self.error(
                "traffic.clients",
                Some(clients.to_string()),
                "must be between 1 and 1024",
            );
        }
        let rate = t.rate.unwrap_or(50.0);
        if !(rate > 0.0 && rate <= 10_000.0) {
            self.error(
                "traffic.rate",
                Some(rate.to_string()),
                "must be above 0 and at most 10000 connections per second",
            );
        }
        let payload = t.payload.unwrap_or(4096);
        if !(0..=MAX_PAYLOAD).contains(&payload) {
            self.error(
                "traffic.payload",
                Some(payload.to_string()),
                "must be between 0 and 16777216 bytes",
            );
        }
        let payload_max = t.payload_max.unwrap_or(payload);
        if payload_max < payload || payload_max > MAX_PAYLOAD {
            self.error(
                "traffic.payload_max",
                Some(payload_max.to_string()),
                format!("must be between payload ({payload}) and 16777216 bytes"),
            );
        }
        let duration = t.duration.map_or(Duration::from_secs(10), |d| d.0);
        if duration < Duration::from_millis(100) || duration > Duration::from_secs(600) {
            self.error(
                "traffic.duration",
                Some(human(duration)),
                "must be between 100ms and 10m",
            );
        }
        let timeout = t.timeout.map_or(Duration::from_secs(5), |d| d.0);
        if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(300) {
            self.error(
                "traffic.timeout",
                Some(human(timeout)),
                "must be between 10ms and 5m",
            );
        }
        Traffic {
            command,
            clients: clients.clamp(1, 1024) as usize,
            rate: rate.clamp(0.001, 10_000.0),
            payload_min: payload.clamp(0, MAX_PAYLOAD) as u64,
            payload_max: payload_max.clamp(0, MAX_PAYLOAD) as u64,
            duration,
            timeout,
            client_first: t.client_first.unwrap_or(false),
        }
    }

    /// `traffic.client_first` sends payload bytes before the banner: only an echo member reads
    /// them as its protocol says (a sink expects its length first).
    fn client_first(&mut self, traffic: &Traffic, members: &[MemberSpec]) {
        if !traffic.client_first {
            return;
        }
        if let Some(m) = members.iter().find(|m| m.server != ServerKind::Echo) {
            self.error(
                "traffic.client_first",
                Some("true".into()),
                format!("needs echo members (member {} is not)", m.name),
            );
        }
        if traffic.payload_min == 0 {
            self.error(
                "traffic.client_first",
                Some("true".into()),
                "needs traffic.payload of at least 1 byte",
            );
        }
    }
}

pub(super) fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

pub(super) fn human(d: Duration) -> String {
    quote(&humantime::format_duration(d).to_string())
}
