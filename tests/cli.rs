//! The `sluice` binary as a user runs it: JSON logs, traffic, SIGTERM, exit code.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Behavior, Upstream};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn run_logs_json_serves_and_exits_zero_on_sigterm() {
    let upstream = Upstream::start(Behavior::Identify(b'u')).await;
    let dir = std::env::temp_dir().join(format!("sluice-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            shutdown_grace = "5s"
            [routes.web]
            listen = "127.0.0.1:0"
            pool = "web"
            [pools.web]
            members = [{{ addr = "{}" }}]
            "#,
            upstream.addr
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();

    // The "listening" line carries the port the kernel chose; reading it is the readiness wait.
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.recv().await.expect("sluice exited before listening");
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if json["message"] == "listening" {
                return json["addr"]
                    .as_str()
                    .unwrap()
                    .parse::<std::net::SocketAddr>()
                    .unwrap();
            }
        }
    })
    .await
    .expect("no listening line within 10s");

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"u");
    drop(stream);

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0), "sluice exits 0 after SIGTERM");

    // The closed connection was logged as JSON with its byte counts and outcome.
    let mut closed = None;
    // The child has exited, so its stderr reaches EOF and the channel closes after the last line.
    while let Some(line) = lines.recv().await {
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["message"] == "connection closed" {
            closed = Some(json);
        }
    }
    let closed = closed.expect("a 'connection closed' line");
    assert_eq!(closed["outcome"], "ok");
    assert_eq!(closed["bytes_down"], 1);
    assert_eq!(closed["bytes_up"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}
