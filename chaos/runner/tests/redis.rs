//! Drills of a user's own service: real Redis (`redis-server`, `redis-cli` from the
//! distribution; `.ci/run` installs them). The test runs the primary itself, as a user runs
//! theirs, and the drill fronts it (`addr`); the replica is a `start` member the drill owns.
//! Traffic is `redis-cli PING`, one run per client.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` this test started; killed by its PID when dropped.
struct Redis {
    child: Child,
    addr: SocketAddr,
}

impl Redis {
    fn start() -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server: {e} (install it: apt-get install redis-server; .ci/run does)")
            });
        let redis = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server never accepted on {addr}");
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-redis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_redis_primary_fails_over_to_a_started_replica_and_returns() {
    let primary = Redis::start();
    let dir = scratch("pass");
    let bounds = r#"
ejected_within = "1s"
backup_serves_within = "1.5s"
returns_within = "2s"
max_client_failure_ratio = 0.05
"#;
    let out = drill(&dir, &scenario(primary.addr, "", bounds));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    let clients = report["clients"].as_array().unwrap();
    // One run every 50 ms for 5 s.
    assert!((95..=101).contains(&clients.len()), "{} runs", clients.len());
    let served_by = |member: u64| {
        clients
            .iter()
            .filter(|c| c["outcome"] == "ok" && c["member"] == member)
            .count()
    };
    assert!(served_by(0) > 0, "the primary served runs before and after");
    assert!(served_by(1) > 0, "the replica served runs while the primary was cut off");
    let xml = std::fs::read_to_string(dir.join("report.xml")).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(xml.contains("<testcase name=\"backup_serves_within\""), "{xml}");
    std::fs::remove_dir_all(&dir).unwrap();
    // The user's Redis is still the user's: the drill never stopped it.
    assert!(TcpStream::connect(primary.addr).is_ok());
}

#[test]
fn an_impossible_bound_fails_the_redis_drill_and_its_junit_names_it() {
    let primary = Redis::start();
    let dir = scratch("fail");
    let bounds = "backup_serves_within = \"1.5s\"\nreturns_within = \"1ns\"\n";
    let out = drill(&dir, &scenario(primary.addr, "", bounds));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
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
    let dir = scratch("bad");
    let primary: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let kill = "[[timeline]]\nat = \"4s\"\naction = \"kill\"\nmember = \"primary\"\n";
    let text_ = scenario(primary, kill, "all_bytes_intact = true")
        .replace("redis-cli -h", "no-such-redis-cli -h");
    let out = drill(&dir, &text_);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "redis.toml: traffic.command = \"no-such-redis-cli -h {host} -p {port} PING\": \
         no-such-redis-cli: command not found on PATH",
        "redis.toml: timeline[2].action = \"kill\": member \"primary\" is your upstream at \
         127.0.0.1:1, which the drill does not own",
        "redis.toml: bounds.all_bytes_intact = true: needs the built-in clients and servers' \
         checksums",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(!dir.join("report.xml").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
