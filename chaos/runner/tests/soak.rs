//! The soak at CI size: `chaos/soak/soak-ci.toml` through the library with seed 42, every
//! bound required (5,440 connections with faults drawn from the seed; bytes intact, no client
//! past its timeout, fds and RSS back where they started). The five-minute soak is
//! `just soak`.
//!
//! The soak reads this process's fd count, so the tests here take turns: a test opening
//! files or spawning a process while the soak measures would move the count. The fault
//! injector is `sluice-toxiproxy`, found next to the test binary or built on demand
//! (`TOXIPROXY_URL` points at a real Toxiproxy instead).
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use sluice_chaos::soak::{self, Soak};
use sluice_chaos::{InjectorChoice, RunOptions};
use tokio::sync::Mutex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

static TURN: Mutex<()> = Mutex::const_new(());

/// fds the CI soak may need at its busiest: four per open client (client, sluice's two
/// sockets, the member's), the splice pipe pool, the runtime's.
const FDS: u64 = 4 * 256 + 128 + 512;

/// The access-log tap (byte counts) plus test-captured logs (`RUST_LOG`, default error).
fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(filter),
        )
        .with(sluice_chaos::access::layer())
        .try_init();
}

/// Raises the soft `RLIMIT_NOFILE` to [`FDS`] if it is lower and the hard limit allows.
fn raise_nofile() {
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|soft| soft >= FDS) {
        return;
    }
    let raised = Rlimit {
        current: Some(limit.maximum.map_or(FDS, |hard| hard.min(FDS))),
        maximum: limit.maximum,
    };
    let _ = setrlimit(Resource::Nofile, raised);
}

fn soak_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../soak")
        .join(format!("{name}.toml"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ci_soak_meets_every_bound() {
    let _turn = TURN.lock().await;
    init();
    raise_nofile();
    let soak = Soak::from_file(&soak_path("soak-ci")).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        seed: Some(42),
        injector: InjectorChoice::from_env(),
        ..Default::default()
    };
    let report = soak::run(&soak, &options)
        .await
        .unwrap_or_else(|e| panic!("the soak could not run: {e}"));
    // The whole report with `--nocapture`.
    println!("{report}");
    assert!(report.passed, "the CI soak missed a bound:\n{report}");
    assert_eq!(report.seed, 42);
    assert_eq!(
        report.verdicts.len(),
        6,
        "every bound is checked:\n{report}"
    );
    assert!(report.started >= 5_000, "{report}");
    assert!(
        report.tally.bytes.access_agrees > 0,
        "the access log was compared:\n{report}"
    );
    // Several kinds of fault, and every one of them played.
    assert!(report.schedule.by_kind.len() >= 4, "{report}");
    assert!(report.schedule.injected.iter().all(|s| s.at.is_some()));
    // The same seed draws the same schedule, as the fingerprint says.
    let again = soak::draw(
        42,
        &soak.plan,
        soak.scenario.members.len(),
        soak.scenario.traffic.duration,
    );
    let print = soak::fingerprint(&soak::steps(&again), &soak.scenario.members);
    assert_eq!(format!("{print:016x}"), report.schedule.fingerprint);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["passed"], true);
    assert!(json["resources"]["before"]["fds"].as_u64().unwrap() > 0);
}

#[test]
fn shipped_soaks_are_valid_and_sized_as_promised() {
    let _turn = TURN.blocking_lock();
    let expected = |s: &Soak| {
        let t = &s.scenario.traffic;
        (t.rate * t.duration.as_secs_f64()) as u64
    };
    let full = Soak::from_file(&soak_path("soak")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(full.scenario.traffic.duration, Duration::from_secs(300));
    assert!(expected(&full) >= 100_000);
    assert_eq!(full.bounds.min_connections, Some(100_000));
    assert_eq!(
        full.scenario.sluice.as_ref().and_then(|s| s.seed),
        None,
        "each full soak draws its seed"
    );

    let ci = Soak::from_file(&soak_path("soak-ci")).unwrap_or_else(|e| panic!("{e}"));
    assert!(ci.scenario.traffic.duration <= Duration::from_secs(20));
    assert!(expected(&ci) >= 5_000);
    assert_eq!(ci.bounds.min_connections, Some(5_000));
    // Same sluice, members and bounds; only the size and the pace of faults differ.
    assert_eq!(ci.scenario.members, full.scenario.members);
    assert_eq!(ci.plan.faults, full.plan.faults);
    assert_eq!(
        (
            ci.bounds.fd_growth,
            ci.bounds.rss_growth,
            ci.bounds.max_wait_slack
        ),
        (
            full.bounds.fd_growth,
            full.bounds.rss_growth,
            full.bounds.max_wait_slack
        )
    );
}

#[test]
fn cli_rejects_a_drill_file_with_exit_64() {
    let _turn = TURN.blocking_lock();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/flap.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-chaos"))
        .arg("soak")
        .arg(&scenario)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "flap.toml: timeline: a soak draws its faults from the seed ([soak]); remove [[timeline]]",
        "flap.toml: bounds: a soak's bounds go in [soak.bounds]",
        "flap.toml: soak: missing; a soak file has a [soak] table (see docs/CHAOS.md, Soak)",
    ] {
        // Each line ends with where the key is: " (line N, column M)".
        assert!(
            stderr
                .lines()
                .any(|l| l == line || l.starts_with(&format!("{line} (line "))),
            "{line:?} in:\n{stderr}"
        );
    }
}
