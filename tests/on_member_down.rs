//! `on_member_down`: what happens to a member's live connections when it goes down or is
//! drained. `keep` (the default): they keep flowing. `close`: they are cut at once (HAProxy
//! `on-marked-down shutdown-sessions`), so clients reconnect to a healthy member instead of
//! holding on to one the checks gave up on. The member's traffic port stays up throughout; its
//! health checks go to a separate port (`health.port`) that the test closes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Behavior, Sluice, Upstream};
use sluice_testkit::{eventually, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A health endpoint on its own port: accepts (a passing connect check) until dropped.
struct HealthPort {
    port: u16,
    task: JoinHandle<()>,
}

impl HealthPort {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        Self { port, task }
    }

    /// Closes the port: probes are refused from now on.
    fn close(self) {
        self.task.abort();
    }
}

async fn start(policy: &str, member: SocketAddr, health_port: u16) -> Sluice {
    Sluice::start(&format!(
        r#"
        shutdown_grace = "1s"
        [routes.app]
        listen = "127.0.0.1:0"
        pool = "app"
        [pools.app]
        members = [{{ addr = "{member}" }}]
        on_member_down = "{policy}"
        [pools.app.health]
        port = {health_port}
        interval = "50ms"
        fast_interval = "20ms"
        fall = 1
        "#
    ))
    .await
}

async fn echo(stream: &mut TcpStream) -> bool {
    let exchange = async {
        stream.write_all(b"ping").await?;
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).await?;
        Ok::<_, std::io::Error>(back == *b"ping")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), exchange).await,
        Ok(Ok(true))
    )
}

#[tokio::test]
async fn close_cuts_live_connections_when_the_member_goes_down() {
    let up = Upstream::start(Behavior::Echo).await;
    let health = HealthPort::start().await;
    let sluice = start("close", up.addr, health.port).await;
    let member = sluice.pool("app").members()[0].clone();
    eventually(Duration::from_secs(5), "the member up", || member.is_up()).await;
    let mut client = TcpStream::connect(sluice.addr("app")).await.unwrap();
    assert!(echo(&mut client).await);

    health.close();
    // Cut once the checks mark it down: the client reads EOF (or a reset), not silence.
    let mut byte = [0u8; 1];
    let read = within(Duration::from_secs(5), "the cut", client.read(&mut byte)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(!member.is_up());
    sluice.stop().await;
}

#[tokio::test]
async fn keep_lets_live_connections_flow_after_the_member_goes_down() {
    let up = Upstream::start(Behavior::Echo).await;
    let health = HealthPort::start().await;
    let sluice = start("keep", up.addr, health.port).await;
    let member = sluice.pool("app").members()[0].clone();
    eventually(Duration::from_secs(5), "the member up", || member.is_up()).await;
    let mut client = TcpStream::connect(sluice.addr("app")).await.unwrap();
    assert!(echo(&mut client).await);

    health.close();
    eventually(Duration::from_secs(5), "the member down", || {
        !member.is_up()
    })
    .await;
    assert!(echo(&mut client).await, "a live connection keeps flowing");
    drop(client);
    sluice.stop().await;
}

#[tokio::test]
async fn close_cuts_live_connections_when_the_member_is_drained() {
    let up = Upstream::start(Behavior::Echo).await;
    let health = HealthPort::start().await;
    let sluice = start("close", up.addr, health.port).await;
    let member = sluice.pool("app").members()[0].clone();
    eventually(Duration::from_secs(5), "the member up", || member.is_up()).await;
    let mut client = TcpStream::connect(sluice.addr("app")).await.unwrap();
    assert!(echo(&mut client).await);

    assert!(member.set_drained(true));
    let mut byte = [0u8; 1];
    let read = within(Duration::from_secs(5), "the cut", client.read(&mut byte)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Undrained, it serves new clients again: a fresh token for fresh connections.
    assert!(member.set_drained(false));
    let mut again = TcpStream::connect(sluice.addr("app")).await.unwrap();
    assert!(echo(&mut again).await);
    drop((again, health));
    sluice.stop().await;
}
