//! `on_member_down`: what happens to a member's live connections when it goes down or is
//! drained. `keep` (the default): they keep flowing. `close`: they are cut at once (HAProxy
//! `on-marked-down shutdown-sessions`), so clients reconnect to a healthy member instead of
//! holding on to one the checks gave up on. The member's traffic port stays up throughout; its
//! health checks go to a separate port (`health.port`) that the test closes.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// One echo member checked on its own health port, behind a sluice with `on_member_down =
/// policy`, and a client relaying through it.
struct Live {
    sluice: Sluice,
    member: std::sync::Arc<sluice::upstream::Member>,
    health: HealthPort,
    client: TcpStream,
    _up: Upstream,
}

impl Live {
    async fn start(policy: &str) -> Self {
        let up = Upstream::start(Behavior::Echo).await;
        let health = HealthPort::start().await;
        let sluice = start(policy, up.addr, health.port).await;
        let member = sluice.pool("app").members()[0].clone();
        eventually(Duration::from_secs(5), "the member up", || member.is_up()).await;
        let mut client = TcpStream::connect(sluice.addr("app")).await.unwrap();
        assert!(echo(&mut client).await);
        Self {
            sluice,
            member,
            health,
            client,
            _up: up,
        }
    }
}

/// The client reads EOF (or a reset) within 5 s: sluice cut the connection, not silence.
async fn assert_cut(client: &mut TcpStream) {
    let mut byte = [0u8; 1];
    let read = within(Duration::from_secs(5), "the cut", client.read(&mut byte)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn close_cuts_live_connections_when_the_member_goes_down() {
    let Live {
        sluice,
        member,
        health,
        mut client,
        _up,
    } = Live::start("close").await;

    health.close();
    // Cut once the checks mark it down: the client reads EOF (or a reset), not silence.
    assert_cut(&mut client).await;
    assert!(!member.is_up());
    sluice.stop().await;
}

#[tokio::test]
async fn keep_lets_live_connections_flow_after_the_member_goes_down() {
    let Live {
        sluice,
        member,
        health,
        mut client,
        _up,
    } = Live::start("keep").await;

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
    let Live {
        sluice,
        member,
        health,
        mut client,
        _up,
    } = Live::start("close").await;

    assert!(member.set_drained(true));
    assert_cut(&mut client).await;
    // Undrained, it serves new clients again: a fresh token for fresh connections.
    assert!(member.set_drained(false));
    let mut again = TcpStream::connect(sluice.addr("app")).await.unwrap();
    assert!(echo(&mut again).await);
    drop((again, health));
    sluice.stop().await;
}

/// A health endpoint on `addr` that answers `+PONG` while `healthy` is set and `-ERR`
/// otherwise: an expect check that can fail and pass again on the same address.
async fn switchable_health(addr: SocketAddr, healthy: &'static AtomicBool) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                let _ = s.read(&mut buf).await;
                let reply: &[u8] = if healthy.load(Ordering::SeqCst) {
                    b"+PONG\r\n"
                } else {
                    b"-ERR\r\n"
                };
                let _ = s.write_all(reply).await;
            });
        }
    });
}

/// `on_primary_return = "close"`: while the primary is down clients land on the backup; when
/// it comes back their connections are cut, so they reconnect to the primary (HAProxy
/// `on-marked-up shutdown-backup-sessions`). The members are on 127.0.0.2 and 127.0.0.3 with
/// one port each for traffic and health (`health.port` is per pool), so each has its own check.
#[tokio::test]
async fn a_returning_primary_takes_its_clients_back() {
    static PRIMARY_HEALTHY: AtomicBool = AtomicBool::new(false);
    static BACKUP_HEALTHY: AtomicBool = AtomicBool::new(true);
    let primary_listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let traffic = primary_listener.local_addr().unwrap().port();
    let backup_listener = TcpListener::bind(("127.0.0.3", traffic)).await.unwrap();
    let primary = Upstream::serve(primary_listener, Behavior::Echo);
    let backup = Upstream::serve(backup_listener, Behavior::Echo);
    let health_probe = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let health = health_probe.local_addr().unwrap().port();
    drop(health_probe);
    switchable_health(SocketAddr::from(([127, 0, 0, 2], health)), &PRIMARY_HEALTHY).await;
    switchable_health(SocketAddr::from(([127, 0, 0, 3], health)), &BACKUP_HEALTHY).await;
    let sluice = Sluice::start(&format!(
        r#"
        shutdown_grace = "1s"
        [routes.app]
        listen = "127.0.0.1:0"
        pool = "app"
        [pools.app]
        members = [{{ addr = "127.0.0.2:{traffic}", tier = 0 }}, {{ addr = "127.0.0.3:{traffic}", tier = 1 }}]
        on_primary_return = "close"
        [pools.app.health]
        port = {health}
        send = "PING\r\n"
        expect = "+PONG"
        interval = "50ms"
        fast_interval = "20ms"
        rise = 1
        fall = 1
        init_state = "down"
        "#
    ))
    .await;
    let members = sluice.pool("app").members().to_vec();
    eventually(Duration::from_secs(5), "the backup up", || {
        members[1].is_up()
    })
    .await;
    assert!(!members[0].is_up());
    let mut client = TcpStream::connect(sluice.addr("app")).await.unwrap();
    assert!(echo(&mut client).await);
    assert_eq!(
        (
            primary.accepted.load(Ordering::SeqCst),
            backup.accepted.load(Ordering::SeqCst)
        ),
        (0, 1),
        "the primary is down: the client is on the backup"
    );

    PRIMARY_HEALTHY.store(true, Ordering::SeqCst);
    // The primary comes up: the backup connection is cut (EOF), and a reconnect lands on it.
    assert_cut(&mut client).await;
    assert!(members[0].is_up());
    let mut again = TcpStream::connect(sluice.addr("app")).await.unwrap();
    assert!(echo(&mut again).await);
    assert_eq!(primary.accepted.load(Ordering::SeqCst), 1);
    drop(again);
    sluice.stop().await;
}

/// `max_connection_lifetime`: a connection that would pin its member forever is cut after the
/// lifetime (±10 %), busy or not; a new one is served.
#[tokio::test]
async fn a_connection_is_cut_at_its_lifetime() {
    let up = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&format!(
        r#"
        [routes.app]
        listen = "127.0.0.1:0"
        pool = "app"
        [pools.app]
        members = [{{ addr = "{}" }}]
        max_connection_lifetime = "300ms"
        [pools.app.health]
        enabled = false
        "#,
        up.addr
    ))
    .await;
    let started = tokio::time::Instant::now();
    let mut client = TcpStream::connect(sluice.addr("app")).await.unwrap();
    // Busy the whole time: echoes until the cut.
    let cut_after = within(Duration::from_secs(5), "the lifetime cut", async {
        while echo(&mut client).await {}
        started.elapsed()
    })
    .await;
    assert!(
        cut_after >= Duration::from_millis(270),
        "cut after {cut_after:?}, before the lifetime"
    );
    let mut again = TcpStream::connect(sluice.addr("app")).await.unwrap();
    assert!(echo(&mut again).await);
    drop(again);
    sluice.stop().await;
}
