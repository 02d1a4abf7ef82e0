//! Chaos drills in CI: three shipped scenarios run through the library with their own bounds,
//! a bound that cannot be met fails the verdict, one seed repeats the same member choices,
//! and `sluice drill` maps all of that to exit codes. The full set runs with `just chaos`.
//!
//! The fault injector is `sluice-toxiproxy`, found next to the test binary (`cargo test
//! --workspace` builds it) or built on demand; `TOXIPROXY_URL` points the drills at a real
//! Toxiproxy instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_chaos::{InjectorChoice, Report, RunOptions, Scenario};
use sluice_testkit::scratch_dir;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// The access-log tap (redials, byte counts) plus test-captured logs (`RUST_LOG`, default
/// error: a drill makes sluice warn about every fault it survives).
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

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"))
}

fn options() -> RunOptions {
    RunOptions {
        injector: InjectorChoice::from_env(),
        ..Default::default()
    }
}

async fn run_shipped(name: &str) -> Report {
    init();
    let scenario = Scenario::from_file(&scenario_path(name)).unwrap_or_else(|e| panic!("{e}"));
    let report = sluice_chaos::run(&scenario, &options())
        .await
        .unwrap_or_else(|e| panic!("drill {name} could not run: {e}"));
    assert!(report.passed, "drill {name} missed a bound:\n{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_down_is_ejected_and_returns_without_client_failures() {
    let report = run_shipped("member-down").await;
    assert_eq!(report.measures.failed_after_ejection, 0);
    assert!(
        report.measures.redials.observed,
        "the access tap is installed"
    );
    assert!(
        report
            .events
            .iter()
            .any(|e| e.kind == "member" && e.text == "b up → down")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_storm_opens_the_breaker_and_redials() {
    let report = run_shipped("reset-storm").await;
    assert!(
        report
            .events
            .iter()
            .any(|e| e.text == "b breaker closed → open"),
        "{report}"
    );
}

/// Only the breaker, fed by `silent_after_request`, can meet `ejected_within = "400ms"`: the
/// banner probe takes about 500ms to eject a blackholed member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blackhole_silent_opens_the_breaker_before_the_probe_ejects() {
    let report = run_shipped("blackhole-silent").await;
    assert!(
        report
            .events
            .iter()
            .any(|e| e.kind == "breaker" && e.text == "b breaker closed → open"),
        "the breaker ejected b:\n{report}"
    );
}

/// Extensions beyond Toxiproxy (sluice-toxiproxy only): a member whose proxy drops every
/// handshake, one whose proxy accepts late, and resets aimed at the first connections. With
/// healthy members to redial to, no client may fail in any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshake_faults_and_targeted_resets_fail_no_client() {
    if std::env::var_os("TOXIPROXY_URL").is_some() {
        return; // a real Toxiproxy has none of these toxic types
    }
    for name in ["connect-timeout", "slow-accept", "first-resets"] {
        let report = run_shipped(name).await;
        assert_eq!(
            report.measures.failed_after_ejection, 0,
            "{name}:\n{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_close_keeps_every_completed_connection_whole() {
    let report = run_shipped("half-close").await;
    let bytes = &report.measures.bytes;
    assert!(bytes.verified > 0 && bytes.corrupt == 0 && bytes.access_disagrees == 0);
    // limit_data on c cuts every upload it gets: those clients fail, visibly.
    let on_c = report.clients.iter().filter(|c| c.member == Some(2));
    assert!(on_c.clone().count() > 0 && on_c.clone().all(|c| !c.outcome.is_ok()));
}

/// member-down with its timing bounds written "explain": sluice held to what `sluice check
/// --explain` promises for the same config, shown in the report with the promised value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_down_meets_what_explain_promises() {
    init();
    let text = std::fs::read_to_string(scenario_path("member-down")).unwrap();
    let explained = text
        .replace("ejected_within = \"1s\"", "ejected_within = \"explain\"")
        .replace("returns_within = \"2s\"", "returns_within = \"explain\"");
    assert_eq!(
        explained.matches("\"explain\"").count(),
        2,
        "member-down's bounds moved"
    );
    let path = scratch_dir("drill-explain").join("member-down-explained.toml");
    std::fs::write(&path, explained).unwrap();
    let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let report = sluice_chaos::run(&scenario, &options()).await.unwrap();
    assert!(report.passed, "missed what --explain promises:\n{report}");
    let addrs: Vec<_> = (1..=3).map(|p| ([127, 0, 0, 1], p).into()).collect();
    let config = scenario
        .sluice
        .as_ref()
        .expect("an in-process drill")
        .config(&scenario.members, &addrs, 0)
        .unwrap();
    let budget = &sluice::budget::explain(&config)[0];
    let promised = [
        ("ejected_within", budget.ejected_within().unwrap()),
        ("returns_within", budget.returns_within().unwrap()),
    ];
    let text = report.to_string();
    for (bound, promise) in promised {
        let limit = format!("explain ({})", sluice::budget::format_duration(promise));
        let v = report.verdicts.iter().find(|v| v.bound == bound).unwrap();
        assert_eq!(v.limit, limit);
        assert!(
            text.contains(&format!("PASS  {bound} = {limit}: ")),
            "{text}"
        );
    }
}

/// A two-member drill: member b is killed at 300ms; traffic lasts 1.5s.
fn short_scenario(balance: &str, clients: u32, bounds: &str) -> Scenario {
    let text = format!(
        r#"
        [sluice]
        seed = 1
        [sluice.routes.app]
        pool = "app"
        [sluice.pools.app]
        balance = "{balance}"
        [sluice.pools.app.health]
        interval = "100ms"
        timeout = "100ms"
        fall = 1
        expect = "SLDRHELO"

        [[members]]
        name = "a"
        [[members]]
        name = "b"
        [[members]]
        name = "c"

        [traffic]
        clients = {clients}
        rate = 100
        payload = 1024
        duration = "1500ms"

        [[timeline]]
        at = "300ms"
        action = "kill"
        member = "b"

        [bounds]
        {bounds}
        "#
    );
    Scenario::from_str(&text, Path::new("short.toml")).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_impossible_bound_fails_the_verdict() {
    init();
    let scenario = short_scenario(
        "round_robin",
        8,
        "ejected_within = \"1ns\"\nmax_client_failure_ratio = 0.5",
    );
    let report = sluice_chaos::run(&scenario, &options()).await.unwrap();
    assert!(!report.passed, "{report}");
    let ejected = &report.verdicts[0];
    assert_eq!(ejected.bound, "ejected_within");
    assert!(!ejected.pass, "{report}");
    assert!(
        report.verdicts[1].pass,
        "the reachable bound still passes:\n{report}"
    );
    assert!(report.to_string().contains("FAIL  ejected_within = 1ns"));
}

/// The members sequential clients reached, in arrival order.
async fn members_chosen(seed: u64) -> Vec<u32> {
    let mut scenario = short_scenario("p2c", 1, "");
    // No fault: only the balancer decides.
    scenario.timeline.clear();
    let options = RunOptions {
        seed: Some(seed),
        duration: Some(Duration::from_millis(600)),
        ..options()
    };
    let report = sluice_chaos::run(&scenario, &options).await.unwrap();
    assert_eq!(report.seed, seed);
    report.clients.iter().filter_map(|c| c.member).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_seed_makes_the_same_member_choices() {
    init();
    let (first, again, other) = (
        members_chosen(7).await,
        members_chosen(7).await,
        members_chosen(8).await,
    );
    // Runs may fit a different number of clients in the same time; their choices must agree.
    let n = first.len().min(again.len()).min(other.len());
    assert!(n >= 20, "too few clients to compare: {n}");
    assert_eq!(first[..n], again[..n], "same seed, same arrival order");
    assert_ne!(first[..n], other[..n], "another seed picks differently");
    assert!(
        (0..3).all(|m| first.contains(&m)),
        "p2c uses every member: {first:?}"
    );
}

#[test]
fn every_shipped_scenario_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let s = Scenario::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                s.traffic.duration <= Duration::from_secs(15),
                "{} is too long",
                s.name
            );
            s.name
        })
        .collect();
    names.sort();
    let expected = [
        "blackhole",
        "blackhole-silent",
        "connect-timeout",
        "dc-failover",
        "explain-promise",
        "first-resets",
        "flap",
        "half-close",
        "member-down",
        "reset-storm",
        "slow-accept",
        "slow-and-thin",
    ];
    assert_eq!(names, expected);
}

