//! Health checks that follow a member's role rather than its traffic port: `health.port` with
//! `health.http` against real role endpoints, `expect = { regex }` against a Redis-like INFO
//! reply, and a probe port that is closed while the traffic port is fine.
//!
//! Every wait polls a condition against a deadline; nothing sleeps to synchronize.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Behavior, Sluice, Upstream, closed_port, read_all};
use sluice::config::{Expect, HealthConfig, MemberConfig};
use sluice::health::{ProbeFailure, check, spawn_checker};
use sluice::upstream::Member;
use sluice_testkit::{eventually, eventually_async};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(50);
const FAST: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_millis(500);
const RISE_FALL: u32 = 2;
/// Room for a loaded CI machine on top of the schedule's own worst case.
const SLACK: Duration = Duration::from_secs(2);

/// Worst case for `n` consecutive probes to be counted, from a stable member.
fn within(n: u32) -> Duration {
    INTERVAL.mul_f64(1.1) + (FAST.mul_f64(1.1) + TIMEOUT) * n + SLACK
}

fn health_toml(extra: &str) -> String {
    format!(
        "interval = \"50ms\"\nfast_interval = \"20ms\"\ntimeout = \"500ms\"\nrise = {RISE_FALL}\nfall = {RISE_FALL}\n{extra}\n"
    )
}

/// A role endpoint as Patroni serves it: `GET /primary` answers 200 while `primary` is set
/// and 503 otherwise; any other request is a 404.
fn role_endpoint(listener: TcpListener, primary: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer_http(stream, Arc::clone(&primary)));
        }
    })
}

async fn answer_http(mut stream: TcpStream, primary: Arc<AtomicBool>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = if !head.starts_with("get /primary http/1.1\r\n") || !head.contains("\r\nhost: ") {
        "404 Not Found"
    } else if primary.load(Ordering::SeqCst) {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    let body = if status.starts_with("200") {
        "{\"role\":\"master\"}"
    } else {
        "{\"role\":\"replica\"}"
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
}

/// Two listeners on the same port of 127.0.0.2 and 127.0.0.3, as two hosts' role endpoints
/// share a port (`health.port` is one per pool).
async fn same_port_pair() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        if let Ok(second) = TcpListener::bind(("127.0.0.3", port)).await {
            return (first, second);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// The id byte each of `n` clients through `addr` reads (0 when rejected).
async fn ids(addr: SocketAddr, n: usize) -> Vec<u8> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let got = read_all(addr).await.unwrap_or_default();
        seen.push(got.first().copied().unwrap_or(0));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_role_on_another_port_decides_which_member_gets_clients_and_follows_a_switchover() {
    let traffic_1 = Upstream::serve(
        TcpListener::bind("127.0.0.2:0").await.unwrap(),
        Behavior::Identify(1),
    );
    let traffic_2 = Upstream::serve(
        TcpListener::bind("127.0.0.3:0").await.unwrap(),
        Behavior::Identify(2),
    );
    let (role_1, role_2) = same_port_pair().await;
    let role_port = role_1.local_addr().unwrap().port();
    let (primary_1, primary_2) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
    );
    let _endpoints = [
        role_endpoint(role_1, Arc::clone(&primary_1)),
        role_endpoint(role_2, Arc::clone(&primary_2)),
    ];
    let config = format!(
        "[routes.db]\nlisten = \"127.0.0.1:0\"\npool = \"db\"\n\n[pools.db]\nmembers = [{{ addr = \"{}\" }}, {{ addr = \"{}\" }}]\n\n[pools.db.health]\n{}",
        traffic_1.addr,
        traffic_2.addr,
        health_toml(&format!(
            "init_state = \"down\"\nport = {role_port}\nhttp = {{ path = \"/primary\" }}"
        )),
    );
    let sluice = Sluice::start(&config).await;
    let pool = Arc::clone(sluice.pool("db"));
    let up = |i: usize| pool.members()[i].is_up();

    eventually(within(RISE_FALL), "member 1 up", || up(0)).await;
    // Member 2's endpoint has said 503 on every probe so far, so it never came up.
    assert!(!up(1), "a replica came up");
    assert_eq!(ids(sluice.addr("db"), 20).await, vec![1; 20]);
    assert_eq!(traffic_1.accepted(), 20, "probes went to the traffic port");
    assert_eq!(traffic_2.accepted(), 0, "a replica got clients");

    // Switchover: member 2 becomes the primary.
    primary_1.store(false, Ordering::SeqCst);
    primary_2.store(true, Ordering::SeqCst);
    let flipped = Instant::now();
    eventually(within(RISE_FALL), "roles to flip", || !up(0) && up(1)).await;
    let took = flipped.elapsed();
    assert_eq!(ids(sluice.addr("db"), 20).await, vec![2; 20]);
    assert_eq!(traffic_1.accepted(), 20, "the old primary got clients");
    assert_eq!(traffic_2.accepted(), 20);
    eprintln!("traffic followed the switchover in {took:?}");
    sluice.stop().await;
}

/// A Redis-like server: answers each `INFO replication` with a bulk reply whose role line
/// follows `master`, and keeps the connection open as Redis does.
fn redis_like(listener: TcpListener, master: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let master = Arc::clone(&master);
            tokio::spawn(async move {
                let mut line = Vec::new();
                let mut buf = [0u8; 256];
                while !line.ends_with(b"\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => line.extend_from_slice(&buf[..n]),
                    }
                }
                if line != b"INFO replication\r\n" {
                    return;
                }
                let role = if master.load(Ordering::SeqCst) {
                    "role:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6379,state=online\r\n"
                } else {
                    "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_link_status:up\r\n"
                };
                let info = format!(
                    "# Replication\r\n{role}master_replid:8f3c1a7be5d24f0e9a6b13c9d0e2f4a5b6c7d8e9\r\nmaster_repl_offset:123456\r\n"
                );
                let reply = format!("${}\r\n{info}\r\n", info.len());
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
            });
        }
    })
}

