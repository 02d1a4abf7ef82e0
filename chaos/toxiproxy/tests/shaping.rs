//! Toxics that hold, pace, cut or delay the close of a stream: timeout, bandwidth, slow_close
//! and slicer, on real sockets and in both streams where it makes sense.
//!
//! Time bounds are one-sided where the toxic guarantees a minimum and coarse where it only
//! shapes a rate, so a slow machine cannot fail them.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Server, connect, echo_server, pattern, read_to_end, round_trip, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const STREAMS: [&str; 2] = ["downstream", "upstream"];

#[tokio::test]
async fn timeout_zero_black_holes_until_removed() {
    let server = Server::start().await;
    let echo = echo_server().await;
    for stream in STREAMS {
        let listen = server.proxy(stream, echo).await;
        server
            .toxic(
                stream,
                json!({"type": "timeout", "stream": stream,
                                   "attributes": {"timeout": 0}}),
            )
            .await;
        let mut client = connect(listen).await;
        client.write_all(b"lost").await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_millis(500), client.read(&mut buf)).await;
        assert!(
            read.is_err(),
            "{stream}: expected neither data nor close, got {read:?}"
        );
        let path = format!("/proxies/{stream}/toxics/timeout_{stream}");
        assert_eq!(server.call("DELETE", &path, None).await.status, 204);
        assert_eq!(round_trip(&mut client, b"back").await, b"back", "{stream}");
    }
    server.stop().await;
}

#[tokio::test]
async fn timeout_closes_the_connection_after_its_delay() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    server
        .toxic(
            "db",
            json!({"type": "timeout", "attributes": {"timeout": 300}}),
        )
        .await;
    let started = Instant::now();
    let mut client = connect(listen).await;
    client.write_all(b"dropped").await.unwrap();
    let (data, _) = read_to_end(&mut client).await;
    assert!(data.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn bandwidth_limits_throughput_in_each_stream() {
    let server = Server::start().await;
    let echo = echo_server().await;
    // 200 KB/s: 100 kB should take about half a second.
    let data = pattern(100_000);
    for stream in STREAMS {
        let listen = server.proxy(stream, echo).await;
        server
            .toxic(
                stream,
                json!({"type": "bandwidth", "stream": stream,
                                   "attributes": {"rate": 200}}),
            )
            .await;
        let mut client = connect(listen).await;
        let started = Instant::now();
        let back = within("throttled echo", async {
            let (mut r, mut w) = client.split();
            let write = w.write_all(&data);
            let mut back = vec![0; data.len()];
            let read = r.read_exact(&mut back);
            let (written, read) = tokio::join!(write, read);
            written.unwrap();
            read.unwrap();
            back
        })
        .await;
        let took = started.elapsed();
        assert!(back == data, "{stream}: bytes intact");
        assert!(
            took >= Duration::from_millis(350),
            "{stream}: too fast: {took:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{stream}: too slow: {took:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn slow_close_holds_the_close_back_in_each_stream() {
    let server = Server::start().await;
    let echo = echo_server().await;
    for stream in STREAMS {
        let listen = server.proxy(stream, echo).await;
        server
            .toxic(
                stream,
                json!({"type": "slow_close", "stream": stream,
                                   "attributes": {"delay": 300}}),
            )
            .await;
        let mut client = connect(listen).await;
        assert_eq!(round_trip(&mut client, b"bye").await, b"bye");
        let started = Instant::now();
        client.shutdown().await.unwrap();
        let (rest, _) = read_to_end(&mut client).await;
        assert!(rest.is_empty());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "{stream}: closed after {took:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn slicer_delivers_intact_data_in_paced_slices() {
    let server = Server::start().await;
    let listen = server.proxy("db", echo_server().await).await;
    server
        .toxic(
            "db",
            json!({"type": "slicer",
                             "attributes": {"average_size": 100, "delay": 20000}}),
        )
        .await;
    let mut client = connect(listen).await;
    let data = pattern(1000);
    let started = Instant::now();
    client.write_all(&data).await.unwrap();
    let (got, reads) = within("sliced echo", async {
        let (mut got, mut reads) = (Vec::new(), 0);
        let mut buf = [0u8; 4096];
        while got.len() < data.len() {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
            reads += 1;
        }
        (got, reads)
    })
    .await;
    assert!(got == data, "bytes intact and in order");
    assert!(reads >= 2, "arrived in one read: not sliced");
    // Ten slices with 20 ms after each: the last one arrives after at least nine pauses.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    server.stop().await;
}
