//! sluice under its own descriptor limit, as systemd's default (soft 1024) makes it in
//! production: run with `prlimit` at a low limit (soft = hard, so it cannot raise it) and
//! flooded with idle clients.
//!
//! - Out of descriptors, every failed accept and connect is sluice's shortage: no member's
//!   breaker opens, no member is marked down, and once the clients leave the next client is
//!   served at once (measured before the fix: both breakers open, new clients reset for the
//!   breaker's whole `open_for`).
//! - Without `max_connections`, the cap comes from the limit: clients past it are closed at
//!   once and counted (`rejected_limit`), none waits in an accept queue sluice cannot drain,
//!   and the admin API answers throughout.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::running::Running;
use common::{Behavior, Upstream};
use sluice_testkit::{eventually_async, scratch_dir, settle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(name: &str, a: SocketAddr, b: SocketAddr, extra: &str) -> PathBuf {
    let dir = scratch_dir(&format!("fd-limit-{name}"));
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"
workers = 1
shutdown_grace = "1s"
{extra}
[admin]
listen = "127.0.0.1:0"
[routes.app]
listen = "127.0.0.1:0"
pool = "app"
[pools.app]
members = [{{ addr = "{a}" }}, {{ addr = "{b}" }}]
[pools.app.health]
interval = "100ms"
fast_interval = "100ms"
fall = 2
[pools.app.breaker]
consecutive_failures = 3
open_for = "60s"
"#
        ),
    )
    .unwrap();
    path
}

/// One HTTP/1.0 GET to the admin API; `None` while it cannot answer.
async fn admin_get(admin: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(admin).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut reply))
        .await
        .ok()?
        .ok()?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let ok = reply.lines().next().is_some_and(|l| l.contains(" 200 "));
    ok.then_some(reply)
}

/// The value of the first metric line starting with `series` (0 when absent).
fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `n` idle clients of `addr`, each watched by a task that counts it in `closed` when sluice
/// closes it (EOF or reset); a relayed client stays open (its member echoes only what it is
/// sent). Dropping the returned set closes the clients.
async fn idle_clients(addr: SocketAddr, n: usize) -> (tokio::task::JoinSet<()>, Arc<AtomicUsize>) {
    let closed = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let closed = Arc::clone(&closed);
        set.spawn(async move {
            let mut byte = [0u8; 1];
            if matches!(client.read(&mut byte).await, Ok(0) | Err(_)) {
                closed.fetch_add(1, Ordering::SeqCst);
            }
            // Hold the socket until the set is dropped.
            std::future::pending::<()>().await;
        });
    }
    (set, closed)
}

