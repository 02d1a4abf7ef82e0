//! Drills of a user's own service: real Redis (`redis-server`, `redis-cli` from the
//! distribution; `.ci/run` installs them). The test runs the primary itself, as a user runs
//! theirs, and the drill fronts it (`addr`); the replica is a `start` member the drill owns.
//! Traffic is `redis-cli PING`, one run per client.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sluice_testkit::{output_text, scratch_dir};
use tokio::time::Instant;

/// A `redis-server` this test started; killed by its PID when dropped.
struct Redis {
    child: Child,
    addr: SocketAddr,
}

impl Redis {
    fn start() -> Self {
        let addr = fixed_addr();
        let child = Command::new("redis-server")
            .args(["--port", &addr.port().to_string()])
            .args(["--bind", &addr.ip().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server: {e} (install it: apt-get install redis-server; .ci/run does)")
            });
        let redis = Self { child, addr };
        wait_accepting(addr, "redis-server");
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Blocks until `addr` accepts a connection: the process behind it is ready.
fn wait_accepting(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} never accepted on {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A drill of `primary` (addr) and a started replica: the primary's proxy is disabled at 1.5s
/// (the primary unreachable, as a partition does it) and enabled at 3.5s.
fn scenario(primary: SocketAddr, timeline_extra: &str, bounds: &str) -> String {
    format!(
        r#"
name = "redis"
[sluice]
seed = 3
[sluice.routes.redis]
pool = "redis"
connect_timeout = "500ms"
retry = {{ attempts = 3, min_backoff = "5ms", max_backoff = "50ms", budget = "1s" }}
[sluice.pools.redis.health]
interval = "200ms"
fast_interval = "100ms"
timeout = "200ms"
rise = 2
fall = 2
send = "PING\r\n"
expect = "+PONG"

[[members]]
name = "primary"
addr = "{primary}"
tier = 0
[[members]]
name = "replica"
start = "exec redis-server --port {{port}} --bind 127.0.0.1 --save '' --appendonly no"
tier = 1

[traffic]
command = "redis-cli -h {{host}} -p {{port}} PING"
every = "50ms"
duration = "5s"
timeout = "2s"

[[timeline]]
at = "1.5s"
action = "disable"
member = "primary"
[[timeline]]
at = "3.5s"
action = "enable"
member = "primary"
{timeline_extra}
[bounds]
{bounds}
"#
    )
}

fn drill(dir: &Path, text: &str) -> Output {
    let file = dir.join("redis.toml");
    std::fs::write(&file, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sluice-chaos"))
        .arg("drill")
        .arg(&file)
        .arg("--json")
        .arg(dir.join("report.json"))
        .arg("--junit")
        .arg(dir.join("report.xml"))
        .output()
        .unwrap()
}

#[test]
fn a_redis_primary_fails_over_to_a_started_replica_and_returns() {
    let primary = Redis::start();
    let dir = scratch_dir("redis-pass");
    let bounds = r#"
ejected_within = "1s"
backup_serves_within = "1.5s"
returns_within = "2s"
max_client_failure_ratio = 0.05
"#;
    let out = drill(&dir, &scenario(primary.addr, "", bounds));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    let clients = report["clients"].as_array().unwrap();
    // One run every 50 ms for 5 s.
    assert!(
        (95..=101).contains(&clients.len()),
        "{} runs",
        clients.len()
    );
    let served_by = |member: u64| {
        clients
            .iter()
            .filter(|c| c["outcome"] == "ok" && c["member"] == member)
            .count()
    };
    assert!(served_by(0) > 0, "the primary served runs before and after");
    assert!(
        served_by(1) > 0,
        "the replica served runs while the primary was cut off"
    );
    let xml = std::fs::read_to_string(dir.join("report.xml")).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(
        xml.contains("<testcase name=\"backup_serves_within\""),
        "{xml}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // The user's Redis is still the user's: the drill never stopped it.
    assert!(TcpStream::connect(primary.addr).is_ok());
}

#[test]
fn an_impossible_bound_fails_the_redis_drill_and_its_junit_names_it() {
    let primary = Redis::start();
    let dir = scratch_dir("redis-fail");
    let bounds = "backup_serves_within = \"1.5s\"\nreturns_within = \"1ns\"\n";
    let out = drill(&dir, &scenario(primary.addr, "", bounds));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let xml = std::fs::read_to_string(dir.join("report.xml")).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    let failing = xml
        .split("<testcase ")
        .filter(|case| case.contains("<failure"))
        .collect::<Vec<_>>();
    assert_eq!(failing.len(), 1, "{xml}");
    assert!(failing[0].starts_with("name=\"returns_within\""), "{xml}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn user_member_mistakes_are_scenario_errors_before_anything_starts() {
    let dir = scratch_dir("redis-bad");
    let primary: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let kill = "[[timeline]]\nat = \"4s\"\naction = \"kill\"\nmember = \"primary\"\n";
    let text_ = scenario(primary, kill, "all_bytes_intact = true")
        .replace("redis-cli -h", "no-such-redis-cli -h");
    let out = drill(&dir, &text_);
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "redis.toml: traffic.command = \"no-such-redis-cli -h {host} -p {port} PING\": \
         no-such-redis-cli: command not found on PATH",
        "redis.toml: timeline[2].action = \"kill\": member \"primary\" is your upstream at \
         127.0.0.1:1, which the drill does not own",
        "redis.toml: bounds.all_bytes_intact = true: needs the built-in clients and servers' \
         checksums",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(!dir.join("report.xml").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A loopback address for a fixed-address listener (what a deployed sluice's config names),
/// on 127.0.0.2: the drills running beside this test (in this process and in `sluice-chaos`
/// children, each walking its own ports) bind their members on 127.0.0.1, and outgoing
/// connections take their source ports on 127.0.0.1 too, so between this pick and the bind
/// of the listener named here nothing else can take the port (once CI saw a concurrent
/// drill's member take a port picked on 127.0.0.1).
fn fixed_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.2:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.2")
}

/// `sluice run` as deployed, stopped by its PID when dropped.
struct Deployed {
    child: Child,
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_running_sluice_is_drilled_through_its_route_and_admin_api() {
    let primary = Redis::start();
    let dir = scratch_dir("redis-target");
    let (listen, admin) = (fixed_addr(), fixed_addr());
    let (primary_proxy, replica_proxy) = (fixed_addr(), fixed_addr());
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
access_log = "{log}"
[admin]
listen = "{admin}"
[routes.redis]
listen = "{listen}"
pool = "redis"
connect_timeout = "500ms"
[pools.redis]
members = [{{ addr = "{primary_proxy}", tier = 0 }}, {{ addr = "{replica_proxy}", tier = 1 }}]
[pools.redis.health]
interval = "200ms"
fast_interval = "100ms"
timeout = "200ms"
rise = 2
fall = 2
send = "PING\r\n"
expect = "+PONG"
"#,
            log = dir.join("access.log").display()
        ),
    )
    .unwrap();
    let sluice = Path::new(env!("CARGO_BIN_EXE_sluice-chaos")).with_file_name("sluice");
    assert!(sluice.is_file(), "build it: cargo test --workspace");
    let _deployed = Deployed {
        child: Command::new(&sluice)
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    wait_accepting(admin, "sluice's admin API");

    // A reload through the admin API mid-drill, as config management does it.
    let text_ = scenario(
        primary.addr,
        "[[timeline]]\nat = \"2.5s\"\naction = \"reload\"\n",
        "ejected_within = \"1s\"\nbackup_serves_within = \"1.5s\"\nreturns_within = \"2s\"\nmax_client_failure_ratio = 0.05\n",
    )
    .replace(
        "[sluice]",
        &format!(
            "[target]\nlisten = \"{listen}\"\nadmin = \"{admin}\"\naccess_log = \"access.log\"\n\n[unused]"
        ),
    );
    // The [sluice] tables of the shared scenario go: the running sluice has its own config.
    let text_ = drop_tables(&text_, "[unused]", "[[members]]");
    let text_ = text_
        .replace(
            &format!("addr = \"{}\"", primary.addr),
            &format!("addr = \"{}\"\nproxy = \"{primary_proxy}\"", primary.addr),
        )
        .replace(
            "tier = 1\n",
            &format!("tier = 1\nproxy = \"{replica_proxy}\"\n"),
        );
    let out = drill(&dir, &text_);
    assert_eq!(out.status.code(), Some(0), "{}\n{text_}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("sluice    {listen}")), "{stdout}");
    assert!(stdout.contains("reload sluice"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let ok = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "ok")
        .count();
    assert!(ok > 80, "{ok} runs served by the deployed sluice");
    // Every served run is placed on a member from the deployed sluice's access log, the last
    // ones too: the drill reads the log until the route has no open connection.
    let unplaced: Vec<&serde_json::Value> = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "ok" && c["member"].is_null())
        .collect();
    assert!(
        unplaced.is_empty(),
        "served runs with no member: {unplaced:?}"
    );
    let xml = std::fs::read_to_string(dir.join("report.xml")).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `text` without the lines from `from` up to (not including) `to`.
fn drop_tables(text: &str, from: &str, to: &str) -> String {
    let start = text.find(from).unwrap();
    let end = start + text[start..].find(to).unwrap();
    format!("{}{}", &text[..start], &text[end..])
}
