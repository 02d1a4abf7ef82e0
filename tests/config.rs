//! Every shipped config validates; every bad fixture fails with exactly the message kept beside
//! it; `sluice check` exits 0 / 64 accordingly.

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_is_valid() {
    let configs = files("config", "toml");
    assert!(!configs.is_empty(), "config/ has no example configs");
    for path in configs {
        if let Err(errors) = sluice::config::from_file(&path) {
            panic!("{} is invalid:\n{errors}", path.display());
        }
    }
}

#[test]
fn every_bad_fixture_fails_with_its_expected_message() {
    let fixtures = files("tests/fixtures/bad", "toml");
    assert!(
        fixtures.len() >= 10,
        "expected the bad fixtures, found {}",
        fixtures.len()
    );
    for path in fixtures {
        let expected_path = path.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        match sluice::config::from_file(&path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(errors) => assert_eq!(
                errors.to_string(),
                expected.trim_end(),
                "messages of {}",
                path.display()
            ),
        }
    }
}

#[test]
fn check_exits_zero_with_summary_and_64_with_every_problem() {
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    let ok = Command::new(sluice)
        .args(["check", "--config"])
        .arg(root.join("config/sluice.toml"))
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "sluice.toml: ok: routes=1 pools=1 members=3"
    );

    let bad = root.join("tests/fixtures/bad/weight-range.toml");
    let out = Command::new(sluice)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let expected = std::fs::read_to_string(bad.with_extension("expected")).unwrap();
    // Problems go to stderr, like every error; stdout carries only results.
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
    assert!(out.stdout.is_empty());
    assert_eq!(
        expected.lines().count(),
        3,
        "all three weight problems are reported"
    );
}

#[test]
fn forward_mode_builds_the_same_runtime_config_as_a_file() {
    let from_flags = sluice::config::forward(
        &["127.0.0.1:8080".into()],
        &["127.0.0.1:9001".into(), "127.0.0.1:9002".into()],
        &["127.0.0.1:9101".into()],
    )
    .unwrap();
    let from_file = sluice::config::from_str(
        r#"
        [routes.forward]
        listen = "127.0.0.1:8080"
        pool = "forward"
        [pools.forward]
        members = [{ addr = "127.0.0.1:9001" }, { addr = "127.0.0.1:9002" }, { addr = "127.0.0.1:9101", tier = 1 }]
        "#,
        None,
    )
    .unwrap();
    assert_eq!(from_flags, from_file);
    assert_eq!(from_flags.pools[0].members[2].tier, 1);

    let err =
        sluice::config::forward(&["nope".into()], &["127.0.0.1:9001".into()], &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("\"nope\": not an IP address with port"),
        "{err}"
    );
}

/// `sluice check --explain` on the shipped example prints the summary, then the pool's budget;
/// the README shows that output verbatim, so the two cannot drift apart. A bad file still
/// exits 64 with its problems, and `--json` carries the same numbers.
#[test]
fn check_explain_prints_the_budget_the_readme_shows() {
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("config/sluice.toml");

    let out = Command::new(sluice)
        .args(["check", "--explain", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "sluice.toml: ok: routes=1 pools=1 members=3");
    assert_eq!(lines[2], "pool web (routes: web)");
    for expected in [
        "  detect    <= 3.363s  refused   = interval 2s × 1.1 + (fall 3 − 1) × fast_interval 500ms × 1.1 + fall 3 × slack 21ms",
        "            <= 6.366s  blackhole = 3.363s + fall 3 × (timeout 1s + timer 1ms)",
        "  failover  <= 6.366s  = detect (blackhole) once 2 of 2 primaries are down (min_healthy 1): the tier is chosen per connection, no timer",
        "  return    <= 1.142s  refused   = rise 2 × (fast_interval 500ms × 1.1 + slack 21ms)",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let shown = readme
        .split_once("For `config/sluice.toml`:\n\n```text\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("README has the failover budget example");
    assert_eq!(shown, stdout, "README's failover budget example is stale");

    let json = Command::new(sluice)
        .args(["check", "--json", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let pool = &doc["pools"][0];
    assert_eq!(
        (
            &pool["pool"],
            &pool["ejected_within_ms"],
            &pool["backup_serves_within_ms"],
            &pool["returns_within_ms"]
        ),
        (
            &serde_json::json!("web"),
            &serde_json::json!(6366.0),
            &serde_json::json!(6366.0),
            &serde_json::json!(2143.0)
        )
    );

    let bad = root.join("tests/fixtures/bad/weight-range.toml");
    let out = Command::new(sluice)
        .args(["check", "--explain", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let expected = std::fs::read_to_string(bad.with_extension("expected")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
}

/// `sluice check --config PATH`, with `--strict` when asked.
fn check(path: &Path, strict: bool) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.args(["check", "--config"]).arg(path);
    if strict {
        c.arg("--strict");
    }
    c.output().unwrap()
}

/// Warnings go to stderr and leave the exit code 0; `--strict` makes them fail (exit 1).
#[test]
fn check_warns_on_stderr_and_strict_fails_on_warnings() {
    let dir = sluice_testkit::scratch_dir("check-strict");
    let path = dir.join("warned.toml");
    std::fs::write(
        &path,
        "[routes.web]\nlisten = \"127.0.0.1:0\"\npool = \"web\"\n\
         [pools.web]\nmembers = [{ addr = \"127.0.0.1:9\" }]\n\
         [pools.spare]\nmembers = [{ addr = \"127.0.0.1:9\" }]\n",
    )
    .unwrap();
    let run = |strict: bool| check(&path, strict);
    let warning = "warned.toml: warning: pools.spare: no route uses this pool; its health checks run for nothing";
    let lenient = run(false);
    assert_eq!(lenient.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&lenient.stderr).trim(), warning);
    assert_eq!(
        String::from_utf8_lossy(&lenient.stdout).trim(),
        "warned.toml: ok: routes=1 pools=2 members=2"
    );
    let strict = run(true);
    assert_eq!(strict.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(stderr.starts_with(warning), "{stderr}");
    assert!(
        stderr.contains("1 warning(s) and --strict: failing"),
        "{stderr}"
    );
}

/// A member name that does not resolve is not a config error: `check` warns (exit 0) and
/// `--strict` fails on it.
#[test]
fn check_warns_about_a_name_that_does_not_resolve() {
    let dir = sluice_testkit::scratch_dir("check-dns");
    let path = dir.join("dns.toml");
    // Port 1 on loopback answers no DNS: the query fails within the timeout.
    std::fs::write(
        &path,
        "[dns]\nservers = [\"127.0.0.1:1\"]\ntimeout = \"200ms\"\n\
         [routes.web]\nlisten = \"127.0.0.1:0\"\npool = \"web\"\n\
         [pools.web]\nmembers = [{ addr = \"backend.invalid:9001\" }]\n",
    )
    .unwrap();
    let run = |strict: bool| check(&path, strict);
    let lenient = run(false);
    assert_eq!(lenient.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&lenient.stderr);
    assert!(
        stderr.starts_with(
            "dns.toml: warning: pools.web.members: backend.invalid:9001 does not resolve now ("
        ) && stderr
            .trim_end()
            .ends_with("sluice starts without its members and adds them when it resolves"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&lenient.stdout).trim(),
        "dns.toml: ok: routes=1 pools=1 members=1"
    );
    assert_eq!(run(true).status.code(), Some(1));
}
