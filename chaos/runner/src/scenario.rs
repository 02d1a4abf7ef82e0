//! A validated scenario: members, traffic, timeline and bounds, plus the sluice config under
//! test, ready to be bound once the runner knows its members' proxy addresses.
//!
//! Loading reports problems as sluice's config errors do (`FILE: key.path = value: reason`,
//! every one found), through the same [`ConfigError`] type. `validate` owns the rules; this
//! module owns the types and turns the embedded sluice config into a runnable [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::config::{self, Config, ConfigError, ConfigErrors, Location};
use toml::{Table, Value};

use super::schema::{ActionKind, Stream};
use super::wire::ServerKind;

/// A scenario ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// The file name, for messages.
    pub file: String,
    /// The sluice the drill starts in-process; `None` with `target`.
    pub sluice: Option<SluiceUnderTest>,
    /// A running sluice to drill instead.
    pub target: Option<Target>,
    pub members: Vec<MemberSpec>,
    pub traffic: Traffic,
    /// Every step, repeats expanded, in time order.
    pub timeline: Vec<Step>,
    pub bounds: Bounds,
}

/// One member: a server the runner starts on 127.0.0.1:0, behind its own proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: String,
    /// What a built-in member serves (and what built-in traffic expects of it).
    pub server: ServerKind,
    pub source: MemberSource,
    /// With `[target]`: the fixed address of this member's proxy.
    pub proxy: Option<SocketAddr>,
    /// 0 = primary; sluice's `members[].tier`.
    pub tier: u8,
    /// sluice's `members[].weight`.
    pub weight: u32,
}

/// The client load.
/// Where a member's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberSource {
    /// A server of the runner's own (`server = "echo" | "sink"`).
    Builtin,
    /// The user's running upstream; faults go through its proxy only.
    Addr(SocketAddr),
    /// A command (`{port}` substituted) the runner starts, waits for and stops by PID.
    Start(String),
}

impl MemberSource {
    pub fn is_builtin(&self) -> bool {
        *self == Self::Builtin
    }

    /// `echo`, `addr 127.0.0.1:6379`, `start "redis-server --port {port}"`.
    pub fn describe(&self, server: ServerKind) -> String {
        match self {
            Self::Builtin => server.as_str().to_string(),
            Self::Addr(addr) => format!("addr {addr}"),
            Self::Start(command) => format!("start {command:?}"),
        }
    }
}

/// `[target]`: a sluice that is already running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub pool: Option<String>,
    /// The running sluice's access log, followed during the drill.
    pub access_log: Option<PathBuf>,
}

/// `[traffic] command`: the user's workload.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandTraffic {
    /// Run through `sh -c` with `{host}`, `{port}` and `{listen}` substituted.
    pub command: String,
    /// Start a run this often until the traffic's duration; `None`: one run.
    pub every: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    /// The user's command instead of the built-in clients.
    pub command: Option<CommandTraffic>,
    /// Connections open at once, at most; 1 runs clients strictly one after another.
    pub clients: usize,
    /// New connections per second (the schedule; fewer when `clients` are all busy).
    pub rate: f64,
    /// Payload bytes per connection, drawn uniformly from this range (inclusive).
    pub payload_min: u64,
    pub payload_max: u64,
    /// How long new connections start.
    pub duration: Duration,
    /// Per connection, from connect to the last byte checked.
    pub timeout: Duration,
    /// Each client sends the start of its payload before reading the banner, as a client of a
    /// client-first protocol (HTTP, Redis) would: what sluice's `silent_after_request` watches.
    /// Echo members only.
    pub client_first: bool,
}

/// One timeline entry at its planned offset from the start of traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub action: Action,
}

/// What a step does; `member` is an index into [`Scenario::members`].
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    AddToxic {
        member: usize,
        toxic: Toxic,
    },
    RemoveToxic {
        member: usize,
        name: String,
    },
    /// The member's proxy stops listening and drops its connections (Toxiproxy "down").
    Disable {
        member: usize,
    },
    Enable {
        member: usize,
    },
    /// The member's server stops: listener closed, connections dropped.
    Kill {
        member: usize,
    },
    Restart {
        member: usize,
    },
    /// Toxiproxy's `/reset`: every proxy enabled, every toxic removed.
    Reset,
    /// sluice stops picking the member for new connections (operator drain).
    Drain {
        member: usize,
    },
    /// The drain lifted.
    Undrain {
        member: usize,
    },
    /// sluice reloads its config.
    Reload,
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::AddToxic { .. } => ActionKind::AddToxic,
            Self::RemoveToxic { .. } => ActionKind::RemoveToxic,
            Self::Disable { .. } => ActionKind::Disable,
            Self::Enable { .. } => ActionKind::Enable,
            Self::Kill { .. } => ActionKind::Kill,
            Self::Restart { .. } => ActionKind::Restart,
            Self::Reset => ActionKind::Reset,
            Self::Drain { .. } => ActionKind::Drain,
            Self::Undrain { .. } => ActionKind::Undrain,
            Self::Reload => ActionKind::Reload,
        }
    }

    pub fn member(&self) -> Option<usize> {
        match self {
            Self::AddToxic { member, .. }
            | Self::RemoveToxic { member, .. }
            | Self::Disable { member }
            | Self::Enable { member }
            | Self::Kill { member }
            | Self::Restart { member }
            | Self::Drain { member }
            | Self::Undrain { member } => Some(*member),
            Self::Reset | Self::Reload => None,
        }
    }

    /// `kill b`, `add_toxic b latency_downstream (latency {"jitter":50,"latency":200})`.
    pub fn describe(&self, members: &[MemberSpec]) -> String {
        let name = |i: &usize| members.get(*i).map_or("?", |m| m.name.as_str());
        match self {
            Self::AddToxic { member, toxic } => format!(
                "add_toxic {} {} ({} {}, {})",
                name(member),
                toxic.name,
                toxic.kind,
                serde_json::Value::Object(toxic.attributes.clone()),
                toxic.stream.as_str()
            ),
            Self::RemoveToxic { member, name: t } => format!("remove_toxic {} {t}", name(member)),
            Self::Reset => "reset (all proxies enabled, all toxics removed)".to_string(),
            Self::Reload => "reload sluice".to_string(),
            other => format!(
                "{} {}",
                other.kind().as_str(),
                other.member().as_ref().map_or("?", name)
            ),
        }
    }
}

