//! `accept_proxy`: sluice behind a load balancer that sends the PROXY protocol. The header's
//! client is the one allow/deny judge and the one announced upstream; a header from anyone
//! but the balancers, a connection without one, or one too slow to send it is closed before
//! any member is dialled.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Behavior, Sluice, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn config(route_extra: &str, member: SocketAddr) -> String {
    format!(
        r#"
        [routes.app]
        listen = "127.0.0.1:0"
        pool = "app"
        accept_proxy = "any"
        accept_proxy_from = ["127.0.0.1/32"]
        accept_proxy_timeout = "300ms"
        {route_extra}
        [pools.app]
        members = [{{ addr = "{member}" }}]
        [pools.app.health]
        enabled = false
        "#
    )
}

async fn connect_from(source: [u8; 4], route: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .unwrap();
    socket.connect(route).await.unwrap()
}

/// Everything the peer sends until it closes, within 5 s.
async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection neither ended nor was closed within 5s"
    );
    got
}

#[tokio::test]
async fn the_header_is_consumed_and_its_client_is_announced_upstream() {
    // The member records the PROXY v1 header sluice sends it and what follows.
    let member = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let member_addr = member.local_addr().unwrap();
    let sluice = Sluice::start(&config("proxy_protocol = \"v1\"", member_addr)).await;
    let mut client = TcpStream::connect(sluice.addr("app")).await.unwrap();
    // The header and the first bytes of data in one write, as balancers send them.
    client
        .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\nhello")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let (mut upstream, _) = member.accept().await.unwrap();
    let got = read_all(&mut upstream).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\nhello",
        "the balancer's header is consumed; the upstream gets sluice's, naming the same client"
    );
    drop(upstream);
    assert_eq!(read_all(&mut client).await, b"", "the member's close reaches the client");
    sluice.stop().await;
}

#[tokio::test]
async fn deny_judges_the_announced_client_and_v2_works_too() {
    let up = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&config("deny = [\"192.0.2.66\"]", up.addr)).await;
    let route = sluice.addr("app");
    let v2 = |client: &str| {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                client.parse::<SocketAddr>().unwrap(),
                "198.51.100.1:443".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap()
    };
    for (header, expect) in [
        (v2("192.0.2.7:5555"), b"ping".to_vec()),
        (v2("192.0.2.66:5555"), Vec::new()),
        (
            b"PROXY TCP4 192.0.2.66 198.51.100.1 5555 443\r\n".to_vec(),
            Vec::new(),
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), b"ping".to_vec()),
    ] {
        let mut client = TcpStream::connect(route).await.unwrap();
        client.write_all(&header).await.unwrap();
        let _ = client.write_all(b"ping").await;
        let _ = client.shutdown().await;
        assert_eq!(
            read_all(&mut client).await,
            expect,
            "{:?}",
            header.escape_ascii().to_string()
        );
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "denied clients never reach the member"
    );
    sluice.stop().await;
}

#[tokio::test]
async fn no_header_a_slow_header_or_an_untrusted_source_is_closed_undialled() {
    let up = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&config("", up.addr)).await;
    let route = sluice.addr("app");

    // Plain data where the header should be.
    let mut plain = TcpStream::connect(route).await.unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(read_all(&mut plain).await, b"");

    // Half a header, then nothing: closed once accept_proxy_timeout (300ms) has passed.
    let mut slow = TcpStream::connect(route).await.unwrap();
    slow.write_all(b"PROXY TCP4 192.0").await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(read_all(&mut slow).await, b"");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );

    // A valid header from a source that is not a balancer: it could claim any address.
    let mut spoofer = connect_from([127, 0, 0, 2], route).await;
    spoofer
        .write_all(b"PROXY TCP4 10.0.0.1 198.51.100.1 5555 443\r\nping")
        .await
        .unwrap();
    assert_eq!(read_all(&mut spoofer).await, b"");

    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        0,
        "no member was dialled"
    );
    sluice.stop().await;
}

#[test]
fn accept_proxy_needs_its_trusted_sources() {
    let err = sluice::config::from_str(
        "[routes.app]\nlisten = \"127.0.0.1:0\"\npool = \"app\"\naccept_proxy = \"v2\"\n\
         [pools.app]\nmembers = [{ addr = \"127.0.0.1:9\" }]\n",
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "<command line>: routes.app.accept_proxy_from: required with accept_proxy"
        ),
        "{err}"
    );
}
