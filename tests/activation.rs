//! systemd socket activation: the listening socket comes from the service manager
//! (`LISTEN_FDS`/`LISTEN_PID`), here from `systemd-socket-activate`, which binds the address,
//! waits for the first client and then starts sluice with the socket as fd 3. The client that
//! woke it is served, from the queue sluice never bound.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::running::Running;
use common::{Behavior, Upstream};
use sluice_testkit::scratch_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_socket_from_systemd_serves_the_route_bound_to_its_address() {
    let up = Upstream::start(Behavior::Echo).await;
    // An address of its own in 127/8: a port the kernel picked there and released can be taken
    // again only by a socket bound to 127.0.0.77, and nothing else binds there.
    let listen: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.77:0").unwrap();
        probe.local_addr().unwrap()
    };
    let dir = scratch_dir("activation");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "shutdown_grace = \"1s\"\n[routes.app]\nlisten = \"{listen}\"\npool = \"app\"\n\
             [pools.app]\nmembers = [{{ addr = \"{}\" }}]\n[pools.app.health]\nenabled = false\n",
            up.addr
        ),
    )
    .unwrap();
    let activate = ["systemd-socket-activate", "-l", &listen.to_string()];
    // sluice starts only once a client arrives: the client connects (to systemd-socket-activate's
    // socket; retried until it exists) while the launch waits for sluice's listening line.
    let client = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match TcpStream::connect(listen).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "never bound: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        stream.write_all(b"wake").await.unwrap();
        let mut reply = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut reply))
            .await
            .expect("served within 10s")
            .unwrap();
        reply
    };
    let (sluice, reply) = tokio::join!(Running::start_with(&config, &activate), client);
    assert_eq!(&reply, b"wake");
    assert_eq!(sluice.addr, listen);
    assert!(
        sluice.startup.iter().any(|l| l["message"]
            == "socket activation: using a listening socket from systemd"
            && l["addr"] == listen.to_string()),
        "{:?}",
        sluice.startup
    );
    sluice.stop().await;
}
