//! Signals and the service manager, against the built `sluice` binary: SIGQUIT drains like
//! SIGTERM, and `NOTIFY_SOCKET` hears READY=1, RELOADING=1/READY=1 and STOPPING=1.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::running::Running;
use common::{Behavior, Upstream};
use sluice_testkit::scratch_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixDatagram};

const WAIT: Duration = Duration::from_secs(10);

fn write_config(dir: &Path, upstream: SocketAddr) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            shutdown_grace = "30s"
            [routes.echo]
            listen = "127.0.0.1:0"
            pool = "echo"
            [pools.echo]
            members = [{{ addr = "{upstream}" }}]
            [pools.echo.health]
            enabled = false
            "#
        ),
    )
    .unwrap();
    path
}

async fn echo(client: &mut TcpStream, bytes: &[u8]) {
    client.write_all(bytes).await.unwrap();
    let mut reply = vec![0; bytes.len()];
    tokio::time::timeout(WAIT, client.read_exact(&mut reply))
        .await
        .expect("echo within the deadline")
        .unwrap();
    assert_eq!(reply, bytes);
}

/// SIGQUIT (nginx's graceful stop) drains: a log line names it, a live connection keeps
/// relaying in both directions until its client closes it, and then sluice exits 0 with
/// nothing cut, well inside the 30 s grace.
#[tokio::test]
async fn sigquit_drains_like_sigterm() {
    let upstream = Upstream::start(Behavior::Echo).await;
    let dir = scratch_dir("sigquit");
    let mut sluice = Running::start(&write_config(&dir, upstream.addr)).await;
    let mut client = TcpStream::connect(sluice.addr).await.unwrap();
    echo(&mut client, b"before").await;

    sluice.signal("-QUIT");
    let requested = sluice
        .wait_for_line(WAIT, |l| l["message"] == "shutdown requested: draining")
        .await;
    assert_eq!(requested["signal"], "SIGQUIT");
    let draining = sluice
        .wait_for_line(WAIT, |l| {
            l["message"] == "shutting down: stopped accepting, draining live connections"
        })
        .await;
    assert_eq!(draining["live"], 1, "{draining}");

    // Draining, and the connection still carries bytes both ways.
    echo(&mut client, b"during the drain").await;
    client.shutdown().await.unwrap();
    let mut tail = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut tail))
        .await
        .expect("the upstream's close reaches the client")
        .unwrap();
    assert!(tail.is_empty(), "{tail:?}");

    let exit = tokio::time::timeout(WAIT, sluice.wait())
        .await
        .expect("sluice exits once its last connection closed");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let rest = sluice.rest().await;
    let complete = rest
        .iter()
        .find(|l| l["message"] == "shutdown complete")
        .unwrap_or_else(|| panic!("no 'shutdown complete' line in {rest:#?}"));
    assert_eq!(complete["cut"], 0, "{complete}");
    let access: Vec<_> = rest.iter().filter(|l| l["message"] == "access").collect();
    assert_eq!(access.len(), 1, "{rest:#?}");
    let before_and_during = (b"before".len() + b"during the drain".len()) as u64;
    assert_eq!(access[0]["bytes_up"], before_and_during);
    assert_eq!(access[0]["bytes_down"], before_and_during);
    assert_eq!(access[0]["outcome"], "ok");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Receives one notification datagram, as text.
async fn notification(socket: &UnixDatagram) -> String {
    let mut buf = vec![0; 4096];
    let len = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("a notification within the deadline")
        .unwrap();
    String::from_utf8(buf[..len].to_vec()).unwrap()
}

/// A `Type=notify` service manager's view: READY=1 once the listener accepts, RELOADING=1
/// (with MONOTONIC_USEC) then READY=1 around a SIGHUP reload, STOPPING=1 at SIGTERM.
#[tokio::test]
async fn notify_socket_hears_ready_reloading_and_stopping() {
    let upstream = Upstream::start(Behavior::Echo).await;
    let dir = scratch_dir("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut sluice = Running::start_with_env(
        &write_config(&dir, upstream.addr),
        &[("NOTIFY_SOCKET", socket_path.as_os_str())],
    )
    .await;

    assert_eq!(notification(&socket).await, "READY=1\n");
    let mut client = TcpStream::connect(sluice.addr).await.unwrap();
    echo(&mut client, b"ready means serving").await;
    drop(client);

    sluice.signal("-HUP");
    let reloading = notification(&socket).await;
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines.len(), 2, "{reloading:?}");
    assert_eq!(lines[0], "RELOADING=1");
    let usec: u64 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("MONOTONIC_USEC=<integer> expected: {reloading:?}"));
    assert!(usec > 0);
    sluice
        .wait_for_line(WAIT, |l| l["message"] == "config reloaded")
        .await;
    assert_eq!(notification(&socket).await, "READY=1\n");

    let _ = sluice.stop().await;
    assert_eq!(notification(&socket).await, "STOPPING=1\n");
    let _ = std::fs::remove_dir_all(&dir);
}