/// The sum of every metric line starting with `prefix`.
fn sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One echo round trip through the route, within 5 s (a deadline for a loaded machine, not a
/// latency claim: what counts is that the client is served, not refused or reset).
async fn served(addr: SocketAddr) -> bool {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply == *b"ping")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), exchange).await,
        Ok(Ok(true))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_blames_no_member() {
    let (a, b) = (
        Upstream::start(Behavior::Echo).await,
        Upstream::start(Behavior::Echo).await,
    );
    // A cap far above what 160 descriptors carry: sluice warns, and then meets EMFILE.
    let path = config("emfile", a.addr, b.addr, "max_connections = 10000");
    let sluice = Running::start_with(&path, &["prlimit", "--nofile=160:160", "--"]).await;
    let admin = sluice.admin.expect("admin listening");

    // 300 idle clients: the first few dozen are relayed, then every accept or connect fails.
    // Each client past the descriptors is accepted once one frees up and closed when its
    // connect fails, so all but the relayed ones (at most 80 in 160 fds) are closed in the end.
    let (clients, closed) = idle_clients(sluice.addr, 300).await;
    let seen = settle(
        Duration::from_secs(20),
        async || closed.load(Ordering::SeqCst),
        |n| *n >= 200,
    )
    .await;
    if seen < 200 {
        let mut sluice = sluice;
        let mut log = Vec::new();
        while let Ok(line) = sluice.lines.try_recv() {
            log.push(line.to_string());
        }
        let tail = log[log.len().saturating_sub(40)..].join("\n");
        panic!("{seen} of 300 clients closed by sluice in 20s; its log ends:\n{tail}");
    }
    drop(clients);

    // Every one of the 300 clients ends up counted once: relayed ones as `ok` when they
    // leave, the others as `local_resource` (shed at accept, or met at the member connect).
    // Once all are counted sluice holds none of their descriptors.
    let metrics = settle(
        Duration::from_secs(20),
        async || admin_get(admin, "/metrics").await,
        |m| {
            m.as_deref()
                .is_some_and(|m| sum(m, "sluice_connections_total{route=\"app\"") == 300.0)
        },
    )
    .await
    .expect("the admin API answers once the clients left");
    assert_eq!(
        sum(&metrics, "sluice_connections_total{route=\"app\""),
        300.0,
        "{metrics}"
    );
    let local = metric(
        &metrics,
        "sluice_connections_total{route=\"app\",outcome=\"local_resource\"}",
    );
    assert!(local >= 200.0, "{metrics}");
    assert_eq!(
        local
            + metric(
                &metrics,
                "sluice_connections_total{route=\"app\",outcome=\"ok\"}"
            ),
        300.0,
        "nothing but sluice's own shortage failed a client: {metrics}"
    );

    // Both members up, breakers closed, and the next client is served.
    let status = admin_get(admin, "/status").await.expect("status");
    let status: serde_json::Value =
        serde_json::from_str(status.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    for member in status["pools"][0]["members"].as_array().unwrap() {
        assert_eq!(member["health"], "up", "{member}");
        assert_eq!(member["breaker"]["state"], "closed", "{member}");
    }
    assert!(served(sluice.addr).await, "a new client is served at once");

    // The shortage is logged, not once per client: at most one line a second per op.
    let lines = sluice.stop().await;
    let shortage_lines = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("sluice is short of its own resources"))
        })
        .count();
    assert!(shortage_lines >= 1, "the shortage is logged");
    assert!(
        shortage_lines <= 3 * 25,
        "{shortage_lines} shortage lines: not throttled"
    );
    assert!(
        !lines.iter().any(|l| l["message"] == "member down"),
        "a member was marked down for sluice's own shortage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_max_connections_the_cap_comes_from_the_limit_and_refuses_cleanly() {
    let (a, b) = (
        Upstream::start(Behavior::Echo).await,
        Upstream::start(Behavior::Echo).await,
    );
    let path = config("cap", a.addr, b.addr, "");
    // 400 descriptors: 322 kept aside (320 + one probe per member), 39 connections.
    let sluice = Running::start_with(&path, &["prlimit", "--nofile=400:400", "--"]).await;
    let admin = sluice.admin.expect("admin listening");
    let limit_line = sluice
        .startup
        .iter()
        .find(|l| l["message"] == "descriptor limit")
        .expect("a descriptor limit line at start");
    assert_eq!(limit_line["fd_limit"], 400, "{limit_line}");
    assert_eq!(limit_line["max_connections"], 39, "{limit_line}");

    // 100 idle clients: 39 relayed, the 61 past the cap closed at once.
    let (clients, closed) = idle_clients(sluice.addr, 100).await;
    eventually_async(
        Duration::from_secs(5),
        "61 clients refused at the cap",
        async || closed.load(Ordering::SeqCst) >= 61,
    )
    .await;
    // The admin API answers at the cap: its descriptors are in the reserve.
    let metrics = admin_get(admin, "/metrics")
        .await
        .expect("admin answers at the cap");
    assert_eq!(
        metric(
            &metrics,
            "sluice_connections_total{route=\"app\",outcome=\"rejected_limit\"}"
        ),
        61.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "sluice_local_resource_errors_total"),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        closed.load(Ordering::SeqCst),
        61,
        "only clients past the cap are closed"
    );
    drop(clients);
    eventually_async(
        Duration::from_secs(5),
        "a client served after the others left",
        async || served(sluice.addr).await,
    )
    .await;
    sluice.stop().await;
}