#[test]
fn bad_scenarios_name_file_key_and_reason() {
    let cases = [
        (
            "[traffic]\nclinets = 1\n",
            "bad.toml: traffic.clinets = 1: unknown key; did you mean clients?",
        ),
        (
            "[traffic]\ncommand = \"true\"\ntimeout = \"1s\"\n",
            "bad.toml: traffic.timeout: limits runs started by `every`; a single run is bounded \
             by traffic.duration",
        ),
        (
            "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n[[members]]\nname = \"a\"\n\
             [traffic]\n[[timeline]]\nat = \"1s\"\naction = \"kill\"\nmember = \"z\"\n",
            "bad.toml: timeline[0].member = \"z\": no such member (defined: a)",
        ),
        (
            "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n[[members]]\nname = \"a\"\n\
             [traffic]\n[bounds]\nejected_within = \"1s\"\n",
            "bad.toml: bounds.ejected_within: the timeline never faults a member (disable, kill or add_toxic)",
        ),
        (
            "[sluice.routes.app]\npool = \"app\"\nconect_timeout = \"1s\"\n[sluice.pools.app]\n\
             [[members]]\nname = \"a\"\n[traffic]\n",
            "bad.toml: sluice.routes.app.conect_timeout = \"1s\": unknown key; did you mean connect_timeout?",
        ),
        (
            "[sluice.routes.app]\npool = \"app\"\n[sluice.routes.web]\npool = \"app\"\n\
             [sluice.pools.app]\n[[members]]\nname = \"a\"\n[traffic]\n",
            "bad.toml: sluice.routes: a drill needs exactly one route (found 2: app, web)",
        ),
        (
            "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n[[members]]\nname = \"a\"\n\
             [traffic]\n[[timeline]]\nat = \"1s\"\naction = \"add_toxic\"\nmember = \"a\"\n\
             toxic = { type = \"lag\" }\n",
            "bad.toml: timeline[0].toxic.type = \"lag\": unknown toxic type (valid: latency, \
             bandwidth, slow_close, timeout, reset_peer, limit_data, slicer, noop, connect_timeout, \
             slow_accept)",
        ),
        (
            "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n[[members]]\nname = \"a\"\n\
             [traffic]\n[[timeline]]\nat = \"1s\"\naction = \"add_toxic\"\nmember = \"a\"\n\
             toxic = { type = \"latency\", attributes = { clients = [\"127.0.0.2/33\"] } }\n",
            "bad.toml: timeline[0].toxic.attributes.clients[0] = \"127.0.0.2/33\": expected an \
             address block like \"127.0.0.2/32\"",
        ),
        (
            "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n[[members]]\nname = \"a\"\n\
             [traffic]\n[[timeline]]\nat = \"1s\"\naction = \"add_toxic\"\nmember = \"a\"\n\
             toxic = { type = \"connect_timeout\", attributes = { first = 2 } }\n",
            "bad.toml: timeline[0].toxic.attributes.first = 2: connect_timeout acts on the listener \
             before any connection exists, so it cannot be targeted",
        ),
    ];
    for (text, expected) in cases {
        let err = Scenario::from_str(text, Path::new("bad.toml")).unwrap_err();
        let message = err.to_string();
        // Each line ends with where the key is in the file, e.g. " (line 3, column 1)".
        assert!(
            message
                .lines()
                .any(|l| l == expected || l.starts_with(&format!("{expected} (line "))),
            "expected {expected:?} in:\n{message}"
        );
    }
}

