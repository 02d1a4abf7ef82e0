//! The `sluice-toxiproxy` binary: ready line, `--port 0`, SIGTERM, and the loopback guard.

mod support;

use std::process::Stdio;

use serde_json::json;
use support::{connect, echo_server, request, round_trip, within};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-toxiproxy"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("child still running");
    let pid = rustix::process::Pid::from_raw(pid.try_into().unwrap()).expect("a child's pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill failed");
}

#[tokio::test]
async fn prints_the_ready_line_serves_and_exits_cleanly_on_sigterm() {
    let mut child = command(&["--host", "127.0.0.1", "--port", "0"])
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = within("the ready line", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert_ne!(addr.port(), 0, "the actual port is printed");

    let version = request(addr, "GET", "/version", Vec::new(), None).await;
    assert_eq!(version.status, 200);
    let upstream = echo_server().await;
    let body = json!({"name": "e", "listen": "127.0.0.1:0", "upstream": upstream.to_string()});
    let created = request(
        addr,
        "POST",
        "/proxies",
        body.to_string().into_bytes(),
        None,
    )
    .await;
    assert_eq!(created.status, 201);
    let listen = created.json["listen"].as_str().unwrap().parse().unwrap();
    let mut client = connect(listen).await;
    assert_eq!(
        round_trip(&mut client, b"through the binary").await,
        b"through the binary"
    );

    sigterm(&child);
    let status = within("exit after SIGTERM", child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        within("stdout to close", lines.next_line()).await.unwrap(),
        None,
        "one line only"
    );
    let refused = tokio::net::TcpStream::connect(listen).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn refuses_a_non_loopback_host_without_allow_remote() {
    let output = within(
        "usage error",
        command(&["--host", "0.0.0.0", "--port", "0"]).output(),
    )
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(output.stdout.is_empty(), "no ready line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}
