//! Socket options per route (client side) and per pool (member side): `tcp_keepalive`,
//! `tcp_nodelay`, and a pool's `source` address. Keepalive is read back from the kernel with
//! `ss` (iproute2), which shows a socket's keepalive timer.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::Sluice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `ss` lines of established TCP sockets matching `filter` (e.g. `sport = :8080`).
fn ss(filter: &str) -> String {
    let out = Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .args(filter.split_whitespace())
        .output()
        .expect("ss (iproute2) is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(route: &str, pool: &str, member: SocketAddr) -> String {
    format!(
        r#"
        [routes.app]
        listen = "127.0.0.1:0"
        pool = "app"
        {route}
        [pools.app]
        members = [{{ addr = "{member}" }}]
        {pool}
        [pools.app.health]
        enabled = false
        "#
    )
}

/// One connection through sluice, held open; returns the client and the member's end, and
/// the address the member saw it come from.
async fn through(sluice: &Sluice, member: &TcpListener) -> (TcpStream, TcpStream, SocketAddr) {
    let mut client = TcpStream::connect(sluice.addr("app")).await.unwrap();
    client.write_all(b"x").await.unwrap();
    let (mut upstream, from) = member.accept().await.unwrap();
    let mut byte = [0u8; 1];
    upstream.read_exact(&mut byte).await.unwrap();
    (client, upstream, from)
}

#[tokio::test]
async fn keepalive_is_set_where_configured_and_only_there() {
    let member = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let member_addr = member.local_addr().unwrap();

    // Off by default on both sides.
    let plain = Sluice::start(&config("", "", member_addr)).await;
    let held = through(&plain, &member).await;
    let route_port = plain.addr("app").port();
    let client_side = ss(&format!("sport = :{route_port}"));
    assert!(
        !client_side.is_empty() && !client_side.contains("keepalive"),
        "{client_side}"
    );
    drop(held);
    plain.stop().await;

    let kept = Sluice::start(&config(
        "tcp_keepalive = { idle = \"45s\" }",
        "tcp_keepalive = { idle = \"30s\", interval = \"5s\", count = 4 }",
        member_addr,
    ))
    .await;
    let (client, upstream, _) = through(&kept, &member).await;
    let route_port = kept.addr("app").port();
    let client_side = ss(&format!("sport = :{route_port}"));
    assert!(
        client_side.contains("timer:(keepalive"),
        "client side: {client_side}"
    );
    // sluice's socket to the member: its source port is the member's peer port.
    let sluice_port = upstream.peer_addr().unwrap().port();
    // Established before the member read the client's byte, so listed now.
    let member_side = ss(&format!(
        "sport = :{sluice_port} dport = :{}",
        member_addr.port()
    ));
    assert!(
        member_side.contains("timer:(keepalive"),
        "member side: {member_side}"
    );
    drop((client, upstream));
    kept.stop().await;
}

#[tokio::test]
async fn a_pool_source_address_is_where_member_connections_come_from() {
    let member = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sluice = Sluice::start(&config(
        "tcp_nodelay = false",
        "source = \"127.0.0.2\"",
        member.local_addr().unwrap(),
    ))
    .await;
    let (client, upstream, from) = through(&sluice, &member).await;
    assert_eq!(from.ip().to_string(), "127.0.0.2");
    drop((client, upstream));
    sluice.stop().await;
}

#[test]
fn bad_socket_options_name_the_key() {
    let err = sluice::config::from_str(
        "[routes.app]\nlisten = \"127.0.0.1:0\"\npool = \"app\"\ntcp_keepalive = { idle = \"500ms\", count = 0 }\n\
         [pools.app]\nmembers = [{ addr = \"127.0.0.1:9\" }]\nsource = \"somewhere\"\n",
        None,
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "routes.app.tcp_keepalive.idle = \"500ms\": must be between 1s and 32767s",
        "routes.app.tcp_keepalive.count = 0: must be between 1 and 127",
        "pools.app.source = \"somewhere\": not an IP address",
    ] {
        assert!(err.contains(expected), "{expected:?} in:\n{err}");
    }
}