#[test]
fn cli_exit_codes_are_64_for_a_bad_scenario_and_1_for_a_missed_bound() {
    let dir = scratch_dir("drill-cli");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[traffic]\nrate = \"fast\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-chaos"))
        .args(["drill"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml: traffic.rate = \"fast\": expected a number, found string"),
        "{stderr}"
    );

    let missed = dir.join("missed.toml");
    std::fs::write(
        &missed,
        "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n[[members]]\nname = \"a\"\n\
         [traffic]\nrate = 50\nduration = \"300ms\"\n[bounds]\nmax_client_failure_ratio = 0.0\n\
         all_bytes_intact = true\n[[timeline]]\nat = \"0s\"\naction = \"disable\"\nmember = \"a\"\n",
    )
    .unwrap();
    let json = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-chaos"))
        .args(["drill", "--seed", "5", "--json"])
        .arg(&json)
        .arg(&missed)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("seed      5"), "{stdout}");
    assert!(stdout.contains("result    FAIL"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["seed"], 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The elements of `node`, without the text between them.
fn elements<'a, 'i>(node: roxmltree::Node<'a, 'i>) -> Vec<roxmltree::Node<'a, 'i>> {
    node.children().filter(|n| n.is_element()).collect()
}

#[test]
fn cli_junit_has_a_failure_on_the_missed_bound_alone() {
    let dir = scratch_dir("drill-junit");
    // b is killed and restarted; no client can be served within 1ns of the restart (nor can
    // one never served again pass), while the other two bounds hold with room to spare.
    let scenario = dir.join("junit.toml");
    std::fs::write(
        &scenario,
        r#"
        name = "junit-missed"
        [sluice.routes.app]
        pool = "app"
        [sluice.pools.app]
        balance = "round_robin"
        [sluice.pools.app.health]
        interval = "100ms"
        fall = 1
        expect = "SLDRHELO"
        [[members]]
        name = "a"
        [[members]]
        name = "b"
        [[members]]
        name = "c"
        [traffic]
        clients = 8
        rate = 100
        payload = 1024
        duration = "1500ms"
        [[timeline]]
        at = "300ms"
        action = "kill"
        member = "b"
        [[timeline]]
        at = "900ms"
        action = "restart"
        member = "b"
        [bounds]
        returns_within = "1ns"
        max_client_failure_ratio = 0.5
        all_bytes_intact = true
        "#,
    )
    .unwrap();
    let (junit, json) = (dir.join("report.xml"), dir.join("report.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-chaos"))
        .args(["drill", "--seed", "5", "--junit"])
        .arg(&junit)
        .arg("--json")
        .arg(&json)
        .arg(&scenario)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("result    FAIL (2 of 3 bounds met)"),
        "{stdout}"
    );

    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let root = doc.root_element();
    assert!(root.has_tag_name("testsuites"), "{xml}");
    let suites = elements(root);
    assert_eq!(suites.len(), 1, "{xml}");
    let suite = suites[0];
    assert!(suite.has_tag_name("testsuite"));
    assert_eq!(suite.attribute("name"), Some("drill junit-missed"));
    assert_eq!(suite.attribute("tests"), Some("3"), "{xml}");
    assert_eq!(suite.attribute("failures"), Some("1"), "{xml}");
    assert_eq!(suite.attribute("errors"), Some("0"), "{xml}");
    let seed = elements(suite)
        .into_iter()
        .filter(|n| n.has_tag_name("properties"))
        .flat_map(elements)
        .find(|p| p.attribute("name") == Some("seed"));
    assert_eq!(seed.and_then(|p| p.attribute("value")), Some("5"), "{xml}");

    let cases: Vec<_> = elements(suite)
        .into_iter()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<_> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    assert_eq!(
        names,
        [
            "returns_within",
            "max_client_failure_ratio",
            "all_bytes_intact"
        ],
        "{xml}"
    );
    for case in &cases {
        assert_eq!(
            case.attribute("classname"),
            Some("sluice.drill.junit-missed")
        );
        let inner = elements(*case);
        if case.attribute("name") == Some("returns_within") {
            assert_eq!(inner.len(), 1, "{xml}");
            assert!(inner[0].has_tag_name("failure"), "{xml}");
            let message = inner[0].attribute("message").unwrap_or_default();
            assert!(
                message.starts_with("measured b ")
                    && message.ends_with(", bound returns_within = 1ns"),
                "{message}"
            );
        } else {
            assert!(inner.is_empty(), "a met bound passes:\n{xml}");
        }
    }
    let system_out = elements(suite)
        .into_iter()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    let timeline: Vec<&str> = system_out.lines().take_while(|l| !l.is_empty()).collect();
    assert_eq!(timeline.first(), Some(&"timeline"), "{system_out}");
    assert!(
        timeline.iter().any(|l| l.ends_with("fault    kill b")),
        "{system_out}"
    );
    assert!(
        timeline.iter().any(|l| l.ends_with("restore  restart b")),
        "{system_out}"
    );

    // --json alongside --junit: the same run.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["verdicts"][0]["bound"], "returns_within");
    assert_eq!(report["verdicts"][0]["pass"], false);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_junit_is_written_only_by_a_finished_run_and_an_unwritable_one_is_named_once() {
    let dir = scratch_dir("drill-junit-files");
    let junit = dir.join("report.xml");
    let run = |scenario: &Path, junit: &Path, toxiproxy: Option<String>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-chaos"));
        cmd.arg("drill").arg(scenario).arg("--junit").arg(junit);
        if let Some(url) = toxiproxy {
            cmd.env("TOXIPROXY_URL", url);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    };

    // A bad scenario: exit 64, no file.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[traffic]\nrate = \"fast\"\n").unwrap();
    let (code, _, stderr) = run(&bad, &junit, None);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(!junit.exists(), "a bad scenario writes no JUnit file");

    // A drill that cannot run (no injector where TOXIPROXY_URL points): exit 1, no file.
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n[[members]]\nname = \"a\"\n\
         [traffic]\nrate = 50\nduration = \"300ms\"\n[bounds]\nmax_client_failure_ratio = 1.0\n",
    )
    .unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (code, _, stderr) = run(&good, &junit, Some(format!("http://{closed}")));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("fault injector"), "{stderr}");
    assert_eq!(
        stderr.matches("Connection refused").count(),
        1,
        "the cause once: {stderr}"
    );
    assert!(
        !junit.exists(),
        "a drill that could not run writes no JUnit file"
    );

    // A drill that passes, but its JUnit file cannot be written: exit 1, the file named once.
    let unwritable = dir.join("no-such-dir").join("report.xml");
    let (code, stdout, stderr) = run(&good, &unwritable, None);
    assert!(stdout.contains("result    PASS"), "{stdout}\n{stderr}");
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let named = format!("writing the JUnit report to {}", unwritable.display());
    assert_eq!(stderr.matches(&named).count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches(&*unwritable.display().to_string()).count(),
        1,
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Operator actions under traffic: a drained member takes no new client until it is undrained,
/// and a reload in between loses nothing (every byte of every client checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_undrain_and_reload_under_traffic_lose_nothing() {
    init();
    let text = r#"
name = "operate"
[sluice]
seed = 11
[sluice.routes.app]
pool = "app"
[sluice.pools.app]
balance = "round_robin"
[sluice.pools.app.health]
interval = "200ms"
expect = "SLDRHELO"

[[members]]
name = "a"
[[members]]
name = "b"

[traffic]
clients = 8
rate = 100
payload = 4096
duration = "4s"
timeout = "3s"

[[timeline]]
at = "1s"
action = "drain"
member = "a"
[[timeline]]
at = "1.5s"
action = "reload"
[[timeline]]
at = "2.5s"
action = "undrain"
member = "a"

[bounds]
max_client_failure_ratio = 0.0
max_refused = 0
all_bytes_intact = true
"#;
    let path = scratch_dir("drill-operate").join("operate.toml");
    std::fs::write(&path, text).unwrap();
    let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let report = sluice_chaos::run(&scenario, &options()).await.unwrap();
    assert!(report.passed, "{report}");
    let at = |kind: &str| {
        report
            .injected
            .iter()
            .find(|s| s.text.starts_with(kind))
            .and_then(|s| s.at)
            .unwrap_or_else(|| panic!("{kind} never ran:\n{report}"))
    };
    let (drained, undrained) = (at("drain"), at("undrain"));
    let during: Vec<_> = report
        .clients
        .iter()
        .filter(|c| c.start > drained && c.end < undrained)
        .collect();
    assert!(
        during.len() > 50,
        "{} clients while a was drained",
        during.len()
    );
    assert!(
        during.iter().all(|c| c.member == Some(1)),
        "a drained member took a new client:\n{report}"
    );
    let after = report.clients.iter().filter(|c| c.start > undrained);
    assert!(
        after.filter(|c| c.member == Some(0)).count() > 0,
        "a took clients again once undrained"
    );
    assert!(report.to_string().contains("reload sluice"), "{report}");
    assert_eq!(report.measures.refused, 0, "{report}");
    assert!(
        report.to_string().contains("PASS  max_refused = 0"),
        "{report}"
    );
}

/// `[traffic] command` without `every`: the user's command runs once, through the route, and
/// its exit status is a verdict of its own beside the bounds (here there are none): 0 passes,
/// anything else fails with the status and the tail of its stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_workload_run_is_judged_by_its_exit_status() {
    init();
    let scenario = |tail: &str| {
        let text = format!(
            "[sluice.routes.app]\npool = \"app\"\n[sluice.pools.app]\n\
             [[members]]\nname = \"a\"\n\
             [traffic]\nduration = \"5s\"\n\
             command = \"bash -c 'exec 3<>/dev/tcp/{{host}}/{{port}} && head -c 8 <&3 | grep -q SLDRHELO{tail}'\"\n"
        );
        Scenario::from_str(&text, Path::new("once.toml")).unwrap_or_else(|e| panic!("{e}"))
    };
    let passing = sluice_chaos::run(&scenario(""), &options()).await.unwrap();
    let verdict = |r: &Report| {
        r.verdicts
            .iter()
            .find(|v| v.bound == "workload_exit")
            .cloned()
            .unwrap_or_else(|| panic!("no workload_exit verdict:\n{r}"))
    };
    assert!(passing.passed, "{passing}");
    assert_eq!(verdict(&passing).measured, "exit status: 0");
    assert_eq!(passing.measures.clients.total, 1);

    let failing = sluice_chaos::run(&scenario(" && echo gone >&2 && exit 3"), &options())
        .await
        .unwrap();
    assert!(!failing.passed, "{failing}");
    assert_eq!(
        verdict(&failing).measured,
        "exit status: 3; stderr: \"gone\""
    );
}
