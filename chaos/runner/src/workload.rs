//! The user's own workload as drill traffic: `[traffic] command`, run through `sh -c` with
//! `{host}`, `{port}` and `{listen}` naming the route under drill. Each run is one client: ok
//! when it exits 0 within `traffic.timeout`; a slower run is killed (its process group) and
//! counts as a timeout. With `every`, a run starts every period until the traffic's duration
//! (runs may overlap, like clients); without, the command runs once, bounded by the duration,
//! and its exit status is a verdict of its own (`verdict::workload_exit`).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::access::AccessEvent;
use super::scenario::{CommandTraffic, Traffic};
use super::traffic::{ClientRecord, Outcome};

/// Bytes of a failed run's stderr kept for the report.
const STDERR_TAIL: usize = 400;

/// `{host}`, `{port}`, `{listen}` (= `host:port`) replaced by `target`'s parts: the route
/// under drill for a traffic command, the picked port for a `start` member.
pub fn substitute(template: &str, target: SocketAddr) -> String {
    template
        .replace("{listen}", &target.to_string())
        .replace("{host}", &target.ip().to_string())
        .replace("{port}", &target.port().to_string())
}

/// Runs the workload from `t0`; returns every run in start order.
pub async fn run(
    target: SocketAddr,
    command: &CommandTraffic,
    traffic: &Traffic,
    t0: Instant,
) -> Vec<ClientRecord> {
    let line = substitute(&command.command, target);
    let mut runs = JoinSet::new();
    match command.every {
        None => {
            runs.spawn(one(0, line, traffic.duration, t0));
        }
        Some(every) => {
            let mut ticks = tokio::time::interval_at(t0, every);
            // A late tick starts the run at once; the schedule is a workload, not a clock.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let end = t0 + traffic.duration;
            for id in 0u64.. {
                let at = ticks.tick().await;
                if at >= end {
                    break;
                }
                runs.spawn(one(id, line.clone(), traffic.timeout, t0));
            }
        }
    }
    let mut records: Vec<ClientRecord> = runs.join_all().await;
    records.sort_by_key(|r| r.id);
    records
}

async fn one(id: u64, line: String, timeout: Duration, t0: Instant) -> ClientRecord {
    let start = t0.elapsed();
    let (outcome, detail) = execute(&line, timeout).await;
    ClientRecord {
        id,
        start,
        end: t0.elapsed(),
        local: None,
        member: None,
        payload: 0,
        sent: 0,
        received: 0,
        outcome,
        detail,
    }
}

/// The run's outcome and, when it failed, why: exit status and the tail of its stderr.
async fn execute(line: &str, timeout: Duration) -> (Outcome, Option<String>) {
    let spawned = Command::new("sh")
        .args(["-c", line])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return (Outcome::Failed, Some(format!("cannot run: {e}"))),
    };
    let mut stderr = child.stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        let mut err = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut err).await;
        }
        (child.wait().await, err)
    })
    .await;
    match finished {
        Ok((Ok(status), _)) if status.success() => (Outcome::Ok, None),
        Ok((status, err)) => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            (
                Outcome::Failed,
                Some(format!("{status}; stderr: {:?}", tail(&err))),
            )
        }
        Err(_) => {
            super::upstream::kill_group(&child);
            let _ = child.wait().await;
            (Outcome::Timeout, Some(format!("killed after {timeout:?}")))
        }
    }
}

/// Names the member each run reached, from sluice's access lines: a line whose connection
/// began (its end minus its duration) inside the run's lifetime belongs to that run. A run
/// whose lines name more than one member, or none, keeps `member: None`.
pub fn attribute(
    runs: &mut [ClientRecord],
    access: &[AccessEvent],
    t0: Instant,
    proxies: &[SocketAddr],
) {
    let began: Vec<(Duration, Option<u32>)> = access
        .iter()
        .map(|e| {
            let start = e
                .seen
                .checked_sub(Duration::from_secs_f64(e.duration_ms.max(0.0) / 1000.0))
                .unwrap_or(e.seen)
                .saturating_duration_since(t0);
            let member = e.member.as_deref().and_then(|m| {
                proxies
                    .iter()
                    .position(|p| p.to_string() == m)
                    .map(|i| i as u32)
            });
            (start, member)
        })
        .collect();
    for run in runs {
        let mut seen = began
            .iter()
            .filter(|(start, _)| *start >= run.start && *start <= run.end)
            .map(|(_, member)| *member);
        let first = seen.next().flatten();
        if first.is_some() && seen.all(|m| m == first) {
            run.member = first;
        }
    }
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    let cut = text.len().saturating_sub(STDERR_TAIL);
    let start = (cut..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_name_the_route() {
        let target: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            substitute("redis-cli -h {host} -p {port}; nc {listen}", target),
            "redis-cli -h 127.0.0.1 -p 8080; nc 127.0.0.1:8080"
        );
    }

    #[tokio::test]
    async fn exit_status_and_stderr_make_the_outcome() {
        let second = Duration::from_secs(5);
        assert_eq!(execute("true", second).await, (Outcome::Ok, None));
        let (outcome, detail) = execute("echo boom >&2; exit 3", second).await;
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(detail.as_deref(), Some("exit status: 3; stderr: \"boom\""));
        let (outcome, _) = execute("sleep 5", Duration::from_millis(50)).await;
        assert_eq!(outcome, Outcome::Timeout);
    }
}
