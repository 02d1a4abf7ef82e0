//! Test support: an in-process server on 127.0.0.1:0, a small HTTP client, an echo upstream,
//! and deadline-bound waits.
//!
//! Every wait here is bounded by [`BOUND`] and fails with what it was waiting for; nothing sleeps
//! to let something else happen first. The server is the same `run` the binary calls.
#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sluice_toxiproxy::{AddrPolicy, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for anything a test waits on.
pub const BOUND: Duration = Duration::from_secs(10);

/// Runs `fut`, failing the test with `what` if it takes longer than [`BOUND`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    sluice_testkit::within(BOUND, what, fut).await
}

/// Logs from the server under test, shown for failing tests (`RUST_LOG` to tune).
pub fn trace_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sluice_toxiproxy=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A server under test. Stops (and stops its proxies) when dropped.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub raw: Bytes,
    /// The body as JSON, or `Null` when empty or not JSON.
    pub json: Value,
}

impl Server {
    /// Starts a loopback-only server on an ephemeral port.
    pub async fn start() -> Server {
        trace_init();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let config = Config {
            policy: AddrPolicy::default(),
        };
        let task = tokio::spawn(sluice_toxiproxy::run(listener, config, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            within("server shutdown", task).await.unwrap().unwrap();
        }
    }

    /// Sends one request; `body` is sent as JSON text when given.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.call_raw(method, path, body.into_bytes(), None).await
    }

    /// Sends one request with a raw body and an optional User-Agent.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        user_agent: Option<&str>,
    ) -> Reply {
        request(self.addr, method, path, body, user_agent).await
    }

    /// Creates an enabled proxy on 127.0.0.1:0 and returns the address it listens on.
    pub async fn proxy(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let body = json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream.to_string()});
        let reply = self.call("POST", "/proxies", Some(body)).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.json["listen"].as_str().unwrap().parse().unwrap()
    }

    /// Adds a toxic to `proxy`, asserting success.
    pub async fn toxic(&self, proxy: &str, toxic: Value) -> Value {
        let reply = self
            .call("POST", &format!("/proxies/{proxy}/toxics"), Some(toxic))
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Sends one HTTP/1.1 request to `addr` on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
    user_agent: Option<&str>,
) -> Reply {
    within(&format!("{method} {path}"), async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        if let Some(ua) = user_agent {
            request = request.header("user-agent", ua);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let raw = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            raw,
            json,
        }
    })
    .await
}

/// An upstream that echoes every byte back and closes when the client does.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Connects to `addr`, bounded.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    within("connect", TcpStream::connect(addr)).await.unwrap()
}

/// Writes `data` and reads the same number of bytes back.
pub async fn round_trip(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    within("round trip", async {
        stream.write_all(data).await.unwrap();
        let mut back = vec![0; data.len()];
        stream.read_exact(&mut back).await.unwrap();
        back
    })
    .await
}

/// Reads until EOF or an error; returns the bytes and the error, if any.
pub async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Option<std::io::Error>) {
    within("end of stream", async {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(err) => return (out, Some(err)),
            }
        }
    })
    .await
}

/// A recognisable byte pattern, so a test can tell reordering and loss from success.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// An upstream that reads each connection to its end and reports everything it received.
pub async fn sink_server() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got).await;
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}
