//! The connect stack end to end: PROXY headers, redial, breakers, limits.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Sluice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that reads one PROXY header (v1 or v2), parses it with `ppp`, and answers the
/// source and destination it announced as `src dst`.
async fn proxy_header_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let reply = loop {
                    let mut chunk = [0u8; 256];
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break "incomplete header".to_string();
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(r) = parse(&buf) {
                        break r;
                    }
                };
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn parse(buf: &[u8]) -> Option<String> {
    if buf.starts_with(b"PROXY ") {
        let header = ppp::v1::Header::try_from(buf).ok()?;
        return Some(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => format!(
                "{}:{} {}:{}",
                a.source_address, a.source_port, a.destination_address, a.destination_port
            ),
            other => format!("unexpected {other:?}"),
        });
    }
    let header = ppp::v2::Header::try_from(buf).ok()?;
    Some(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => format!(
            "{}:{} {}:{}",
            a.source_address, a.source_port, a.destination_address, a.destination_port
        ),
        other => format!("unexpected {other:?}"),
    })
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_announce_the_real_client() {
    for version in ["v1", "v2"] {
        let upstream = proxy_header_upstream().await;
        let sluice = Sluice::start(&format!(
            r#"
            [routes.web]
            listen = "127.0.0.1:0"
            pool = "web"
            proxy_protocol = "{version}"
            [pools.web]
            members = [{{ addr = "{upstream}" }}]
            [pools.web.health]
            enabled = false
            "#
        ))
        .await;
        let mut client = TcpStream::connect(sluice.addr("web")).await.unwrap();
        let expected = format!("{} {}", client.local_addr().unwrap(), sluice.addr("web"));
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, expected, "PROXY {version}");
        // The client has not half-closed yet: the relay would keep its direction open.
        drop(client);
        sluice.stop().await;
    }
}

/// Connects to `to` from the loopback address `from` (any port).
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(to).await
}

/// Whether a client got the upstream's reply (`true`) or was closed without a byte.
async fn served(mut stream: TcpStream) -> bool {
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    matches!(read, Ok(Ok(_))) && !reply.is_empty()
}

#[tokio::test]
async fn client_rate_limit_rejects_the_21st_of_a_burst_while_another_ip_passes() {
    let upstream = common::Upstream::start(common::Behavior::Identify(b'u')).await;
    let sluice = Sluice::start(&format!(
        r#"
        [routes.web]
        listen = "127.0.0.1:0"
        pool = "web"
        client_rate_limit = {{ per_second = 20, burst = 20 }}
        [pools.web]
        members = [{{ addr = "{}" }}]
        [pools.web.health]
        enabled = false
        "#,
        upstream.addr
    ))
    .await;
    let addr = sluice.addr("web");
    // Open all 30 before reading any reply, so they land within one refill tick.
    let mut burst = Vec::new();
    for _ in 0..30 {
        burst.push(connect_from("127.0.0.1", addr).await.unwrap());
    }
    let mut results = Vec::new();
    for s in burst {
        results.push(served(s).await);
    }
    let passed = results.iter().filter(|&&ok| ok).count();
    // Tokens refill at 20/s while the burst is served, so one or two more may pass; the 21st
    // in arrival order must not be among the first served.
    assert!(
        (20..=22).contains(&passed),
        "{passed} of 30 passed: {results:?}"
    );
    assert!(
        results[..20].iter().all(|&ok| ok),
        "the first 20 pass: {results:?}"
    );
    assert!(!results[20], "the 21st is rejected: {results:?}");
    let other = connect_from("127.0.0.2", addr).await.unwrap();
    assert!(served(other).await, "another client IP has its own bucket");
    sluice.stop().await;
}

#[tokio::test]
async fn max_connections_holds_under_200_concurrent_clients() {
    let echo = common::Upstream::start(common::Behavior::Echo).await;
    let sluice = Sluice::start(&format!(
        r#"
        [routes.web]
        listen = "127.0.0.1:0"
        pool = "web"
        max_connections = 50
        [pools.web]
        members = [{{ addr = "{}" }}]
        [pools.web.health]
        enabled = false
        "#,
        echo.addr
    ))
    .await;
    let member = std::sync::Arc::clone(&sluice.pool("web").members()[0]);
    let addr = sluice.addr("web");
    // 200 clients connect and each proves its connection is relayed by an echo round trip,
    // then holds it open: exactly 50 can be relayed at once, the rest are closed.
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let relayed = s.write_all(b"x").await.is_ok() && {
                let mut b = [0u8; 1];
                matches!(
                    tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
                    Ok(Ok(1))
                )
            };
            (relayed, s)
        }));
    }
    let mut held = Vec::new();
    let mut relayed = 0;
    for c in clients {
        let (ok, s) = c.await.unwrap();
        if ok {
            relayed += 1;
            held.push(s);
        }
    }
    assert_eq!(relayed, 50, "exactly max_connections are relayed at once");
    assert_eq!(member.active(), 50);
    drop(held);
    sluice_testkit::eventually(Duration::from_secs(5), "active count back to 0", || {
        member.active() == 0
    })
    .await;
    // Slots free again once the held connections end.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"y").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"y");
    drop(s);
    sluice.stop().await;
}

