//! End to end through a running sluice on loopback: balancing, refused members, bytes intact,
//! idle timeout and graceful shutdown.

mod common;

use std::time::Duration;

use common::{Behavior, Sluice, Upstream, closed_port, read_all};
use sluice::server::Workers;
use sluice_testkit::{checksum, eventually, eventually_async, payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(extra_route: &str, pool: &str) -> String {
    format!(
        r#"
        shutdown_grace = "10s"
        [routes.web]
        listen = "127.0.0.1:0"
        pool = "web"
        connect_timeout = "1s"
        {extra_route}
        [pools.web]
        {pool}
        [pools.web.health]
        enabled = false
        "#
    )
}

#[tokio::test]
async fn weighted_round_robin_2_to_1_over_300_connections() {
    let a = Upstream::start(Behavior::Identify(b'a')).await;
    let b = Upstream::start(Behavior::Identify(b'b')).await;
    let members = format!(
        r#"members = [{{ addr = "{}", weight = 2 }}, {{ addr = "{}" }}]"#,
        a.addr, b.addr
    );
    let sluice = Sluice::start(&config("", &members)).await;
    let mut seen = [0usize; 2];
    for _ in 0..300 {
        match read_all(sluice.addr("web")).await.unwrap().as_slice() {
            b"a" => seen[0] += 1,
            b"b" => seen[1] += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert_eq!(seen, [200, 100]);
    assert_eq!((a.accepted(), b.accepted()), (200, 100));
    assert_eq!(sluice.stop().await.cut, 0);
}

#[tokio::test]
async fn refused_member_closes_the_client_within_the_connect_timeout() {
    let dead = closed_port().await;
    let sluice = Sluice::start(&config(
        "",
        &format!(r#"members = [{{ addr = "{dead}" }}]"#),
    ))
    .await;
    let started = tokio::time::Instant::now();
    let mut client = TcpStream::connect(sluice.addr("web")).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
        .await
        .expect("client was left hanging");
    // EOF or a reset: either way the client is told at once, with no byte.
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    sluice.stop().await;
}

#[tokio::test]
async fn bytes_in_equal_bytes_out_both_ways_at_once_through_sluice() {
    let echo = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&config(
        "",
        &format!(r#"members = [{{ addr = "{}" }}]"#, echo.addr),
    ))
    .await;
    for (size, seed) in [(1usize, 1u64), (64 * 1024, 2), (8 * 1024 * 1024, 3)] {
        let data = payload(size, seed);
        let stream = TcpStream::connect(sluice.addr("web")).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let sent = data.clone();
        // Writer and reader run at the same time: an echo of a large payload would deadlock
        // otherwise, and it exercises both directions concurrently.
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::with_capacity(size);
        r.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        assert_eq!(back.len(), size);
        assert_eq!(checksum(&back), checksum(&data), "payload of {size} bytes");
    }
    sluice.stop().await;
}

#[tokio::test]
async fn idle_connection_is_closed_after_idle_timeout() {
    let echo = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&config(
        r#"idle_timeout = "200ms""#,
        &format!(r#"members = [{{ addr = "{}" }}]"#, echo.addr),
    ))
    .await;
    let mut client = TcpStream::connect(sluice.addr("web")).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).await.unwrap();
    let started = tokio::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
        .await
        .expect("idle connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "closed too early: {:?}",
        started.elapsed()
    );
    sluice.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_keeps_live_connections_and_refuses_new_ones() {
    let echo = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&config(
        "",
        &format!(r#"members = [{{ addr = "{}" }}]"#, echo.addr),
    ))
    .await;
    let addr = sluice.addr("web");
    let mut live = TcpStream::connect(addr).await.unwrap();
    live.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    live.read_exact(&mut buf).await.unwrap();

    sluice.shutdown.stop();
    // New connects are refused once the listener is closed.
    eventually_async(
        Duration::from_secs(5),
        "the listener to refuse connects after stop",
        async || TcpStream::connect(addr).await.is_err(),
    )
    .await;
    // The live connection still flows during the grace period.
    live.write_all(b"during").await.unwrap();
    live.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during");
    assert!(!sluice.run.is_finished());

    live.shutdown().await.unwrap();
    let mut rest = Vec::new();
    live.read_to_end(&mut rest).await.unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(5), sluice.run)
        .await
        .expect("run did not end once the last connection closed")
        .unwrap();
    assert_eq!(summary.cut, 0);
}

#[tokio::test]
async fn connections_still_open_after_the_grace_period_are_cut_and_counted() {
    let echo = Upstream::start(Behavior::Echo).await;
    let text = config("", &format!(r#"members = [{{ addr = "{}" }}]"#, echo.addr))
        .replace(r#"shutdown_grace = "10s""#, r#"shutdown_grace = "200ms""#);
    let sluice = Sluice::start(&text).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(sluice.addr("web")).await.unwrap();
        c.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        c.read_exact(&mut one).await.unwrap();
        clients.push(c);
    }
    let summary = sluice.stop().await;
    assert_eq!(summary.cut, 3);
    for mut c in clients {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "cut client still open: {read:?}"
        );
    }
}

#[tokio::test]
async fn all_members_down_rejects_fast() {
    let dead = closed_port().await;
    let text = format!(
        r#"
        [routes.web]
        listen = "127.0.0.1:0"
        pool = "web"
        [pools.web]
        members = [{{ addr = "{dead}" }}]
        [pools.web.health]
        interval = "50ms"
        fast_interval = "20ms"
        timeout = "200ms"
        fall = 1
        "#
    );
    let sluice = Sluice::start(&text).await;
    let member = std::sync::Arc::clone(&sluice.pool("web").members()[0]);
    eventually(
        Duration::from_secs(5),
        "the dead member to be marked down",
        || !member.is_up(),
    )
    .await;
    let reply = read_all(sluice.addr("web")).await;
    assert!(matches!(reply.as_deref(), Ok([]) | Err(_)), "got {reply:?}");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_listeners_share_one_address_and_serve_every_connection() {
    let a = Upstream::start(Behavior::Identify(b'a')).await;
    let text = format!(
        "reuse_port = true\nworkers = 3\n{}",
        config("", &format!(r#"members = [{{ addr = "{}" }}]"#, a.addr))
    );
    let sluice = Sluice::start(&text).await;
    for i in 0..60 {
        assert_eq!(
            read_all(sluice.addr("web")).await.unwrap(),
            b"a",
            "connection {i}"
        );
    }
    assert_eq!(sluice.stop().await.cut, 0);
}

/// The binary's layout: the data plane on two worker threads with an event loop each, with
/// one `SO_REUSEPORT` socket per worker and with one socket both accept on. 100 concurrent
/// echoes come back whole, and a connection still open at the stop drains without a cut.
#[tokio::test]
async fn worker_threads_relay_every_connection_and_drain_with_either_socket_layout() {
    let echo = Upstream::start(Behavior::Echo).await;
    for reuse_port in [true, false] {
        let workers = Workers::start(2).unwrap();
        let text = format!(
            "reuse_port = {reuse_port}\n{}",
            config("", &format!(r#"members = [{{ addr = "{}" }}]"#, echo.addr))
        );
        let sluice = Sluice::start_on(&text, workers.handles()).await;
        let addr = sluice.addr("web");
        let clients = (0..100u32).map(|i| {
            tokio::spawn(async move {
                let sent: Vec<u8> = (0..4096u32).map(|b| (b * 7 + i) as u8).collect();
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(&sent).await.unwrap();
                stream.shutdown().await.unwrap();
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.unwrap();
                assert!(got == sent, "connection {i}: {} bytes back", got.len());
            })
        });
        for client in clients.collect::<Vec<_>>() {
            client.await.unwrap();
        }

        let mut live = TcpStream::connect(addr).await.unwrap();
        live.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        live.read_exact(&mut one).await.unwrap();
        sluice.shutdown.stop();
        live.write_all(b"y").await.unwrap();
        live.read_exact(&mut one).await.unwrap();
        assert_eq!(
            &one, b"y",
            "reuse_port = {reuse_port}: relayed while draining"
        );
        drop(live);
        let summary = tokio::time::timeout(Duration::from_secs(5), sluice.run)
            .await
            .expect("the drain ends once the last client leaves")
            .unwrap();
        assert_eq!(summary.cut, 0, "reuse_port = {reuse_port}");
        workers.stop();
    }
}

#[tokio::test]
async fn a_second_stop_signal_cuts_live_connections_at_once() {
    let echo = Upstream::start(Behavior::Echo).await;
    // A grace far longer than the test: only cut_now can end the run in time.
    let text = config("", &format!(r#"members = [{{ addr = "{}" }}]"#, echo.addr))
        .replace(r#"shutdown_grace = "10s""#, r#"shutdown_grace = "1h""#);
    let sluice = Sluice::start(&text).await;
    let mut live = TcpStream::connect(sluice.addr("web")).await.unwrap();
    live.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    live.read_exact(&mut one).await.unwrap();

    sluice.shutdown.stop();
    sluice.shutdown.cut_now();
    let summary = tokio::time::timeout(Duration::from_secs(5), sluice.run)
        .await
        .expect("the second signal ends the drain at once")
        .unwrap();
    assert_eq!(summary.cut, 1);
    let read = tokio::time::timeout(Duration::from_secs(5), live.read(&mut one))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the cut client is closed: {read:?}"
    );
}
