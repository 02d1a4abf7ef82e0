//! A soak file: a drill scenario (sluice config, members, traffic) without `[[timeline]]` and
//! `[bounds]`, plus a `[soak]` table saying how to draw the faults and what to check.
//!
//! The scenario part is validated by the drill's own validator, so it reads and fails the same
//! way; this module owns `[soak]`. Every problem in either part is reported at once, as
//! `FILE: key.path = value: reason`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Table;

use crate::parse;
use crate::scenario::Scenario;
use crate::validate::{human, quote};
use sluice::config::schema::HumanDuration;
use sluice::config::{ConfigError, ConfigErrors};

/// Defaults: a short warm-up, a fault every 1-4 s lasting 1-8 s.
const WARMUP: Duration = Duration::from_secs(5);
const FAULT_EVERY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(4));
const FAULT_LENGTH: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(8));
const SETTLE: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept, at most: `sample_every` may not slice the run finer than this.
const MAX_SAMPLES: u128 = 1000;

/// A soak ready to run.
#[derive(Clone, Debug)]
pub struct Soak {
    /// The drill part; its timeline is empty (the soak draws one) and its bounds unset.
    pub scenario: Scenario,
    pub plan: Plan,
    pub bounds: SoakBounds,
}

/// How the faults are drawn, and the phases around the traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Clean traffic before the starting fd and RSS are read (not counted).
    pub warmup: Duration,
    /// The gap between two fault starts, drawn from this range (inclusive).
    pub fault_every: (Duration, Duration),
    /// How long a fault lasts, drawn from this range; cut at the end of traffic.
    pub fault_length: (Duration, Duration),
    /// The kinds drawn from, equally likely.
    pub faults: Vec<FaultKind>,
    /// Members faulted at once, at most; a member carries one fault at a time.
    pub max_faulted: usize,
    /// After traffic, how long sluice's fds may take to come back before they are judged.
    pub settle: Duration,
    /// How often fds, RSS and client counts are sampled during the run.
    pub sample_every: Duration,
}

/// A fault the soak can put on a member: a Toxiproxy toxic, or `down` (proxy disabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Latency,
    Bandwidth,
    SlowClose,
    Timeout,
    ResetPeer,
    LimitData,
    Slicer,
    Down,
}

impl FaultKind {
    pub const ALL: [Self; 8] = [
        Self::Latency,
        Self::Bandwidth,
        Self::SlowClose,
        Self::Timeout,
        Self::ResetPeer,
        Self::LimitData,
        Self::Slicer,
        Self::Down,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Bandwidth => "bandwidth",
            Self::SlowClose => "slow_close",
            Self::Timeout => "timeout",
            Self::ResetPeer => "reset_peer",
            Self::LimitData => "limit_data",
            Self::Slicer => "slicer",
            Self::Down => "down",
        }
    }
}

/// What a soak must meet; `None` is not checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoakBounds {
    /// At least this many connections started (the run kept its rate).
    pub min_connections: Option<u64>,
    /// No client got complete but wrong bytes, and sluice's access log agrees with every
    /// verified client on the bytes moved each way.
    pub all_bytes_intact: bool,
    /// No client took longer than `traffic.timeout` plus this.
    pub max_wait_slack: Option<Duration>,
    /// Open fds (less pooled splice pipes) after the run within this many of the start.
    pub fd_growth: Option<u64>,
    /// RSS after the run within this of the start.
    pub rss_growth: Option<RssGrowth>,
    /// Failed clients / all clients at most this.
    pub max_client_failure_ratio: Option<f64>,
}

/// The RSS allowance: the larger of an absolute and a relative one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RssGrowth {
    pub mib: f64,
    pub ratio: f64,
}

impl RssGrowth {
    /// Bytes allowed for a run that started at `before` bytes.
    pub fn allowed(self, before: u64) -> u64 {
        let abs = self.mib * 1024.0 * 1024.0;
        abs.max(self.ratio * before as f64) as u64
    }
}

// === file types ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SoakTable {
    soak: SoakFile,
}

/// `[soak]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SoakFile {
    warmup: Option<HumanDuration>,
    fault_every: Option<Vec<HumanDuration>>,
    fault_length: Option<Vec<HumanDuration>>,
    faults: Option<Vec<FaultKind>>,
    max_faulted: Option<i64>,
    settle: Option<HumanDuration>,
    sample_every: Option<HumanDuration>,
    #[serde(default)]
    bounds: BoundsFile,
}

/// `[soak.bounds]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundsFile {
    min_connections: Option<i64>,
    all_bytes_intact: Option<bool>,
    max_wait_slack: Option<HumanDuration>,
    fd_growth: Option<i64>,
    rss_growth_mib: Option<f64>,
    rss_growth_ratio: Option<f64>,
    max_client_failure_ratio: Option<f64>,
}

// === impl Soak ===

impl Soak {
    /// Reads and validates a soak file; every problem is reported.
    pub fn from_file(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::at_file(&path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Self::from_str(&text, path)
    }

    /// Validates soak text; `path` names it in messages and anchors `sluice_config`. Every
    /// problem about a key says where the key is.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, ConfigErrors> {
        Self::validate(text, path).map_err(|e| e.located_in(text))
    }