/// An upstream that, while `healthy`, answers `id` and closes; otherwise accepts and closes at
/// once without a byte (a crashed backend behind an open port). Counts what it accepted.
struct Flaky {
    addr: SocketAddr,
    healthy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Flaky {
    async fn start(id: u8, healthy: bool) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = std::sync::Arc::new(AtomicBool::new(healthy));
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let (h, a) = (healthy.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                if h.load(Ordering::SeqCst) {
                    let _ = s.write_all(&[id]).await;
                    let _ = s.shutdown().await;
                }
            }
        });
        Self {
            addr,
            healthy,
            accepted,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn pool_config(route_extra: &str, members: &[SocketAddr], breaker: &str) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|a| format!(r#"{{ addr = "{a}" }}"#))
        .collect();
    format!(
        r#"
        [routes.web]
        listen = "127.0.0.1:0"
        pool = "web"
        {route_extra}
        [pools.web]
        members = [{}]
        [pools.web.health]
        enabled = false
        [pools.web.breaker]
        {breaker}
        "#,
        members.join(", ")
    )
}

/// Reads what one new client gets: the id byte, or `None` when closed without one.
async fn reply(addr: SocketAddr) -> Option<u8> {
    common::read_all(addr)
        .await
        .ok()
        .and_then(|r| r.first().copied())
}

#[tokio::test]
async fn refusing_member_is_redialled_so_every_client_gets_through() {
    let dead = common::closed_port().await;
    let live = common::Upstream::start(common::Behavior::Identify(b'l')).await;
    let text = pool_config(
        r#"retry = { attempts = 2, min_backoff = "5ms", max_backoff = "20ms" }"#,
        &[dead, live.addr],
        "enabled = false",
    );
    let sluice = Sluice::start(&text).await;
    for i in 0..100 {
        assert_eq!(reply(sluice.addr("web")).await, Some(b'l'), "client {i}");
    }
    sluice.stop().await;
}

#[tokio::test]
async fn accept_then_close_member_opens_its_breaker_and_is_skipped() {
    let closer = Flaky::start(b'c', false).await;
    let live = Flaky::start(b'l', true).await;
    let text = pool_config(
        "",
        &[closer.addr, live.addr],
        r#"consecutive_failures = 3
        open_for = "1h"
        early_close = "500ms""#,
    );
    let sluice = Sluice::start(&text).await;
    let bad = std::sync::Arc::clone(&sluice.pool("web").members()[0]);
    for i in 0..40 {
        // Silent clients: every early close is redialled to the live member.
        assert_eq!(reply(sluice.addr("web")).await, Some(b'l'), "client {i}");
    }
    let state = bad.breaker_state(tokio::time::Instant::now());
    assert!(
        matches!(state, Some(sluice::upstream::BreakerState::Open { .. })),
        "breaker of the closing member: {state:?}"
    );
    assert_eq!(
        closer.accepted(),
        3,
        "the breaker opened after 3 early closes and kept clients off it"
    );
    sluice.stop().await;
}

#[tokio::test]
async fn breaker_admits_a_trial_after_open_for_and_closes_when_the_member_heals() {
    let flaky = Flaky::start(b'f', false).await;
    let live = Flaky::start(b'l', true).await;
    let text = pool_config(
        "",
        &[flaky.addr, live.addr],
        r#"consecutive_failures = 2
        open_for = "300ms"
        max_open_for = "300ms"
        early_close = "500ms""#,
    );
    let sluice = Sluice::start(&text).await;
    let member = std::sync::Arc::clone(&sluice.pool("web").members()[0]);
    let is_open = |m: &sluice::upstream::Member| {
        matches!(
            m.breaker_state(tokio::time::Instant::now()),
            Some(sluice::upstream::BreakerState::Open { .. })
        )
    };
    while !is_open(&member) {
        assert_eq!(reply(sluice.addr("web")).await, Some(b'l'));
    }
    let opened_at = flaky.accepted();
    flaky
        .healthy
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // While open, no client reaches it; once open_for passes a trial does, succeeds, and the
    // breaker closes: the member is back in rotation.
    let start = tokio::time::Instant::now();
    let mut served_by_flaky = 0;
    sluice_testkit::eventually_async(
        Duration::from_secs(5),
        "the healed member to serve 3 clients",
        async || {
            if reply(sluice.addr("web")).await == Some(b'f') {
                served_by_flaky += 1;
                if served_by_flaky == 1 {
                    assert!(
                        start.elapsed() >= Duration::from_millis(250),
                        "reached while open"
                    );
                }
            }
            served_by_flaky >= 3
        },
    )
    .await;
    assert_eq!(
        member.breaker_state(tokio::time::Instant::now()),
        Some(sluice::upstream::BreakerState::Closed)
    );
    assert!(flaky.accepted() > opened_at);
    sluice.stop().await;
}
