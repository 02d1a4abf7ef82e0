//! A server's whole life in one process: once `run` returns, nothing of that run stays
//! behind (no state kept alive by a reference cycle, no socket still listening), so a second
//! run in the same process starts clean, as embedders and in-process tests need.

mod common;
#[path = "admin/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::sync::Arc;

use common::{Behavior, Sluice, Upstream};
use harness::{DEADLINE, echo};
use sluice_testkit::eventually;
use sluice_testkit::scratch_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs a file-backed server with an admin listener twice. A config file matters: only then
/// can the admin API reload, which is what used to tie the admin state and the reloader into
/// an `Arc` cycle that kept the run's runtime (pools, routes) alive forever.
#[tokio::test]
async fn a_finished_run_frees_its_state_and_closes_its_sockets() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let upstream = Upstream::start(Behavior::Echo).await;
    let dir = scratch_dir("lifecycle");
    let file = dir.join("sluice.toml");
    std::fs::write(
        &file,
        format!(
            r#"
            shutdown_grace = "10s"
            [admin]
            listen = "127.0.0.1:0"
            [routes.life]
            listen = "127.0.0.1:0"
            pool = "life"
            [pools.life]
            members = [{{ addr = "{}" }}]
            [pools.life.health]
            enabled = false
            "#,
            upstream.addr
        ),
    )
    .unwrap();

    for run in 1..=2 {
        let config = sluice::config::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
        let sluice = Sluice::start_config(config, Vec::new()).await;
        let route = sluice.addr("life");
        let admin = sluice.admin.expect("config has [admin]");
        // The runtime and the admin view both own the pool: while either lives, so does it.
        let pool = Arc::downgrade(sluice.pool("life"));

        let mut client = TcpStream::connect(route).await.unwrap();
        echo(&mut client, format!("run {run}").as_bytes()).await;
        let (code, body) = harness::request(admin, "GET", "/status").await;
        assert_eq!(code, 200, "{body}");
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");

        assert_eq!(sluice.stop().await.cut, 0);
        eventually(DEADLINE, &format!("run {run}'s pool to be freed"), || {
            pool.upgrade().is_none()
        })
        .await;
        // Checked before the next run binds, so its sockets cannot reuse these ports.
        assert!(
            TcpStream::connect(route).await.is_err(),
            "run {run}: route {route} still listening"
        );
        assert!(
            TcpStream::connect(admin).await.is_err(),
            "run {run}: admin {admin} still listening"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