    fn validate(text: &str, path: &Path) -> Result<Self, ConfigErrors> {
        let file = parse::file_name(path);
        let mut rest = parse::table(text, &file)?;
        let mut errors = Vec::new();
        let mut error = |key: &str, reason: &str| {
            errors.push(ConfigError::at_key(&file, key, None, reason));
        };
        let soak = rest.remove("soak");
        if rest.remove("timeline").is_some() {
            error(
                "timeline",
                "a soak draws its faults from the seed ([soak]); remove [[timeline]]",
            );
        }
        if rest.remove("bounds").is_some() {
            error("bounds", "a soak's bounds go in [soak.bounds]");
        }
        let raw = match soak {
            Some(soak) => {
                let mut t = Table::new();
                t.insert("soak".into(), soak);
                match parse::typed::<SoakTable>(t, &file) {
                    Ok(t) => Some(t.soak),
                    Err(e) => {
                        errors.extend(e.0);
                        None
                    }
                }
            }
            None => {
                let reason = "missing; a soak file has a [soak] table (see docs/CHAOS.md, Soak)";
                error("soak", reason);
                None
            }
        };
        let scenario = toml::to_string(&rest)
            .map_err(|e| ConfigError::at_file(&file, format!("cannot render: {e}")).into())
            .and_then(|text| Scenario::from_str(&text, path));
        let scenario = match scenario {
            Ok(s) => Some(s),
            Err(e) => {
                errors.extend(e.0);
                None
            }
        };
        let mut v = Checker {
            file: file.clone(),
            errors,
        };
        let checked = match (&raw, &scenario) {
            (Some(raw), Some(s)) => Some(v.soak(raw, s)),
            _ => None,
        };
        match (v.errors.is_empty(), scenario, checked) {
            (true, Some(scenario), Some((plan, bounds))) => Ok(Self {
                scenario,
                plan,
                bounds,
            }),
            _ => Err(ConfigErrors(v.errors)),
        }
    }
}

struct Checker {
    file: String,
    errors: Vec<ConfigError>,
}

impl Checker {
    fn error(&mut self, key: &str, value: Option<String>, reason: impl Into<String>) {
        self.errors
            .push(ConfigError::at_key(&self.file, key, value, reason));
    }

    fn soak(&mut self, raw: &SoakFile, s: &Scenario) -> (Plan, SoakBounds) {
        let duration = s.traffic.duration;
        let warmup = raw.warmup.map_or(WARMUP, |d| d.0);
        if warmup > Duration::from_secs(600) {
            self.error("soak.warmup", Some(human(warmup)), "must be at most 10m");
        }
        let fault_every = self.range("soak.fault_every", raw.fault_every.as_deref(), FAULT_EVERY);
        let fault_length = self.range(
            "soak.fault_length",
            raw.fault_length.as_deref(),
            FAULT_LENGTH,
        );
        if fault_length.0 > duration {
            let reason = format!(
                "the shortest fault is longer than the traffic (traffic.duration = {})",
                human(duration)
            );
            self.error("soak.fault_length", Some(human(fault_length.0)), reason);
        }
        let faults = raw
            .faults
            .clone()
            .unwrap_or_else(|| FaultKind::ALL.to_vec());
        if faults.is_empty() {
            self.error("soak.faults", None, "must name at least one fault kind");
        }
        for (i, k) in faults.iter().enumerate() {
            if faults[..i].contains(k) {
                self.error("soak.faults", Some(quote(k.as_str())), "listed twice");
            }
        }
        let members = s.members.len();
        let max_faulted = raw
            .max_faulted
            .unwrap_or(members.saturating_sub(1).max(1) as i64);
        if !(1..=members as i64).contains(&max_faulted) {
            let reason = format!("must be between 1 and the number of members ({members})");
            self.error("soak.max_faulted", Some(max_faulted.to_string()), reason);
        }
        let settle = raw.settle.map_or(SETTLE, |d| d.0);
        if settle < Duration::from_secs(1) || settle > Duration::from_secs(300) {
            self.error(
                "soak.settle",
                Some(human(settle)),
                "must be between 1s and 5m",
            );
        }
        let sample_every = raw.sample_every.map_or(SAMPLE_EVERY, |d| d.0);
        if sample_every.is_zero() || duration.as_nanos() / sample_every.as_nanos() > MAX_SAMPLES {
            let reason =
                format!("must be above 0 and slice the traffic into at most {MAX_SAMPLES} samples");
            self.error("soak.sample_every", Some(human(sample_every)), reason);
        }
        let plan = Plan {
            warmup,
            fault_every,
            fault_length,
            faults,
            max_faulted: max_faulted.clamp(1, members.max(1) as i64) as usize,
            settle,
            sample_every: sample_every.max(Duration::from_millis(1)),
        };
        (plan, self.bounds(&raw.bounds))
    }

