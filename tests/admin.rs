//! The admin API over real loopback sockets: liveness through a drain, `/status`, member
//! drain/enable against live traffic, JSON errors, and the Prometheus scrape.
//!
//! The metrics recorder is global to this test process, so metric assertions use labels (route
//! and pool names) that only one test uses.

mod common;
#[path = "admin/harness.rs"]
mod harness;

use std::net::SocketAddr;

use common::{Behavior, Upstream};
use harness::{
    Admin, DEADLINE, connect, echo, identify_then_echo, pick, request, request_full, sample,
};
use serde_json::{Value, json};
use sluice_testkit::settle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NO_HEALTH: &str = "enabled = false";

#[tokio::test]
async fn healthz_is_ok_while_serving_and_503_while_draining() {
    let upstream = Upstream::start(Behavior::Echo).await;
    let members = format!(r#"{{ addr = "{}" }}"#, upstream.addr);
    let sluice = Admin::start("healthz", &members, NO_HEALTH).await;
    let (code, body) = sluice.get("/healthz").await;
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"status": "ok"}))
    );

    let mut live = TcpStream::connect(sluice.route).await.unwrap();
    echo(&mut live, b"before").await;
    sluice.shutdown.stop();
    // The live connection holds the drain open, and the admin API keeps answering through it.
    let (code, body) = sluice.get("/healthz").await;
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()),
        (503, json!({"status": "draining"}))
    );
    assert_eq!(sluice.status().await["status"], "draining");
    echo(&mut live, b"during the drain").await;

    live.shutdown().await.unwrap();
    let admin = sluice.admin;
    assert_eq!(sluice.stop().await.cut, 0);
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin still listening after the run"
    );
}

#[tokio::test]
async fn status_lists_routes_pools_and_members() {
    let up = Upstream::start(Behavior::Echo).await;
    let dead = common::closed_port().await;
    let members = format!(
        r#"{{ addr = "localhost:{}", weight = 3 }}, {{ addr = "{dead}", tier = 1 }}"#,
        up.addr.port()
    );
    let health = r#"interval = "50ms"
            fast_interval = "20ms"
            timeout = "200ms"
            rise = 1
            fall = 1"#;
    let sluice = Admin::start("statusroute", &members, health).await;
    let status = sluice
        .wait_status("the dead member to be down", |s| {
            s["pools"][0]["members"][1]["health"] == "down"
        })
        .await;
    assert_eq!(status["status"], "ok");
    assert_eq!(
        status["routes"],
        json!([{"name": "statusroute", "listen": [sluice.route.to_string()], "pool": "statusroute", "active": 0, "total": 0}])
    );
    let pool = &status["pools"][0];
    assert_eq!(status["pools"].as_array().unwrap().len(), 1);
    assert_eq!(
        pick(pool, &["name", "balance", "min_healthy", "all_down"]),
        json!({"name": "statusroute", "balance": "round_robin", "min_healthy": 1, "all_down": "reject"})
    );
    let first = &pool["members"][0];
    // A name is a DNS entry: its member is named after the entry and the address.
    assert_eq!(
        first["addr"],
        format!("localhost:{} (127.0.0.1)", up.addr.port())
    );
    let resolved: SocketAddr = first["resolved"].as_str().unwrap().parse().unwrap();
    assert!(
        resolved.ip().is_loopback() && resolved.port() == up.addr.port(),
        "{resolved}"
    );
    // Its health is not asserted: `localhost` may resolve to ::1, where nothing listens.
    assert_eq!(
        pick(first, &["tier", "weight", "admin", "breaker", "active"]),
        json!({"tier": 0, "weight": 3, "admin": "enabled", "breaker": {"state": "closed"}, "active": 0})
    );
    assert_eq!(
        pool["members"][1],
        json!({"addr": dead.to_string(), "resolved": dead.to_string(), "tier": 1, "weight": 1,
               "health": "down", "admin": "enabled", "breaker": {"state": "closed"}, "active": 0,
               "max_connections": null})
    );
    sluice.stop().await;
}

