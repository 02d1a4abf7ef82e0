//! Who may connect: a route's `allow` and `deny` lists, checked on the client's real address
//! before any limit, rate token or member is touched. Clients come from several loopback
//! addresses (all of 127.0.0.0/8 is local on Linux) by binding their source address.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Behavior, Sluice, Upstream};
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

#[tokio::test]
async fn deny_wins_and_a_refused_client_never_reaches_a_member() {
    let up = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&format!(
        r#"
        [routes.app]
        listen = "127.0.0.1:0"
        pool = "app"
        allow = ["127.0.0.0/8"]
        deny = ["127.0.0.2", "127.0.0.3/32"]
        [pools.app]
        members = [{{ addr = "{}" }}]
        [pools.app.health]
        enabled = false
        "#,
        up.addr
    ))
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
    let up = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&format!(
        r#"
        [routes.app]
        listen = "127.0.0.1:0"
        pool = "app"
        allow = ["127.0.0.5", "127.0.1.0/24"]
        [pools.app]
        members = [{{ addr = "{}" }}]
        [pools.app.health]
        enabled = false
        "#,
        up.addr
    ))
    .await;
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