fn single_member(addr: SocketAddr) -> Arc<Member> {
    let config = MemberConfig {
        name: addr.to_string(),
        addr,
        weight: 1,
        tier: 0,
    };
    Arc::new(Member::new(0, &config, true, Instant::now()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_regex_finds_the_role_line_in_a_multi_line_info_reply() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let master = Arc::new(AtomicBool::new(true));
    let _server = redis_like(listener, Arc::clone(&master));
    let config = sluice::config::from_str(
        &format!(
            "[routes.r]\nlisten = \"127.0.0.1:0\"\npool = \"r\"\n[pools.r]\nmembers = [{{ addr = \"{addr}\" }}]\n[pools.r.health]\n{}",
            health_toml(
                "send = \"INFO replication\\r\\n\"\nexpect = { regex = '(?m)^role:master\\r?$' }"
            )
        ),
        None,
    )
    .unwrap();
    let health = Arc::new(config.pools[0].health.clone().unwrap());
    assert!(matches!(health.expect, Some(Expect::Regex(_))));

    // A match passes as soon as it is read, though the server keeps the connection open.
    let started = Instant::now();
    assert_eq!(check(addr, &health).await, Ok(()));
    assert!(
        started.elapsed() < TIMEOUT,
        "a match waited for the timeout"
    );

    master.store(false, Ordering::SeqCst);
    match check(addr, &health).await {
        Err(ProbeFailure::RegexMismatch { pattern, read, got }) => {
            assert_eq!(pattern, "(?m)^role:master\\r?$");
            assert!(read > 100, "only {read} bytes matched against");
            assert!(got.starts_with(b"$"), "{}", got.escape_ascii());
        }
        other => panic!("expected a regex mismatch, got {other:?}"),
    }

    // The checker marks the member down on the mismatch, and up again on the match.
    let member = single_member(addr);
    let shutdown = CancellationToken::new();
    let task = spawn_checker(
        "r".into(),
        Arc::clone(&member),
        Arc::clone(&health),
        1,
        shutdown.clone(),
    );
    eventually(within(RISE_FALL), "member down on role:slave", || {
        !member.is_up()
    })
    .await;
    master.store(true, Ordering::SeqCst);
    eventually(within(RISE_FALL), "member up on role:master", || {
        member.is_up()
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_health_port_marks_the_member_down_while_its_traffic_port_works() {
    let traffic = Upstream::start(Behavior::Echo).await;
    let health_port = closed_port().await.port();
    let config = format!(
        "[routes.db]\nlisten = \"127.0.0.1:0\"\npool = \"db\"\n\n[pools.db]\nmembers = [{{ addr = \"{}\" }}]\n\n[pools.db.health]\n{}",
        traffic.addr,
        health_toml(&format!("port = {health_port}")),
    );
    let sluice = Sluice::start(&config).await;
    let pool = Arc::clone(sluice.pool("db"));
    let health = pool_health(&config);
    let probe_addr = health.probe_addr(traffic.addr);
    assert_eq!(probe_addr, SocketAddr::from(([127, 0, 0, 1], health_port)));
    assert_eq!(check(probe_addr, &health).await, Err(ProbeFailure::Refused));

    eventually(within(RISE_FALL), "member down", || {
        !pool.members()[0].is_up()
    })
    .await;
    // The member's traffic address is unchanged and works; sluice sends it no clients.
    let mut direct = TcpStream::connect(traffic.addr).await.unwrap();
    direct.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    direct.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    let accepted = traffic.accepted();
    eventually_async(Duration::from_secs(5), "a client rejected", async || {
        read_all(sluice.addr("db"))
            .await
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    assert_eq!(
        traffic.accepted(),
        accepted,
        "a client reached a down member"
    );
    sluice.stop().await;
}

fn pool_health(config: &str) -> HealthConfig {
    let config = sluice::config::from_str(config, None).unwrap();
    config.pools[0].health.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probe_reports_the_status_a_non_http_reply_and_health_addr() {
    let role = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let role_addr = role.local_addr().unwrap();
    let primary = Arc::new(AtomicBool::new(false));
    let _endpoint = role_endpoint(role, Arc::clone(&primary));
    // A banner that is not HTTP on a connection kept open (an SSH server on the wrong port).
    let not_http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let not_http_addr = not_http.local_addr().unwrap();
    let _banner = tokio::spawn(async move {
        while let Ok((mut stream, _)) = not_http.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
            });
        }
    });
    // The member lives on 127.0.0.2; `addr` and `port` send its probes to the role endpoint.
    let member = SocketAddr::from(([127, 0, 0, 2], 5432));
    let config = format!(
        "[routes.db]\nlisten = \"127.0.0.1:0\"\npool = \"db\"\n\n[pools.db]\nmembers = [{{ addr = \"{member}\" }}]\n\n[pools.db.health]\n{}",
        health_toml(&format!(
            "addr = \"127.0.0.1\"\nport = {}\nhttp = {{ path = \"/primary\" }}",
            role_addr.port()
        )),
    );
    let health = pool_health(&config);
    assert_eq!(health.probe_addr(member), role_addr);
    assert_eq!(
        check(role_addr, &health).await,
        Err(ProbeFailure::HttpStatus {
            expected: 200,
            got: 503
        })
    );
    primary.store(true, Ordering::SeqCst);
    assert_eq!(check(role_addr, &health).await, Ok(()));
    match check(not_http_addr, &health).await {
        Err(ProbeFailure::HttpInvalid { .. }) => {}
        other => panic!("expected a bad HTTP response, got {other:?}"),
    }
    assert_eq!(
        check(closed_port().await, &health).await,
        Err(ProbeFailure::Refused)
    );
}

/// A server that answers every connection with `filler` bytes of `x`, then a role line, and
/// keeps the connection open.
async fn filler_then_role(filler: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reply = vec![b'x'; filler];
                reply.extend_from_slice(b"\r\nrole:master\r\n");
                let _ = stream.write_all(&reply).await;
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_regex_reads_at_most_16_kib() {
    let health = HealthConfig {
        timeout: TIMEOUT,
        expect: Some(Expect::Regex(
            regex::bytes::Regex::new("role:master").unwrap(),
        )),
        ..HealthConfig::default()
    };
    // The role line past the first 16 KiB is not looked for, and the probe does not wait for
    // its timeout to say so.
    let started = Instant::now();
    match check(filler_then_role(20 * 1024).await, &health).await {
        Err(ProbeFailure::RegexMismatch { read, .. }) => assert_eq!(read, 16 * 1024),
        other => panic!("expected a mismatch after 16 KiB, got {other:?}"),
    }
    assert!(
        started.elapsed() < TIMEOUT,
        "the bound waited for the timeout"
    );
    // Within the bound, a role line after the first read (the probe reads 4 KiB at a time) is
    // found: the pattern runs over everything read so far.
    assert_eq!(
        check(filler_then_role(6 * 1024).await, &health).await,
        Ok(())
    );
}
