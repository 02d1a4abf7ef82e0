//! Who may connect: a route's `allow` and `deny` lists, checked on the client's real address
//! before any limit, rate token or member is touched. Clients come from several loopback
//! addresses (all of 127.0.0.0/8 is local on Linux) by binding their source address.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Behavior, Sluice, Upstream};
use sluice_testkit::eventually_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Connects to `route` from `source`, sends 4 bytes and reads what comes back within a
/// deadline: the echo when admitted, nothing (EOF or reset) when refused.
async fn exchange_from(source: [u8; 4], route: SocketAddr) -> Vec<u8> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .unwrap();
    let mut stream = socket.connect(route).await.unwrap();
    let _ = stream.write_all(b"ping").await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4];
        while got.len() < 4 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "neither served nor closed within 5s");
    got
}

/// A sluice whose route `app` (with `route_keys`) forwards to one echo member, started with
/// `before` (e.g. an `[admin]` table) ahead of the route.
async fn start(before: &str, route_keys: &str) -> (Sluice, Upstream) {
    let up = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&format!(
        "{before}\n[routes.app]\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n{route_keys}\n\
         [pools.app]\nmembers = [{{ addr = \"{}\" }}]\n[pools.app.health]\nenabled = false\n",
        up.addr
    ))
    .await;
    (sluice, up)
}

#[tokio::test]
async fn deny_wins_and_a_refused_client_never_reaches_a_member() {
    let (sluice, up) = start(
        "",
        "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.2\", \"127.0.0.3/32\"]",
    )
    .await;
    let route = sluice.addr("app");
    assert_eq!(exchange_from([127, 0, 0, 1], route).await, b"ping");
    // Inside the allowed /8 but denied: deny wins.
    assert_eq!(exchange_from([127, 0, 0, 2], route).await, b"");
    assert_eq!(exchange_from([127, 0, 0, 3], route).await, b"");
    assert_eq!(exchange_from([127, 0, 0, 4], route).await, b"ping");
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "denied clients never reach the member"
    );
    sluice.stop().await;
}

#[tokio::test]
async fn an_allow_list_admits_only_what_it_names() {
    let (sluice, up) = start("", "allow = [\"127.0.0.5\", \"127.0.1.0/24\"]").await;
    let route = sluice.addr("app");
    assert_eq!(exchange_from([127, 0, 0, 1], route).await, b"");
    assert_eq!(exchange_from([127, 0, 0, 5], route).await, b"ping");
    assert_eq!(exchange_from([127, 0, 1, 77], route).await, b"ping");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    sluice.stop().await;
}

#[test]
fn a_bad_cidr_names_its_entry() {
    let err = sluice::config::from_str(
        "[routes.app]\nlisten = \"127.0.0.1:0\"\npool = \"app\"\nallow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n\
         [pools.app]\nmembers = [{ addr = \"127.0.0.1:9\" }]\n",
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "<command line>: routes.app.allow[1] = \"10.0.0.0/33\": not an address or CIDR; write e.g. \
         \"10.0.0.0/8\", \"192.0.2.7\" or \"::1/128\" (line 4, column 24)"
    );
}

/// A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: they match the IPv4 rules.
#[test]
fn ipv4_mapped_clients_match_ipv4_rules() {
    let filter = sluice::config::ClientFilter {
        allow: vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        deny: vec!["192.0.2.66/32".parse().unwrap()],
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(filter.admits(ip("192.0.2.7")));
    assert!(filter.admits(ip("::ffff:192.0.2.7")));
    assert!(!filter.admits(ip("::ffff:192.0.2.66")));
    assert!(!filter.admits(ip("192.0.2.66")));
    assert!(filter.admits(ip("2001:db8::1")));
    assert!(!filter.admits(ip("198.51.100.1")));
    assert!(sluice::config::ClientFilter::default().admits(ip("198.51.100.1")));
}

/// The route's active connection count from `/status`.
async fn route_active(admin: SocketAddr) -> Option<u64> {
    let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
    s.write_all(format!("GET /status HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.ok()?;
    let reply = String::from_utf8_lossy(&reply);
    let body: serde_json::Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1)?).ok()?;
    body["routes"][0]["active"].as_u64()
}

/// `max_connections_per_client`: one address holds at most N connections at once; another
/// address is not affected, and a slot comes back when a connection ends.
#[tokio::test]
async fn one_address_holds_at_most_its_share() {
    let (sluice, up) = start(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "max_connections_per_client = 2",
    )
    .await;
    let route = sluice.addr("app");
    let admin = sluice.admin.expect("admin");
    let open_from = |source: [u8; 4]| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(IpAddr::from(source), 0))
            .unwrap();
        let mut s = socket.connect(route).await.unwrap();
        s.write_all(b"hi").await.unwrap();
        let mut back = [0u8; 2];
        s.read_exact(&mut back).await.unwrap();
        s
    };
    let first = open_from([127, 0, 0, 1]).await;
    let _second = open_from([127, 0, 0, 1]).await;
    // A third from the same address: closed at once, never dialled.
    assert_eq!(exchange_from([127, 0, 0, 1], route).await, b"");
    // Another address has its own share.
    let _other = open_from([127, 0, 0, 2]).await;
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
    // One ends: once sluice has counted it out (the route's active count drops after the
    // connection's per-client slot is given back), the address has a slot again.
    drop(first);
    eventually_async(
        Duration::from_secs(5),
        "the first connection ended",
        async || route_active(admin).await == Some(2),
    )
    .await;
    assert_eq!(exchange_from([127, 0, 0, 1], route).await, b"ping");
    drop((_second, _other));
    sluice.stop().await;
}
