//! A scenario file as serde sees it: one struct per TOML table, every one denying unknown keys.
//!
//! Optional keys are `Option` here and get their defaults in `scenario`, which also owns every
//! range and cross-reference rule, so a file with several problems reports them all. The
//! embedded sluice config stays a raw TOML table: sluice's own validator reads it.

use serde::Deserialize;
use sluice::config::schema::HumanDuration;

use super::wire::ServerKind;

/// The whole scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Defaults to the file stem.
    pub name: Option<String>,
    pub description: Option<String>,
    /// The sluice config inline (`[sluice]`, `[sluice.routes.X]`, `[sluice.pools.X]`).
    pub sluice: Option<toml::Table>,
    /// Or a sluice config file, relative to the scenario file.
    pub sluice_config: Option<String>,
    /// A sluice already running: drilled through its route and admin API, not started.
    pub target: Option<TargetFile>,
    #[serde(default)]
    pub members: Vec<MemberFile>,
    pub traffic: Option<TrafficFile>,
    #[serde(default)]
    pub timeline: Vec<StepFile>,
    #[serde(default)]
    pub bounds: BoundsFile,
}

/// `[[members]]`: one upstream behind its own fault proxy: a built-in server (`server`), the
/// user's running upstream (`addr`), or a command the drill starts (`start`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    pub name: String,
    pub server: Option<ServerKind>,
    pub addr: Option<String>,
    pub start: Option<String>,
    /// With `[target]`: where this member's fault proxy listens (the running sluice's pool
    /// lists this address).
    pub proxy: Option<String>,
    pub tier: Option<i64>,
    pub weight: Option<i64>,
}

/// `[target]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    /// The route under drill.
    pub listen: Option<String>,
    /// Its admin API: member and breaker states come from `/status`.
    pub admin: Option<String>,
    /// The pool in `/status`; default: the pool of the route listening on `listen`.
    pub pool: Option<String>,
    /// Its access log file (`--log-format json`), relative to the scenario file: which member
    /// served each client, and redials.
    pub access_log: Option<String>,
}

/// `[traffic]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficFile {
    /// The user's workload: a shell command, one run = one client.
    pub command: Option<String>,
    pub every: Option<HumanDuration>,
    pub clients: Option<i64>,
    pub rate: Option<f64>,
    pub payload: Option<i64>,
    pub payload_max: Option<i64>,
    pub duration: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub client_first: Option<bool>,
}

/// `[[timeline]]`: one fault or restore, possibly repeated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    pub at: Option<HumanDuration>,
    pub action: Option<ActionKind>,
    pub member: Option<String>,
    pub members: Option<Vec<String>>,
    pub toxic: Option<ToxicFile>,
    /// The toxic `remove_toxic` removes.
    pub name: Option<String>,
    pub every: Option<HumanDuration>,
    pub until: Option<HumanDuration>,
}

/// What a timeline step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    AddToxic,
    RemoveToxic,
    Disable,
    Enable,
    Kill,
    Restart,
    Reset,
    /// Drain the member in sluice (admin API `POST .../drain`, or the pool in process).
    Drain,
    /// Undo a drain (admin API `POST .../enable`).
    Undrain,
    /// Reload sluice: `POST /reload` of a `[target]`, or re-apply the config in process.
    Reload,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddToxic => "add_toxic",
            Self::RemoveToxic => "remove_toxic",
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Kill => "kill",
            Self::Restart => "restart",
            Self::Reset => "reset",
            Self::Drain => "drain",
            Self::Undrain => "undrain",
            Self::Reload => "reload",
        }
    }
}

/// `toxic = { type = "latency", stream = "downstream", attributes = { latency = 200 } }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToxicFile {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub stream: Option<Stream>,
    pub toxicity: Option<f64>,
    #[serde(default)]
    pub attributes: toml::Table,
}

/// Which direction a toxic acts on, in Toxiproxy's words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Client (sluice) to member.
    Upstream,
    /// Member to client (sluice).
    #[default]
    Downstream,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

/// `[bounds]`: every key optional; each one present becomes a verdict.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundsFile {
    /// A duration or `"explain"`; read by `validate`, which reports a bad one with the rest.
    pub ejected_within: Option<String>,
    pub returns_within: Option<String>,
    pub backup_serves_within: Option<String>,
    pub max_client_failure_ratio: Option<f64>,
    pub failed_after_ejection: Option<i64>,
    /// Clients sluice itself turned away: connect refused, or closed before any member spoke.
    pub max_refused: Option<i64>,
    pub max_transitions: Option<i64>,
    pub all_bytes_intact: Option<bool>,
    pub load_share_of_slow_member_below: Option<f64>,
}