    /// `["1s", "4s"]`: two durations, the first above 0 and at most the second.
    fn range(
        &mut self,
        key: &str,
        raw: Option<&[HumanDuration]>,
        default: (Duration, Duration),
    ) -> (Duration, Duration) {
        let Some(raw) = raw else { return default };
        let shown = || {
            let parts: Vec<String> = raw.iter().map(|d| human(d.0)).collect();
            Some(format!("[{}]", parts.join(", ")))
        };
        match raw {
            [min, max] if !min.0.is_zero() && min.0 <= max.0 => (min.0, max.0),
            [_, _] => {
                self.error(key, shown(), "must be [min, max] with 0 < min <= max");
                default
            }
            _ => {
                self.error(key, shown(), "must be two durations, [min, max]");
                default
            }
        }
    }

    fn bounds(&mut self, b: &BoundsFile) -> SoakBounds {
        let count = |v: &mut Self, key: &str, n: Option<i64>| {
            n.and_then(|n| {
                u64::try_from(n).ok().or_else(|| {
                    v.error(
                        &format!("soak.bounds.{key}"),
                        Some(n.to_string()),
                        "must be 0 or more",
                    );
                    None
                })
            })
        };
        let ratio = |v: &mut Self, key: &str, r: Option<f64>, max: f64| {
            r.filter(|r| {
                let ok = (0.0..=max).contains(r);
                if !ok {
                    let reason = format!("must be between 0 and {max}");
                    v.error(&format!("soak.bounds.{key}"), Some(r.to_string()), reason);
                }
                ok
            })
        };
        let mib = ratio(self, "rss_growth_mib", b.rss_growth_mib, 1_048_576.0);
        let rss_ratio = ratio(self, "rss_growth_ratio", b.rss_growth_ratio, 100.0);
        let rss_growth = (mib.is_some() || rss_ratio.is_some()).then(|| RssGrowth {
            mib: mib.unwrap_or(0.0),
            ratio: rss_ratio.unwrap_or(0.0),
        });
        SoakBounds {
            min_connections: count(self, "min_connections", b.min_connections),
            all_bytes_intact: b.all_bytes_intact.unwrap_or(false),
            max_wait_slack: b.max_wait_slack.map(|d| d.0),
            fd_growth: count(self, "fd_growth", b.fd_growth),
            rss_growth,
            max_client_failure_ratio: ratio(
                self,
                "max_client_failure_ratio",
                b.max_client_failure_ratio,
                1.0,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [sluice.routes.app]
        pool = "app"
        [sluice.pools.app]
        [[members]]
        name = "a"
        [[members]]
        name = "b"
        [traffic]
        duration = "20s"
    "#;

    fn errors(extra: &str) -> Vec<String> {
        let text = format!("{BASE}\n{extra}");
        match Soak::from_str(&text, Path::new("s.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.unlocated()).collect(),
        }
    }

    #[test]
    fn defaults_fill_an_empty_soak_table() {
        let text = format!("{BASE}\n[soak]\n");
        let soak = Soak::from_str(&text, Path::new("s.toml")).unwrap();
        assert_eq!(soak.plan.faults, FaultKind::ALL);
        assert_eq!(soak.plan.max_faulted, 1, "one member always clean");
        assert_eq!(soak.plan.fault_every, FAULT_EVERY);
        assert!(soak.scenario.timeline.is_empty());
        assert_eq!(soak.bounds, SoakBounds::default());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let got = errors(
            "[[timeline]]\nat = \"1s\"\naction = \"reset\"\n\
             [soak]\nfault_every = [\"4s\", \"1s\"]\nmax_faulted = 3\n\
             [soak.bounds]\nmax_client_failure_ratio = 2.0\n",
        );
        let want = [
            "s.toml: timeline: a soak draws its faults from the seed ([soak]); remove [[timeline]]",
            "s.toml: soak.fault_every = [\"4s\", \"1s\"]: must be [min, max] with 0 < min <= max",
            "s.toml: soak.max_faulted = 3: must be between 1 and the number of members (2)",
            "s.toml: soak.bounds.max_client_failure_ratio = 2: must be between 0 and 1",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn unknown_keys_and_kinds_name_the_key() {
        let got = errors("[soak]\nfaults = [\"latency\", \"lag\"]\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("s.toml: soak.faults[1] = \"lag\": unknown value"),
            "{got:?}"
        );
        let got = errors("[soak]\n[soak.bounds]\nfd_grwth = 3\n");
        assert_eq!(
            got,
            ["s.toml: soak.bounds.fd_grwth = 3: unknown key; did you mean fd_growth?"]
        );
        let got = errors("");
        assert_eq!(
            got,
            ["s.toml: soak: missing; a soak file has a [soak] table (see docs/CHAOS.md, Soak)"]
        );
    }

    #[test]
    fn rss_allowance_is_the_larger_of_the_two() {
        let g = RssGrowth {
            mib: 20.0,
            ratio: 0.25,
        };
        assert_eq!(g.allowed(40 << 20), 20 << 20);
        assert_eq!(g.allowed(200 << 20), 50 << 20);
    }
}