#[tokio::test]
async fn status_shows_an_open_breaker_and_the_connection_cap() {
    let dead = common::closed_port().await;
    let sluice = Admin::start_toml(
        "breakerroute",
        &format!(
            r#"
            [routes.breakerroute]
            listen = "127.0.0.1:0"
            pool = "breakerroute"
            retry = {{ attempts = 1 }}
            [pools.breakerroute]
            members = [{{ addr = "{dead}" }}]
            [pools.breakerroute.health]
            enabled = false
            [pools.breakerroute.breaker]
            consecutive_failures = 1
            open_for = "30s"
            max_open_for = "60s"
            max_connections = 7
            "#
        ),
    )
    .await;
    // The refused connect is the one failure that opens the breaker.
    let _ = common::read_all(sluice.route).await;
    let status = sluice
        .wait_status("the breaker to open", |s| {
            s["pools"][0]["members"][0]["breaker"]["state"] == "open"
        })
        .await;
    let member = &status["pools"][0]["members"][0];
    let reopens = member["breaker"]["half_open_in_ms"].as_u64().unwrap();
    assert!((1..=30_000).contains(&reopens), "{member}");
    assert_eq!(member["max_connections"], 7);
    sluice.stop().await;
}

#[tokio::test]
async fn drained_member_takes_no_new_connections_while_its_live_one_flows() {
    let (a, _a) = identify_then_echo(b'a').await;
    let (b, _b) = identify_then_echo(b'b').await;
    let members = format!(r#"{{ addr = "{a}" }}, {{ addr = "{b}" }}"#);
    let sluice = Admin::start("drainroute", &members, NO_HEALTH).await;
    let (mut live, id) = connect(sluice.route).await;
    let (target, other) = if id == b'a' { (a, b'b') } else { (b, b'a') };
    let drain = format!("/pools/drainroute/members/{target}/drain");

    let (code, body) = sluice.post(&drain).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        pick(&body, &["pool", "changed"]),
        json!({"pool": "drainroute", "changed": true})
    );
    assert_eq!(
        pick(&body["member"], &["addr", "admin", "active"]),
        json!({"addr": target.to_string(), "admin": "drain", "active": 1}),
        "the live connection still counts"
    );
    for _ in 0..20 {
        let (_, id) = connect(sluice.route).await;
        assert_eq!(id, other, "a new connection reached the drained member");
    }
    echo(&mut live, b"still flowing").await;
    let (code, body) = sluice.post(&drain).await;
    assert_eq!(
        (code, &body["changed"]),
        (200, &json!(false)),
        "drain is idempotent"
    );

    let (code, body) = sluice
        .post(&format!("/pools/drainroute/members/{target}/enable"))
        .await;
    assert_eq!(
        (code, &body["changed"], &body["member"]["admin"]),
        (200, &json!(true), &json!("enabled"))
    );
    let mut reached = Vec::new();
    for _ in 0..4 {
        reached.push(connect(sluice.route).await.1);
    }
    assert!(
        reached.contains(&id),
        "enabled member got no traffic: {reached:?}"
    );
    echo(&mut live, b"after enable").await;
    live.shutdown().await.unwrap();
    drop(live);
    assert_eq!(sluice.stop().await.cut, 0);
}

#[tokio::test]
async fn member_can_be_named_by_its_resolved_address() {
    let up = Upstream::start(Behavior::Echo).await;
    let members = format!(r#"{{ addr = "localhost:{}" }}"#, up.addr.port());
    let sluice = Admin::start("resolvedroute", &members, NO_HEALTH).await;
    let resolved = sluice.status().await["pools"][0]["members"][0]["resolved"]
        .as_str()
        .unwrap()
        .to_string();
    // `[::1]:port` would need its brackets and colons encoded; percent-encode every byte.
    let encoded: String = resolved.bytes().map(|b| format!("%{b:02X}")).collect();
    let (code, body) = sluice
        .post(&format!("/pools/resolvedroute/members/{encoded}/drain"))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["member"]["addr"],
        format!("localhost:{} (127.0.0.1)", up.addr.port())
    );
    assert_eq!(body["member"]["admin"], "drain");
    sluice.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors_and_change_nothing() {
    let up = Upstream::start(Behavior::Echo).await;
    let members = format!(r#"{{ addr = "{}" }}"#, up.addr);
    let sluice = Admin::start("badroute", &members, NO_HEALTH).await;
    let before = sluice.status().await;

    let (code, body) = sluice
        .post(&format!("/pools/nopool/members/{}/drain", up.addr))
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        body["error"],
        r#"no such pool "nopool" (defined: badroute)"#
    );

    let (code, body) = sluice
        .post("/pools/badroute/members/10.9.9.9:1/drain")
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        body["error"],
        format!(
            r#"no member "10.9.9.9:1" in pool "badroute" (members: {})"#,
            up.addr
        )
    );

    let (code, body) = sluice
        .get(&format!("/pools/badroute/members/{}/drain", up.addr))
        .await;
    assert_eq!(code, 405, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("method GET not allowed on /pools/badroute/"),
        "{error}"
    );

    let (code, body) = request(sluice.admin, "POST", "/status").await;
    assert_eq!(code, 405, "{body}");
    let (code, body) = sluice.get("/reload").await;
    assert_eq!(code, 405, "{body}");
    assert!(body.contains("POST /reload"), "{body}");
    let (code, body) = sluice.get("/nope").await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no such endpoint: GET /nope"), "{body}");

    assert_eq!(sluice.status().await, before);
    sluice.stop().await;
}

