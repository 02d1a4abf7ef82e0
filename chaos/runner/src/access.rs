//! A tap on sluice's access log: [`layer`] is a `tracing` layer that hands every access line
//! (target `sluice::access`) to the drills that asked for it.
//!
//! The access log is how the drill sees redials (`attempts > 1`) and sluice's own byte counts,
//! without a file or a parser: the runner keeps sluice in-process, so the events are right
//! here. The subscriber is global to the process and may serve several drills at once (tests
//! run in parallel), so each drill [`subscribe`]s with its members' addresses, which no other
//! live drill shares, and gets only the lines about them. Without the layer installed nothing
//! is tapped; the report then says redials were not observed.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::{Context, Layer};

use sluice::telemetry::access_log::TARGET;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static SINKS: Mutex<Vec<Sink>> = Mutex::new(Vec::new());

/// One access line, the fields the drill reads.
#[derive(Clone, Debug, Serialize)]
pub struct AccessEvent {
    pub client: Option<SocketAddr>,
    pub member: Option<String>,
    pub attempts: u64,
    pub outcome: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: f64,
    /// When the line was written (the connection's end).
    #[serde(skip)]
    pub seen: Instant,
}

struct Sink {
    id: u64,
    members: HashSet<String>,
    events: Arc<Mutex<Vec<AccessEvent>>>,
}

/// The tap, filtered to access lines so the rest of the logging keeps its own filter.
pub fn layer<S>() -> Filtered<AccessTap, Targets, S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    AccessTap.with_filter(Targets::new().with_target(TARGET, Level::INFO))
}

/// Whether [`layer`] is part of the global subscriber.
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// Collects access lines about `members` (sluice member names) until dropped.
pub fn subscribe(members: impl IntoIterator<Item = String>) -> Subscription {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let events = Arc::new(Mutex::new(Vec::new()));
    sinks().push(Sink {
        id,
        members: members.into_iter().collect(),
        events: Arc::clone(&events),
    });
    Subscription { id, events }
}

fn sinks() -> std::sync::MutexGuard<'static, Vec<Sink>> {
    SINKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A drill's share of the access log.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    events: Arc<Mutex<Vec<AccessEvent>>>,
}

impl Subscription {
    /// Every line collected so far.
    pub fn take(&self) -> Vec<AccessEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        sinks().retain(|s| s.id != self.id);
    }
}

/// The layer itself; build it with [`layer`].
#[derive(Debug, Clone, Copy)]
pub struct AccessTap;

impl<S: Subscriber> Layer<S> for AccessTap {
    fn on_layer(&mut self, _subscriber: &mut S) {
        INSTALLED.store(true, Ordering::Release);
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut line = AccessEvent {
            client: None,
            member: None,
            attempts: 0,
            outcome: String::new(),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0.0,
            seen: Instant::now(),
        };
        event.record(&mut line);
        let Some(member) = &line.member else { return };
        for sink in sinks().iter().filter(|s| s.members.contains(member)) {
            sink.events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line.clone());
        }
    }
}

impl Visit for AccessEvent {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "member" => self.member = Some(value.to_string()),
            "outcome" => self.outcome = value.to_string(),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "attempts" => self.attempts = value,
            "bytes_up" => self.bytes_up = value,
            "bytes_down" => self.bytes_down = value,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "duration_ms" {
            self.duration_ms = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `client = %addr` arrives here, formatted by its Display.
        if field.name() == "client" {
            self.client = format!("{value:?}").parse().ok();
        }
    }
}

/// Follows the access log file of a running sluice (`[target] access_log`, JSON lines) from
/// its current end until `stop`, keeping the lines for `members`. Each line is placed in time
/// by its own `timestamp` (when sluice wrote it, as the in-process tap stamps it when logged):
/// the moment it was read can be [`FOLLOW_EVERY`] later, longer than a short client lives.
pub async fn follow(
    path: std::path::PathBuf,
    members: HashSet<String>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<Vec<AccessEvent>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    let mut file = tokio::fs::File::open(&path).await?;
    file.seek(std::io::SeekFrom::End(0)).await?;
    let mut events = Vec::new();
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // One reading of both clocks maps the lines' wall-clock timestamps onto `Instant`s.
    let clocks = (std::time::SystemTime::now(), Instant::now());
    loop {
        // One last read after `stop`, so lines written before it are all kept.
        let last = stop.is_cancelled();
        loop {
            let n = file.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&chunk[..n]);
        }
        let read_at = Instant::now();
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(event) = parse_json_line(&line, clocks, read_at)
                && event.member.as_ref().is_some_and(|m| members.contains(m))
            {
                events.push(event);
            }
        }
        if last {
            return Ok(events);
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
}

/// How often [`follow`] reads the file.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(20);

/// One access line as `--log-format json` writes it (fields flattened beside `message`).
fn parse_json_line(
    line: &[u8],
    (wall, mono): (std::time::SystemTime, Instant),
    read_at: Instant,
) -> Option<AccessEvent> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    if v.get("message")?.as_str()? != "access" {
        return None;
    }
    // A line without a readable timestamp is placed when it was read.
    let seen = v
        .get("timestamp")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(std::time::SystemTime::from)
        .map_or(read_at, |at| match at.duration_since(wall) {
            Ok(after) => mono + after,
            Err(before) => mono.checked_sub(before.duration()).unwrap_or(mono),
        });
    let u = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Some(AccessEvent {
        client: v.get("client")?.as_str()?.parse().ok(),
        member: v.get("member").and_then(|m| m.as_str()).map(str::to_string),
        attempts: u("attempts"),
        outcome: v
            .get("outcome")
            .and_then(|o| o.as_str())
            .unwrap_or_default()
            .to_string(),
        bytes_up: u("bytes_up"),
        bytes_down: u("bytes_down"),
        duration_ms: v
            .get("duration_ms")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0),
        seen,
    })
}

#[cfg(test)]
mod follow_tests {
    use super::*;

    #[test]
    fn a_followed_line_is_placed_by_its_own_timestamp() {
        let wall = chrono::DateTime::parse_from_rfc3339("2026-12-06T02:03:47.600Z").unwrap();
        let mono = Instant::now();
        let line = br#"{"timestamp":"2026-12-06T02:03:47.650Z","level":"INFO","message":"access","client":"127.0.0.1:40000","member":"127.0.0.1:16379","attempts":2,"outcome":"ok","bytes_up":14,"bytes_down":7,"duration_ms":3.5}"#;
        let read_at = mono + Duration::from_secs(1);
        let e = parse_json_line(line, (wall.into(), mono), read_at).unwrap();
        assert_eq!(e.seen, mono + Duration::from_millis(50));
        assert_eq!(e.member.as_deref(), Some("127.0.0.1:16379"));
        assert_eq!((e.attempts, e.bytes_up, e.bytes_down), (2, 14, 7));
        assert_eq!(e.client, Some("127.0.0.1:40000".parse().unwrap()));
        let other = br#"{"timestamp":"2026-12-06T02:03:47.650Z","message":"member down"}"#;
        assert!(parse_json_line(other, (wall.into(), mono), read_at).is_none());
    }
}
