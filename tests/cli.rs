//! The `sluice` binary as a user runs it: JSON logs, access log, signals, exit code.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::running::Running;
use common::{Behavior, Upstream};
use sluice_testkit::eventually;
use sluice_testkit::scratch_dir;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn write_config(dir: &Path, upstream: SocketAddr, extra: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            shutdown_grace = "5s"
            {extra}
            [routes.web]
            listen = "127.0.0.1:0"
            pool = "web"
            [pools.web]
            members = [{{ addr = "{upstream}" }}]
            "#
        ),
    )
    .unwrap();
    path
}

async fn fetch(addr: SocketAddr) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn run_logs_json_serves_and_exits_zero_on_sigterm() {
    let upstream = Upstream::start(Behavior::Identify(b'u')).await;
    let dir = scratch_dir("cli");
    let mut sluice = Running::start(&write_config(&dir, upstream.addr, "")).await;
    assert_eq!(fetch(sluice.addr).await, b"u");

    // SIGUSR1 without an access log file is answered with a log line, not death.
    sluice.signal("-USR1");
    let mut lines = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = sluice.lines.recv().await {
            let handled = line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIGUSR1: no access_log"));
            lines.push(line);
            if handled {
                return;
            }
        }
    })
    .await
    .expect("SIGUSR1 is handled without an access log");

    lines.extend(sluice.stop().await);
    // The connection got one JSON access line with its byte counts, outcome and termination.
    let access: Vec<_> = lines.iter().filter(|l| l["message"] == "access").collect();
    assert_eq!(access.len(), 1, "one access line per connection");
    let a = access[0];
    assert_eq!(a["outcome"], "ok");
    assert_eq!(a["termination"], "--");
    assert_eq!(a["attempts"], 1);
    assert_eq!(a["route"], "web");
    assert_eq!(a["member"], upstream.addr.to_string());
    assert_eq!(a["first_close"], "upstream");
    assert_eq!(a["bytes_down"], 1);
    assert_eq!(a["bytes_up"], 0);
    assert!(
        a["conn_id"].as_u64().is_some(),
        "access lines carry the connection id: {a}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn access_log_file_gets_one_line_per_connection_and_reopens_on_sigusr1() {
    let upstream = Upstream::start(Behavior::Identify(b'u')).await;
    let dir = scratch_dir("access");
    let log = dir.join("access.log");
    let extra = format!("access_log = {:?}", log.display().to_string());
    let mut sluice = Running::start(&write_config(&dir, upstream.addr, &extra)).await;
    let read_lines = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    for _ in 0..3 {
        assert_eq!(fetch(sluice.addr).await, b"u");
    }
    eventually(Duration::from_secs(5), "3 access lines in the file", || {
        read_lines(&log).len() == 3
    })
    .await;
    assert!(
        read_lines(&log)
            .iter()
            .all(|l| l["outcome"] == "ok" && l["bytes_down"] == 1)
    );

    // logrotate: move the file away, then SIGUSR1; new lines go to a new file at the path.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    sluice.signal("-USR1");
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = sluice.lines.recv().await {
            if line["message"] == "access log reopened" {
                return;
            }
        }
    })
    .await
    .expect("no 'access log reopened' line");
    assert_eq!(fetch(sluice.addr).await, b"u");
    eventually(
        Duration::from_secs(5),
        "1 access line in the new file",
        || read_lines(&log).len() == 1,
    )
    .await;
    assert_eq!(
        read_lines(&rotated).len(),
        3,
        "the rotated file keeps its lines"
    );

    let lines = sluice.stop().await;
    assert!(
        lines.iter().all(|l| l["message"] != "access"),
        "with a file configured, access lines are not on stderr"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An early close is redialled inside the route's one admission: a client that may open one
/// connection a second (`client_rate_limit` burst 1) still gets through on the second member,
/// and its access line counts both attempts.
#[tokio::test]
async fn early_close_redial_spends_one_rate_token_and_the_access_line_counts_it() {
    let resetter = common::Resetter::start().await;
    let live = Upstream::start(Behavior::Echo).await;
    let dir = scratch_dir("redial");
    let path = dir.join("sluice.toml");
    // Smooth weighted round robin picks the heaviest member first: the resetter.
    std::fs::write(
        &path,
        format!(
            r#"
            [routes.web]
            listen = "127.0.0.1:0"
            pool = "web"
            client_rate_limit = {{ per_second = 1, burst = 1 }}
            [pools.web]
            members = [{{ addr = "{}", weight = 256 }}, {{ addr = "{}" }}]
            [pools.web.health]
            enabled = false
            "#,
            resetter.addr, live.addr
        ),
    )
    .unwrap();
    let sluice = Running::start(&path).await;
    let mut client = TcpStream::connect(sluice.addr).await.unwrap();
    // The client stays silent until sluice has moved it to the live member: a client that has
    // spoken is committed to the member it spoke to (its bytes are never replayed).
    eventually(
        Duration::from_secs(5),
        "redialled to the live member",
        || live.accepted() == 1,
    )
    .await;
    tokio::io::AsyncWriteExt::write_all(&mut client, b"ping")
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut client)
        .await
        .unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"ping", "served by the live member after the redial");
    assert_eq!(
        resetter.accepted(),
        1,
        "the first attempt reached the resetter"
    );

    let lines = sluice.stop().await;
    let access: Vec<_> = lines.iter().filter(|l| l["message"] == "access").collect();
    assert_eq!(access.len(), 1, "{lines:?}");
    assert_eq!(access[0]["outcome"], "ok");
    assert_eq!(access[0]["attempts"], 2, "{}", access[0]);
    assert_eq!(access[0]["member"], live.addr.to_string());
    let _ = std::fs::remove_dir_all(&dir);
}

fn sluice(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap()
}

/// Bad arguments exit 64 (`EX_USAGE`), as the README says, not clap's 2; help and version
/// are not errors.
#[test]
fn bad_arguments_exit_64_and_help_exits_0() {
    for args in [
        &["--bogus"][..],
        &["run", "--no-such-flag"],
        &["check"],
        &["completions", "tcsh"],
        &["--log-format", "xml", "check", "--config", "x.toml"],
        &[],
    ] {
        let out = sluice(args);
        assert_eq!(out.status.code(), Some(64), "sluice {args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // No subcommand at all prints the help, on stderr, as the error it is.
        assert!(
            stderr.starts_with("error:") || (args.is_empty() && stderr.contains("Usage:")),
            "sluice {args:?}: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "sluice {args:?}: errors go to stderr"
        );
    }
    for args in [&["--help"][..], &["--version"], &["run", "--help"]] {
        let out = sluice(args);
        assert_eq!(out.status.code(), Some(0), "sluice {args:?}: {out:?}");
        assert!(!out.stdout.is_empty(), "sluice {args:?}: output on stdout");
    }
}

#[test]
fn completions_and_man_page_name_every_subcommand() {
    let subcommands = ["run", "check", "forward", "completions", "man", "drill"];
    for shell in ["bash", "zsh", "fish"] {
        let out = sluice(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in subcommands {
            assert!(script.contains(sub), "{shell} completions lack {sub:?}");
        }
        assert!(script.contains("log-format"), "{shell}: global flag");
    }
    let out = sluice(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH sluice 1"), "{page}");
    for sub in subcommands {
        assert!(
            page.contains(&format!("sluice\\-{sub}")),
            "man page lacks {sub:?}"
        );
    }
}
