//! The admin tests' harness: a sluice with an admin listener, a one-request HTTP/1.1 client,
//! an upstream that names itself and then echoes, and a Prometheus text lookup.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sluice::{RunSummary, Server, Shutdown};
use sluice_testkit::{settle, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long any wait on sluice may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A sluice with an admin listener, running in this process.
pub struct Admin {
    pub admin: SocketAddr,
    pub route: SocketAddr,
    pub shutdown: Shutdown,
    run: JoinHandle<RunSummary>,
}

impl Admin {
    /// One route and pool, both named `name`, over `members` (TOML inline tables), with health
    /// checks configured by `health` (a `[pools.NAME.health]` body).
    pub async fn start(name: &str, members: &str, health: &str) -> Self {
        let routes_and_pools = format!(
            r#"
            [routes.{name}]
            listen = "127.0.0.1:0"
            pool = "{name}"
            [pools.{name}]
            members = [{members}]
            [pools.{name}.health]
            {health}
            "#
        );
        Self::start_toml(name, &routes_and_pools).await
    }

    /// `routes_and_pools` (TOML) with an admin listener; `route` is the route to connect to.
    pub async fn start_toml(route: &str, routes_and_pools: &str) -> Self {
        Self::start_with_admin(route, "", routes_and_pools).await
    }

    /// [`Admin::start_toml`] with more `[admin]` keys (`admin`, TOML lines).
    pub async fn start_with_admin(route: &str, admin: &str, routes_and_pools: &str) -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let text = format!(
            "shutdown_grace = \"10s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n{routes_and_pools}"
        );
        let config = sluice::config::from_str(&text, None).unwrap_or_else(|e| panic!("{e}"));
        let server = Server::bind(config).await.unwrap();
        let admin = server.admin_addr().expect("config has [admin]");
        let route = server.local_addrs(route)[0];
        let shutdown = Shutdown::new();
        let run = tokio::spawn(server.run(shutdown.clone()));
        Self {
            admin,
            route,
            shutdown,
            run,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        request(self.admin, "GET", path).await
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        let (status, body) = request(self.admin, "POST", path).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    pub async fn status(&self) -> Value {
        let (code, body) = self.get("/status").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `/status` until `cond` holds; panics with the last document after [`DEADLINE`].
    pub async fn wait_status(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let status = settle(DEADLINE, async || self.status().await, |s| cond(s)).await;
        assert!(cond(&status), "timed out waiting for {what}: {status:#}");
        status
    }

    pub async fn stop(self) -> RunSummary {
        self.shutdown.stop();
        within(Duration::from_secs(30), "sluice to stop", self.run)
            .await
            .unwrap()
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the body as text.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let (status, _, body) = request_full(addr, method, path).await;
    (status, body)
}

pub async fn request_full(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// An upstream that writes its id byte, then echoes until the client half-closes: it tells
/// which member a connection reached and can keep flowing afterwards.
pub async fn identify_then_echo(id: u8) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.write_all(&[id]).await?;
                let (mut r, mut w) = stream.split();
                tokio::io::copy(&mut r, &mut w).await?;
                w.shutdown().await
            });
        }
    });
    (addr, task)
}

/// Connects through sluice and returns the stream with the id byte of the member reached.
pub async fn connect(route: SocketAddr) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(route).await.unwrap();
    let mut id = [0u8; 1];
    stream.read_exact(&mut id).await.unwrap();
    (stream, id[0])
}

pub async fn echo(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    let mut back = vec![0u8; bytes.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, bytes);
}

/// The value of the sample of `name` carrying every label in `labels`, if present.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The fields `keys` of the object `value`, to compare part of a document at once.
pub fn pick(value: &Value, keys: &[&str]) -> Value {
    keys.iter()
        .map(|&k| (k.to_string(), value[k].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
