//! Every redial goes through the connect stack's one loop: early closes with the breaker off,
//! and no member dialled for a client that left while it was queued.

mod common;

use std::time::Duration;

use common::{Behavior, Resetter, Sluice, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A member that resets right after accept, clients that wait 300 ms before speaking, and no
/// breaker: an early close is a redial trigger of its own, so every client reaches the live
/// member (before the one redial loop, about half of them failed).
#[tokio::test]
async fn early_close_is_redialled_with_the_breaker_off() {
    let resetter = Resetter::start().await;
    let live = Upstream::start(Behavior::Echo).await;
    let text = format!(
        r#"
        [routes.web]
        listen = "127.0.0.1:0"
        pool = "web"
        [pools.web]
        members = [{{ addr = "{}" }}, {{ addr = "{}" }}]
        [pools.web.health]
        enabled = false
        [pools.web.breaker]
        enabled = false
        "#,
        resetter.addr, live.addr
    );
    let sluice = Sluice::start(&text).await;
    let addr = sluice.addr("web");
    let clients: Vec<_> = (0..100u8)
        .map(|i| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await?;
                // The client's own think time, not synchronisation: it speaks after the
                // member would have closed.
                tokio::time::sleep(Duration::from_millis(300)).await;
                stream.write_all(&[i; 4]).await?;
                stream.shutdown().await?;
                let mut reply = Vec::new();
                stream.read_to_end(&mut reply).await?;
                std::io::Result::Ok(reply == [i; 4])
            })
        })
        .collect();
    let mut served = 0;
    for client in clients {
        if matches!(client.await.unwrap(), Ok(true)) {
            served += 1;
        }
    }
    assert_eq!(served, 100, "clients echoed by the live member");
    assert!(
        resetter.accepted() > 0,
        "round robin sent clients to the resetter first"
    );
    sluice.stop().await;
}

/// With `on_limit = "queue"`, clients that leave while they wait must not be connected to a
/// member when a slot frees: the member sees only the clients that are still there.
#[tokio::test]
async fn a_client_that_left_the_queue_is_never_dialled() {
    let upstream = Upstream::start(Behavior::Echo).await;
    let text = format!(
        r#"
        [routes.web]
        listen = "127.0.0.1:0"
        pool = "web"
        max_connections = 1
        on_limit = "queue"
        queue_timeout = "30s"
        [pools.web]
        members = [{{ addr = "{}" }}]
        [pools.web.health]
        enabled = false
        "#,
        upstream.addr
    );
    let sluice = Sluice::start(&text).await;
    let addr = sluice.addr("web");
    let echo = |mut stream: TcpStream, byte: u8| async move {
        stream.write_all(&[byte]).await.unwrap();
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        assert_eq!(b, [byte]);
        stream
    };

    // The holder takes the one slot and is relayed (its echo proves it).
    let holder = echo(TcpStream::connect(addr).await.unwrap(), b'h').await;
    // 50 clients queue behind it and give up.
    for _ in 0..50 {
        drop(TcpStream::connect(addr).await.unwrap());
    }
    // The last one queues after them (the limit's queue is first come, first served) and stays.
    let last = TcpStream::connect(addr).await.unwrap();
    drop(holder);
    drop(echo(last, b'z').await);
    assert_eq!(
        upstream.accepted(),
        2,
        "only the holder and the client that stayed reached the member"
    );
    sluice.stop().await;
}
