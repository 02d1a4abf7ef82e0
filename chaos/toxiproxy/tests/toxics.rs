//! Latency, toxicity, reset_peer and limit_data on real sockets, in both streams where it makes
//! sense, and toxics changing under an open connection.
//!
//! Time bounds are one-sided (at least the delay asked for), so a slow machine cannot fail them.

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use serde_json::json;
use support::{
    Server, connect, echo_server, pattern, read_to_end, round_trip, sink_server, within,
};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const STREAMS: [&str; 2] = ["downstream", "upstream"];

#[tokio::test]
async fn latency_delays_the_round_trip_in_each_stream() {
    let server = Server::start().await;
    let echo = echo_server().await;
    for stream in STREAMS {
        let listen = server.proxy(stream, echo).await;
        server
            .toxic(
                stream,
                json!({"type": "latency", "stream": stream,
                                   "attributes": {"latency": 200}}),
            )
            .await;
        let mut client = connect(listen).await;
        let started = Instant::now();
        assert_eq!(round_trip(&mut client, b"hello").await, b"hello");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{stream}: {took:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn latency_with_jitter_stays_within_its_spread() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    server
        .toxic(
            "db",
            json!({"type": "latency", "attributes": {"latency": 150, "jitter": 50}}),
        )
        .await;
    let mut client = connect(listen).await;
    for _ in 0..5 {
        let started = Instant::now();
        round_trip(&mut client, b"j").await;
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn toxics_act_on_open_connections_and_stop_when_removed() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    let mut client = connect(listen).await;
    round_trip(&mut client, b"warm").await;
    server
        .toxic(
            "db",
            json!({"type": "latency", "attributes": {"latency": 300}}),
        )
        .await;
    let started = Instant::now();
    round_trip(&mut client, b"slow").await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let removed = server
        .call("DELETE", "/proxies/db/toxics/latency_downstream", None)
        .await;
    assert_eq!(removed.status, 204);
    let started = Instant::now();
    round_trip(&mut client, b"fast").await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn toxicity_zero_leaves_the_toxic_inactive() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    server
        .toxic(
            "db",
            json!({"type": "latency", "toxicity": 0.0,
                             "attributes": {"latency": 5000}}),
        )
        .await;
    let mut client = connect(listen).await;
    let started = Instant::now();
    round_trip(&mut client, b"lucky").await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn reset_peer_resets_the_client_in_each_stream() {
    let server = Server::start().await;
    let echo = echo_server().await;
    for (stream, timeout) in [("downstream", 0), ("upstream", 300)] {
        let listen = server.proxy(stream, echo).await;
        server
            .toxic(
                stream,
                json!({"type": "reset_peer", "stream": stream,
                                   "attributes": {"timeout": timeout}}),
            )
            .await;
        let mut client = connect(listen).await;
        let started = Instant::now();
        client.write_all(b"doomed").await.unwrap();
        let (data, err) = read_to_end(&mut client).await;
        assert!(data.is_empty(), "{stream}: the triggering data is dropped");
        let kind = err.map(|e| e.kind());
        assert_eq!(kind, Some(ErrorKind::ConnectionReset), "{stream}");
        assert!(
            started.elapsed() >= Duration::from_millis(timeout),
            "{stream}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn limit_data_downstream_closes_after_exactly_n_bytes() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    server
        .toxic(
            "db",
            json!({"type": "limit_data", "attributes": {"bytes": 1000}}),
        )
        .await;
    let mut client = connect(listen).await;
    let data = pattern(4000);
    client.write_all(&data).await.unwrap();
    let (got, err) = read_to_end(&mut client).await;
    assert!(err.is_none(), "closed, not reset: {err:?}");
    assert_eq!(got.len(), 1000);
    assert!(got == data[..1000]);
    server.stop().await;
}

#[tokio::test]
async fn limit_data_upstream_lets_exactly_n_bytes_reach_the_server() {
    let server = Server::start().await;
    let (sink, mut received) = sink_server().await;
    let listen = server.proxy("db", sink).await;
    server
        .toxic(
            "db",
            json!({"type": "limit_data", "stream": "upstream",
                             "attributes": {"bytes": 1000}}),
        )
        .await;
    let mut client = connect(listen).await;
    let data = pattern(4000);
    client.write_all(&data).await.unwrap();
    let got = within("upstream end of stream", received.recv())
        .await
        .unwrap();
    assert_eq!(got.len(), 1000);
    assert!(got == data[..1000]);
    let (_, _) = read_to_end(&mut client).await;
    server.stop().await;
}
