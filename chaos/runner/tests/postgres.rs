//! The shipped PostgreSQL example, run as a user runs it: `chaos/examples/postgres-failover.toml`
//! from the repository root, with real PostgreSQL (both members started by the drill through
//! `chaos/examples/pg-member.sh`) and `pgbench` as the workload. `.ci/run` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_testkit::{output_text, scratch_dir};
use tokio::time::Instant;

const EXAMPLE: &str = "chaos/examples/postgres-failover.toml";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails (never skips) without PostgreSQL: CI installs it, and a skipped drill proves nothing.
/// `pg-member.sh` runs `postgres` and `pgbench` from Debian's /usr/lib/postgresql/VERSION/bin,
/// else from PATH.
fn require_postgres() {
    let installed = |program: &str| {
        let debian = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
            versions
                .flatten()
                .any(|v| v.path().join("bin").join(program).is_file())
        });
        debian
            || std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            })
    };
    assert!(
        installed("postgres"),
        "postgres: not installed (apt-get install postgresql; .ci/run does)"
    );
    assert!(
        installed("pgbench"),
        "pgbench: not installed (apt-get install postgresql-client; .ci/run does)"
    );
}

/// The member directories the drill's PostgreSQL servers used, under `tmp`.
fn member_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("sluice-pg.")
        })
        .collect()
}

/// Live processes whose working directory is under `tmp`: PostgreSQL runs in its data directory.
fn processes_in(tmp: &Path) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(tmp)))
        .map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            )
        })
        .collect()
}

#[test]
fn the_shipped_postgres_example_fails_over_to_the_backup_and_back() {
    require_postgres();
    let tmp = scratch_dir("postgres");
    let (json, junit) = (tmp.join("report.json"), tmp.join("report.xml"));

    // As documented: from the repository root. TMPDIR puts the members' data directories in
    // this test's scratch directory, so what they leave behind is this test's to check.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-chaos"))
        .current_dir(repo_root())
        .env("TMPDIR", &tmp)
        .args(["drill", EXAMPLE, "--json"])
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{stdout}");
    let verdicts = report["verdicts"].as_array().unwrap();
    let bounds: Vec<&str> = verdicts
        .iter()
        .map(|v| v["bound"].as_str().unwrap())
        .collect();
    assert_eq!(
        bounds,
        [
            "ejected_within",
            "returns_within",
            "backup_serves_within",
            "max_client_failure_ratio"
        ],
        "{stdout}"
    );
    // The timing bounds are the config's own promise (`sluice check --explain`).
    assert!(
        verdicts[..3]
            .iter()
            .all(|v| v["limit"].as_str().unwrap().starts_with("explain (")),
        "{stdout}"
    );

    // Both steps ran; each is recorded when it completed, a restart when PostgreSQL accepts
    // again (after its crash recovery).
    let injected = report["injected"].as_array().unwrap();
    let at = |step: usize| injected[step]["at_ms"].as_f64().expect("the step ran");
    let (kill, restart) = (at(0), at(1));

    let measures = &report["measures"];
    let backup = &measures["backup"][0];
    assert!(backup["served_after_ms"].as_f64().is_some(), "{stdout}");
    let returned = &measures["returns"][0];
    assert_eq!(returned["member"], 0, "{stdout}");
    assert!(returned["serves_after_ms"].as_f64().is_some(), "{stdout}");

    // At most one pgbench run every 50 ms for 7 s: a loaded machine starts some late, which
    // delays the rest (the schedule is a workload, not a clock), so fewer is no failure.
    let clients = report["clients"].as_array().unwrap();
    assert!(clients.len() <= 140, "{} runs\n{stdout}", clients.len());
    // Runs that started and ended inside [from, to) and were served by `member` alone.
    let served = |member: u64, from: f64, to: f64| {
        clients
            .iter()
            .filter(|c| c["outcome"] == "ok" && c["member"] == member)
            .filter(|c| {
                c["start_ms"].as_f64().unwrap() >= from && c["end_ms"].as_f64().unwrap() < to
            })
            .count()
    };
    let end = f64::MAX;
    assert!(
        served(0, 0.0, kill) > 0,
        "the primary served before the crash\n{stdout}"
    );
    // The SIGKILL goes out at the planned 2 s; the step completes when the shell is reaped.
    let planned_kill = injected[0]["planned_ms"].as_f64().unwrap();
    assert_eq!(
        served(1, 0.0, planned_kill),
        0,
        "the backup served while the primary was up\n{stdout}"
    );
    assert!(
        served(1, kill, restart) > 0,
        "the backup served while the primary was down\n{stdout}"
    );
    assert!(
        served(0, restart, end) > 0,
        "the primary served again after its restart\n{stdout}"
    );

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"4\""), "{xml}");
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(
        xml.contains("<testcase name=\"backup_serves_within\""),
        "{xml}"
    );

    // Nothing of the members outlives the drill: their processes exit once their postmaster is
    // gone, and pg-member.sh's watcher then removes their directories.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (left, dirs) = (processes_in(&tmp), member_dirs(&tmp));
        if left.is_empty() && dirs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after the drill: processes {left:?}, directories {dirs:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(&tmp).unwrap();
    // The report, for `--nocapture`: the measured failover next to the config's promise.
    println!("{stdout}");
}
