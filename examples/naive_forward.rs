//! The naive forwarder: the baseline sluice is measured against in `bench/`.
//!
//! Accept, connect, `tokio::io::copy_bidirectional`, nothing else: no health checks, no
//! balancing, no timeouts, no shutdown drain. It is what the "why not just 20 lines of tokio"
//! question quotes, so it stays this small; anything added here makes the baseline less naive.
//!
//! ```sh
//! cargo run --release --example naive_forward -- 127.0.0.1:8080 127.0.0.1:9001
//! ```

use std::env;
use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = env::args().skip(1);
    let (Some(listen), Some(upstream), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: naive_forward LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(64);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is ip:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM_ADDR is ip:port");

    let listener = TcpListener::bind(listen).await?;
    loop {
        let (mut client, _) = match listener.accept().await {
            Ok(conn) => conn,
            // EMFILE and friends: keep serving the connections we have, without spinning.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
