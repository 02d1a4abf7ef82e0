//! The extensions beyond Toxiproxy, on real sockets: `connect_timeout`, `slow_accept`, and the
//! `clients` / `first` targeting on any toxic.
//!
//! Time bounds are one-sided (at least the delay asked for), and a connect that must time out
//! is given 500 ms: a handshake on loopback completes within the connect call, so it only runs
//! out when the kernel drops the SYN.

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use support::{Server, connect, echo_server, round_trip, within};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;

/// How long a connect that must not complete is given.
const NO_HANDSHAKE: Duration = Duration::from_millis(500);

/// Connects from `source` (any port) to `addr`, bounded.
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    within("connect", socket.connect(addr)).await.unwrap()
}

/// Whether a connection is hit by the `reset_peer` (timeout 0, upstream) toxic: its first
/// write is answered by a reset instead of the echo.
async fn is_reset(client: &mut TcpStream) -> bool {
    client.write_all(b"ping").await.unwrap();
    let (data, err) = read_to_end_or_echo(client).await;
    match err {
        Some(kind) => {
            assert_eq!(kind, ErrorKind::ConnectionReset, "{data:?}");
            true
        }
        None => {
            assert_eq!(data, b"ping");
            false
        }
    }
}

/// Reads until the 4-byte echo arrives, the stream ends or it fails.
async fn read_to_end_or_echo(client: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    use tokio::io::AsyncReadExt;
    within("echo or reset", async {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match client.read(&mut buf).await {
                Ok(0) => return (out, Some(ErrorKind::UnexpectedEof)),
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.len() >= 4 {
                        return (out, None);
                    }
                }
                Err(err) => return (out, Some(err.kind())),
            }
        }
    })
    .await
}

async fn remove(server: &Server, proxy: &str, toxic: &str) {
    let path = format!("/proxies/{proxy}/toxics/{toxic}");
    assert_eq!(server.call("DELETE", &path, None).await.status, 204);
}

#[tokio::test]
async fn connect_timeout_makes_connects_time_out_until_removed() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    let mut before = connect(listen).await;
    let toxic = server
        .toxic(
            "db",
            json!({"type": "connect_timeout", "stream": "upstream"}),
        )
        .await;
    assert_eq!(toxic["type"], "connect_timeout");
    assert_eq!(toxic["attributes"], json!({}));
    for _ in 0..3 {
        let attempt = tokio::time::timeout(NO_HANDSHAKE, TcpStream::connect(listen)).await;
        // Elapsed, not a refused or reset connect.
        assert!(attempt.is_err(), "connect completed: {attempt:?}");
    }
    // Connections already open are not touched.
    assert_eq!(round_trip(&mut before, b"still").await, b"still");

    remove(&server, "db", "connect_timeout_upstream").await;
    let mut after = connect(listen).await;
    assert_eq!(round_trip(&mut after, b"back").await, b"back");
    // The plugs were never handed to the upstream as clients: the next accepted is ours.
    let mut again = connect(listen).await;
    assert_eq!(round_trip(&mut again, b"again").await, b"again");
    server.stop().await;
}

#[tokio::test]
async fn connect_timeout_rejects_targeting_and_survives_restart() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    let bad = server
        .call(
            "POST",
            "/proxies/db/toxics",
            Some(json!({"type": "connect_timeout", "attributes": {"first": 1}})),
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    server
        .toxic("db", json!({"name": "ct", "type": "connect_timeout"}))
        .await;
    // Disable and enable: the new listener is plugged as well.
    let body = json!({"enabled": false});
    assert_eq!(
        server.call("POST", "/proxies/db", Some(body)).await.status,
        200
    );
    let body = json!({"enabled": true});
    assert_eq!(
        server.call("POST", "/proxies/db", Some(body)).await.status,
        200
    );
    within("plugged again", async {
        // Enabling does not wait for the plug; poll the condition (each try is bounded).
        loop {
            match tokio::time::timeout(NO_HANDSHAKE, TcpStream::connect(listen)).await {
                Err(_) => break,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    // /reset removes it, and the answer means the listener is open again.
    assert_eq!(server.call("POST", "/reset", None).await.status, 204);
    let mut client = connect(listen).await;
    assert_eq!(round_trip(&mut client, b"ok").await, b"ok");
    server.stop().await;
}

#[tokio::test]
async fn slow_accept_delays_the_upstream_and_the_first_byte() {
    let server = Server::start().await;
    // An upstream that reports when each connection reached it.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let (tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = upstream.accept().await {
            let _ = tx.send(Instant::now());
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let listen = server.proxy("db", upstream_addr).await;
    let toxic = server
        .toxic(
            "db",
            json!({"type": "slow_accept", "attributes": {"delay": 300}}),
        )
        .await;
    assert_eq!(toxic["attributes"], json!({"delay": 300}));
    let delay = Duration::from_millis(300);
    let started = Instant::now();
    let mut client = connect(listen).await;
    assert_eq!(round_trip(&mut client, b"hi").await, b"hi");
    let first_byte = started.elapsed();
    let reached = within("upstream accept", arrivals.recv()).await.unwrap();
    assert!(first_byte >= delay, "first byte after {first_byte:?}");
    assert!(
        reached - started >= delay,
        "upstream reached after {:?}",
        reached - started
    );

    // Removed: later connections go straight through (no upper time bound is asserted, so a
    // loaded machine cannot fail this; the toxic's absence is checked through the API).
    remove(&server, "db", "slow_accept_downstream").await;
    let mut client = connect(listen).await;
    assert_eq!(round_trip(&mut client, b"hi").await, b"hi");
    within("upstream accept", arrivals.recv()).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn clients_targets_only_connections_from_those_sources() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    let toxic = server
        .toxic(
            "db",
            json!({"type": "reset_peer", "stream": "upstream",
                   "attributes": {"timeout": 0, "clients": ["127.0.0.2/32"]}}),
        )
        .await;
    assert_eq!(
        toxic["attributes"],
        json!({"timeout": 0, "clients": ["127.0.0.2/32"]})
    );
    for _ in 0..3 {
        let mut other = connect_from("127.0.0.1", listen).await;
        assert!(!is_reset(&mut other).await, "127.0.0.1 was hit");
        let mut target = connect_from("127.0.0.2", listen).await;
        assert!(is_reset(&mut target).await, "127.0.0.2 was spared");
        let mut other = connect_from("127.0.0.3", listen).await;
        assert!(!is_reset(&mut other).await, "127.0.0.3 was hit");
    }
    server.stop().await;
}

#[tokio::test]
async fn first_targets_exactly_the_next_n_connections() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    // Accepted before the toxic: never counted, never hit.
    let mut earlier = connect(listen).await;
    assert_eq!(round_trip(&mut earlier, b"pre").await, b"pre");
    server
        .toxic(
            "db",
            json!({"type": "reset_peer", "stream": "upstream",
                   "attributes": {"timeout": 0, "first": 2}}),
        )
        .await;
    let mut hits = Vec::new();
    for _ in 0..5 {
        let mut client = connect(listen).await;
        hits.push(is_reset(&mut client).await);
    }
    assert_eq!(hits, [true, true, false, false, false]);
    assert!(!is_reset(&mut earlier).await);
    server.stop().await;
}