#[tokio::test]
async fn metrics_count_connections_and_bytes_per_route() {
    let up = Upstream::start(Behavior::Echo).await;
    let members = format!(r#"{{ addr = "{}" }}"#, up.addr);
    let health = r#"interval = "20ms"
            fast_interval = "20ms""#;
    let sluice = Admin::start("metricsroute", &members, health).await;
    let sizes = [1usize, 1000, 70_000];
    for (i, &size) in sizes.iter().enumerate() {
        let mut stream = TcpStream::connect(sluice.route).await.unwrap();
        echo(&mut stream, &sluice_testkit::payload(size, i as u64 + 1)).await;
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
    }
    let total = sizes.iter().sum::<usize>() as f64;
    let route = [("route", "metricsroute")];
    let scrape = async || {
        let (code, content_type, text) = request_full(sluice.admin, "GET", "/metrics").await;
        assert_eq!(
            (code, content_type.as_str()),
            (200, "text/plain; version=0.0.4")
        );
        let ok = sample(
            &text,
            "sluice_connections_total",
            &[route[0], ("outcome", "ok")],
        );
        let probed = sample(
            &text,
            "sluice_health_check_duration_seconds_count",
            &[("pool", "metricsroute")],
        );
        (ok, probed, text)
    };
    let done = |ok: Option<f64>, probed: Option<f64>| {
        ok == Some(sizes.len() as f64) && probed.is_some_and(|n| n >= 1.0)
    };
    let (ok, probed, text) = settle(DEADLINE, scrape, |(ok, probed, _)| done(*ok, *probed)).await;
    assert!(
        done(ok, probed),
        "connections ok = {ok:?}, probes = {probed:?}\n{text}"
    );
    let bytes = |direction| {
        sample(
            &text,
            "sluice_bytes_total",
            &[route[0], ("direction", direction)],
        )
    };
    assert_eq!(
        (bytes("upstream"), bytes("downstream")),
        (Some(total), Some(total))
    );
    assert!(
        text.contains("# HELP sluice_connections_total Client connections by route"),
        "{text}"
    );
    // One connect attempt per connection, all ok, each timed; no connection left active.
    let member = up.addr.to_string();
    let labels = [("pool", "metricsroute"), ("member", member.as_str())];
    assert_eq!(
        sample(
            &text,
            "sluice_connect_attempts_total",
            &[labels[0], labels[1], ("result", "ok")]
        ),
        Some(sizes.len() as f64)
    );
    assert_eq!(
        sample(&text, "sluice_connect_duration_seconds_count", &labels),
        Some(sizes.len() as f64)
    );
    assert_eq!(
        sample(&text, "sluice_member_active_connections", &labels),
        Some(0.0)
    );
    let bucket = sample(
        &text,
        "sluice_health_check_duration_seconds_bucket",
        &[("pool", "metricsroute"), ("le", "10")],
    );
    assert!(
        bucket.is_some_and(|n| n >= 1.0),
        "no configured buckets:\n{text}"
    );
    // Exported from the start, although no breaker of this pool ever changed state.
    let breaker = sample(&text, "sluice_breaker_state", &[("pool", "metricsroute")]);
    assert_eq!(breaker, Some(0.0), "{text}");
    // The version, and the process series Prometheus client libraries export (read at scrape).
    assert_eq!(
        sample(
            &text,
            "sluice_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{text}"
    );
    let unlabelled = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let open_fds = unlabelled("process_open_fds").expect("process_open_fds");
    let max_fds = unlabelled("process_max_fds").expect("process_max_fds");
    assert!(open_fds >= 3.0 && max_fds > open_fds, "{text}");
    assert!(
        unlabelled("process_resident_memory_bytes").is_some_and(|b| b > 1e6),
        "{text}"
    );
    assert!(
        unlabelled("process_start_time_seconds").is_some_and(|t| t > 1.7e9),
        "{text}"
    );
    assert!(unlabelled("process_cpu_seconds_total").is_some(), "{text}");
    sluice.stop().await;
}