/// A toxic as the Toxiproxy API takes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Toxic {
    pub name: String,
    /// Toxiproxy's `type`: latency, bandwidth, slow_close, timeout, reset_peer, ...
    pub kind: String,
    pub stream: Stream,
    /// 0.0..=1.0: the share of connections it applies to.
    pub toxicity: f64,
    /// Integer attributes (ms, KB/s, bytes), as Toxiproxy documents them.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// What the drill must meet; `None` is not checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bounds {
    pub ejected_within: Option<TimeBound>,
    pub returns_within: Option<TimeBound>,
    pub backup_serves_within: Option<TimeBound>,
    pub max_client_failure_ratio: Option<f64>,
    pub failed_after_ejection: Option<u64>,
    pub max_refused: Option<u64>,
    pub max_transitions: Option<u32>,
    pub all_bytes_intact: bool,
    pub load_share_of_slow_member_below: Option<f64>,
}

/// A timing bound (`ejected_within`, `returns_within`, `backup_serves_within`): written as a
/// duration, or as `"explain"`: what `sluice check --explain` promises for the scenario's
/// sluice config, read from [`sluice::budget::explain`] when the scenario is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBound {
    pub limit: Duration,
    /// `limit` came from `"explain"` rather than from the file.
    pub explained: bool,
}

impl TimeBound {
    /// A bound written as a duration.
    pub fn fixed(limit: Duration) -> Self {
        Self {
            limit,
            explained: false,
        }
    }
}

impl From<Duration> for TimeBound {
    fn from(limit: Duration) -> Self {
        Self::fixed(limit)
    }
}

/// The sluice config a scenario drills: exactly one route over one pool, whose listen
/// addresses and members the runner replaces.
#[derive(Clone, Debug)]
pub struct SluiceUnderTest {
    pub(super) table: Table,
    /// The file the config came from: the scenario itself when inline.
    pub(super) source: PathBuf,
    /// Inline configs name their keys `sluice.…` in messages.
    pub(super) inline: bool,
    pub route: String,
    pub pool: String,
    /// `seed` of the config, if it sets one.
    pub seed: Option<u64>,
}

// === impl Scenario ===

impl Scenario {
    /// Reads and validates a scenario file; every problem is reported.
    pub fn from_file(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::at_file(&path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Self::from_str(&text, path)
    }

    /// Validates scenario text; `path` names it in messages and anchors `sluice_config`.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, ConfigErrors> {
        super::validate::scenario(text, path).map_err(|e| e.located_in(text))
    }

    /// Members of tier 0.
    pub fn is_primary(&self, member: usize) -> bool {
        self.members.get(member).is_some_and(|m| m.tier == 0)
    }
}

// === impl SluiceUnderTest ===

impl SluiceUnderTest {
    /// The runnable config: the drilled route listens on 127.0.0.1:0 and the pool's members
    /// are `addrs` (one per scenario member, in order), with `seed` for every random choice.
    pub fn config(
        &self,
        members: &[MemberSpec],
        addrs: &[SocketAddr],
        seed: u64,
    ) -> Result<Config, ConfigErrors> {
        let mut table = self.table.clone();
        if let Some(Value::Table(route)) = table
            .get_mut("routes")
            .and_then(|r| r.as_table_mut())
            .and_then(|r| r.get_mut(&self.route))
        {
            route.insert("listen".into(), Value::String("127.0.0.1:0".into()));
        }
        let list = members
            .iter()
            .zip(addrs)
            .map(|(m, addr)| {
                let mut t = Table::new();
                t.insert("addr".into(), Value::String(addr.to_string()));
                t.insert("weight".into(), Value::Integer(i64::from(m.weight)));
                t.insert("tier".into(), Value::Integer(i64::from(m.tier)));
                Value::Table(t)
            })
            .collect();
        if let Some(Value::Table(pool)) = table
            .get_mut("pools")
            .and_then(|p| p.as_table_mut())
            .and_then(|p| p.get_mut(&self.pool))
        {
            pool.insert("members".into(), Value::Array(list));
        }
        let text = toml::to_string(&table).map_err(|e| {
            ConfigError::at_file(&self.file_name(), format!("cannot render config: {e}"))
        })?;
        let mut config = config::from_str(&text, Some(&self.source)).map_err(|errors| {
            ConfigErrors(errors.0.into_iter().map(|e| self.rename(e)).collect())
        })?;
        config.seed = Some(seed);
        Ok(config)
    }

    fn file_name(&self) -> String {
        self.source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.source.display().to_string())
    }

    /// An inline config's keys live under `sluice.` in the scenario file.
    fn rename(&self, mut e: ConfigError) -> ConfigError {
        if let (true, Location::Key { path, .. }) = (self.inline, &mut e.location) {
            *path = format!("sluice.{path}");
        }
        // The position is in the rendered config, not the scenario file: the scenario's own
        // validation places every error in its text.
        e.position = None;
        e
    }
}
