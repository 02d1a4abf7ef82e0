//! The connect stack end to end: PROXY headers, redial, breakers, limits.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Sluice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that reads one PROXY header (v1 or v2), parses it with `ppp`, and answers the
/// source and destination it announced as `src dst`.
async fn proxy_header_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let reply = loop {
                    let mut chunk = [0u8; 256];
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break "incomplete header".to_string();
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(r) = parse(&buf) {
                        break r;
                    }
                };
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn parse(buf: &[u8]) -> Option<String> {
    if buf.starts_with(b"PROXY ") {
        let header = ppp::v1::Header::try_from(buf).ok()?;
        return Some(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => format!(
                "{}:{} {}:{}",
                a.source_address, a.source_port, a.destination_address, a.destination_port
            ),
            other => format!("unexpected {other:?}"),
        });
    }
    let header = ppp::v2::Header::try_from(buf).ok()?;
    Some(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => format!(
            "{}:{} {}:{}",
            a.source_address, a.source_port, a.destination_address, a.destination_port
        ),
        other => format!("unexpected {other:?}"),
    })
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_announce_the_real_client() {
    for version in ["v1", "v2"] {
        let upstream = proxy_header_upstream().await;
        let sluice = Sluice::start(&format!(
            r#"
            [routes.web]
            listen = "127.0.0.1:0"
            pool = "web"
            proxy_protocol = "{version}"
            [pools.web]
            members = [{{ addr = "{upstream}" }}]
            [pools.web.health]
            enabled = false
            "#
        ))
        .await;
        let mut client = TcpStream::connect(sluice.addr("web")).await.unwrap();
        let expected = format!("{} {}", client.local_addr().unwrap(), sluice.addr("web"));
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, expected, "PROXY {version}");
        // The client has not half-closed yet: the relay would keep its direction open.
        drop(client);
        sluice.stop().await;
    }
}
