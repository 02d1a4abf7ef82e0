//! The binaries as an operator installs them: `sluice` and `sluice-chaos` copied into a bare
//! directory, run from elsewhere with no source tree and no cargo on PATH. `sluice drill`
//! hands off to `sluice-chaos`, which carries its fault injector; without `sluice-chaos` the
//! error names what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sluice_testkit::{output_text, scratch_dir};

/// `target/<profile>/sluice`: `cargo test --workspace` builds it for the forwarder's own
/// integration tests, in the directory where cargo puts this crate's executable too.
fn sluice_binary() -> PathBuf {
    let chaos = Path::new(env!("CARGO_BIN_EXE_sluice-chaos"));
    let sluice = chaos.with_file_name("sluice");
    assert!(
        sluice.is_file(),
        "{} is not built: run the suite with `cargo test --workspace` (README)",
        sluice.display()
    );
    sluice
}

/// A scratch directory with an empty `bin/` to install into.
fn install_dir(name: &str) -> PathBuf {
    let dir = scratch_dir(&format!("installed-{name}"));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    dir
}
/// Runs `bin/sluice ARGS` in `dir` with an environment that has no cargo, no rustup and no
/// source tree: PATH is the install directory and the system's own.
fn run_installed(dir: &Path, args: &[&str]) -> Output {
    Command::new(dir.join("bin/sluice"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", dir.join("bin").display()),
        )
        .env("HOME", dir)
        .output()
        .unwrap()
}

#[test]
fn an_installed_pair_runs_a_drill_without_cargo_or_sources() {
    let dir = install_dir("pair");
    std::fs::copy(sluice_binary(), dir.join("bin/sluice")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_sluice-chaos"),
        dir.join("bin/sluice-chaos"),
    )
    .unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/member-down.toml");
    std::fs::copy(shipped, dir.join("member-down.toml")).unwrap();
    let no_cargo = Command::new("sh")
        .args(["-c", "command -v cargo"])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", dir.join("bin").display()),
        )
        .status()
        .unwrap();
    assert!(!no_cargo.success(), "cargo must not be on the test's PATH");

    let out = run_installed(
        &dir,
        &[
            "drill",
            "member-down.toml",
            "--json",
            "report.json",
            "--seed",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(embedded)"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["seed"], 3, "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sluice_drill_without_sluice_chaos_names_what_is_missing() {
    let dir = install_dir("alone");
    std::fs::copy(sluice_binary(), dir.join("bin/sluice")).unwrap();
    let out = run_installed(&dir, &["drill", "member-down.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let beside = dir.join("bin/sluice-chaos");
    assert!(
        stderr.contains(&format!(
            "sluice drill: needs the sluice-chaos executable, found neither at {} nor on PATH",
            beside.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "the cause once: {stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sluice_chaos_options_reach_it_through_sluice() {
    let dir = install_dir("help");
    std::fs::copy(sluice_binary(), dir.join("bin/sluice")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_sluice-chaos"),
        dir.join("bin/sluice-chaos"),
    )
    .unwrap();
    let out = run_installed(&dir, &["drill", "--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("--json <FILE>") && stdout.contains("--junit <FILE>"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
