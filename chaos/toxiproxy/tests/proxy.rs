//! Real traffic through a proxy without toxics: bytes intact, "down" (`enabled: false`) and
//! `/reset`, asserted on sockets.

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use serde_json::json;
use support::{Server, connect, echo_server, pattern, read_to_end, round_trip, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn bytes_pass_through_intact_both_ways() {
    let server = Server::start().await;
    let listen = server.proxy("echo", echo_server().await).await;
    let mut client = connect(listen).await;
    // Larger than one 32 KiB read, so the data crosses the proxy as many chunks.
    let data = pattern(1 << 20);
    let back = within("1 MiB echo", async {
        let (mut r, mut w) = client.split();
        let write = async {
            w.write_all(&data).await.unwrap();
        };
        let read = async {
            let mut back = vec![0; data.len()];
            tokio::io::AsyncReadExt::read_exact(&mut r, &mut back)
                .await
                .unwrap();
            back
        };
        tokio::join!(write, read).1
    })
    .await;
    assert!(back == data, "echoed bytes differ");
    // Several connections at once stay separate.
    let mut a = connect(listen).await;
    let mut b = connect(listen).await;
    assert_eq!(round_trip(&mut a, b"first").await, b"first");
    assert_eq!(round_trip(&mut b, b"second").await, b"second");
    server.stop().await;
}

#[tokio::test]
async fn disabled_proxy_refuses_and_cuts_then_restores() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    let mut open = connect(listen).await;
    assert_eq!(round_trip(&mut open, b"ping").await, b"ping");

    let down = server
        .call("POST", "/proxies/db", Some(json!({"enabled": false})))
        .await;
    assert_eq!((down.status, &down.json["enabled"]), (200, &json!(false)));
    // The open connection is closed by the proxy (EOF, or a reset if data was in flight).
    let (rest, _) = read_to_end(&mut open).await;
    assert!(rest.is_empty());
    // New connections are refused: the listener is gone by the time the API answered.
    let refused = TcpStream::connect(listen).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    let up = server
        .call("POST", "/proxies/db", Some(json!({"enabled": true})))
        .await;
    assert_eq!(
        up.json["listen"],
        json!(listen.to_string()),
        "same port after re-enable"
    );
    let mut again = connect(listen).await;
    assert_eq!(round_trip(&mut again, b"pong").await, b"pong");
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_proxy_closes_its_listener() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    assert_eq!(server.call("DELETE", "/proxies/db", None).await.status, 204);
    let refused = TcpStream::connect(listen).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    server.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    let server = Server::start().await;
    // A port that was just free: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let listen = server.proxy("dead", dead).await;
    let mut client = connect(listen).await;
    let (data, _) = read_to_end(&mut client).await;
    assert!(data.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn reset_restores_clean_traffic() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    server
        .toxic(
            "db",
            json!({"type": "latency", "attributes": {"latency": 2000}}),
        )
        .await;
    server
        .toxic("db", json!({"type": "timeout", "stream": "upstream"}))
        .await;
    assert_eq!(server.call("POST", "/reset", None).await.status, 204);
    let mut client = connect(listen).await;
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, b"clean").await, b"clean");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_stops_every_proxy() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    let mut open = connect(listen).await;
    assert_eq!(round_trip(&mut open, b"x").await, b"x");
    server.stop().await;
    let (rest, _) = read_to_end(&mut open).await;
    assert!(rest.is_empty());
    let refused = TcpStream::connect(listen).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}
