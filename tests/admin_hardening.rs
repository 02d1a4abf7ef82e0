//! The admin listener as an attack surface (issue 15): slow and idle clients are cut off, the
//! connection cap holds without touching the data plane, web pages and rebound DNS names
//! cannot drive it, bad bodies never trigger an action, the bearer token, and JSON on every
//! error.
//!
//! Requests are written by hand on raw sockets, so each test controls exactly which headers
//! and body bytes reach the server (a real HTTP client would fix up `Host` or the framing).

mod common;
#[allow(dead_code)]
#[path = "admin/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Behavior, Upstream};
use harness::{Admin, DEADLINE, echo};
use serde_json::Value;
use sluice::admin::{BODY_LIMIT, HEADER_TIMEOUT};
use sluice_testkit::{eventually_async, scratch_dir, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How late past its timeout the server may close a connection and still pass: scheduling on
/// a loaded 2-core CI box, never the timeout itself.
const MARGIN: Duration = Duration::from_secs(2);

/// A response as read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Value,
}

/// Writes `head` (request line and headers, `\r\n`-separated, without the blank line) and then
/// `body` on a fresh connection while reading the reply until the server closes.
async fn raw(addr: SocketAddr, head: &str, body: Vec<u8>) -> Reply {
    try_raw(addr, head, body)
        .await
        .unwrap_or_else(|| panic!("no reply to {head:?}"))
}

/// [`raw`], or `None` when the server closed without a reply (the connection cap).
async fn try_raw(addr: SocketAddr, head: &str, body: Vec<u8>) -> Option<Reply> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    // Written on its own task: the server may answer (and close) before reading it all, and
    // a write error then is expected.
    let writer = tokio::spawn(async move {
        if w.write_all(&request).await.is_ok() && w.write_all(&body).await.is_ok() {
            let _ = w.flush().await;
        }
        w
    });
    let bytes = within(DEADLINE, "the reply", read_until_closed(&mut r)).await;
    drop(writer.await);
    parse_reply(&bytes)
}

/// Everything the peer sends until it closes (a reset after the reply counts as closing).
async fn read_until_closed(r: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return bytes,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

fn parse_reply(bytes: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
    };
    Some(Reply {
        status,
        head: head.to_ascii_lowercase(),
        body,
    })
}

/// One echo member named `name` (route and pool alike), health checks off.
async fn start(name: &str, admin: &str) -> (Admin, Upstream) {
    let up = Upstream::start(Behavior::Echo).await;
    let toml = format!(
        r#"
        [routes.{name}]
        listen = "127.0.0.1:0"
        pool = "{name}"
        [pools.{name}]
        members = [{{ addr = "{}" }}]
        [pools.{name}.health]
        enabled = false
        "#,
        up.addr
    );
    (Admin::start_with_admin(name, admin, &toml).await, up)
}

/// The member's admin state as `/status` reports it (`enabled` or `drain`).
async fn member_admin(sluice: &Admin) -> Value {
    sluice.status().await["pools"][0]["members"][0]["admin"].clone()
}

fn drain_head(sluice: &Admin, pool: &str, member: SocketAddr) -> String {
    format!(
        "POST /pools/{pool}/members/{member}/drain HTTP/1.1\r\nHost: {}",
        sluice.admin
    )
}

fn error_of(reply: &Reply) -> &str {
    assert!(
        reply.head.contains("content-type: application/json"),
        "{reply:?}"
    );
    reply.body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {reply:?}"))
}

#[tokio::test]
async fn slow_header_client_is_cut_off_at_the_header_timeout() {
    let (sluice, _up) = start("slowheader", "").await;
    let started = Instant::now();
    let stream = TcpStream::connect(sluice.admin).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
        sluice.admin
    );
    // One byte a second, forever: the header never completes.
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for byte in head.bytes().chain(std::iter::repeat(b'a')) {
            tick.tick().await;
            if w.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
    let reply = within(
        HEADER_TIMEOUT + MARGIN,
        "the server to cut the slow client",
        read_until_closed(&mut r),
    )
    .await;
    let cut = started.elapsed();
    writer.abort();
    assert!(
        cut >= HEADER_TIMEOUT - Duration::from_millis(100),
        "cut after {cut:?}, before the {HEADER_TIMEOUT:?} header timeout"
    );
    assert!(
        reply.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&reply)
    );
    eprintln!("slow-header client cut after {cut:?}");
    sluice.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let (sluice, _up) = start("idlekeepalive", "").await;
    let mut stream = TcpStream::connect(sluice.admin).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", sluice.admin);
    stream.write_all(request.as_bytes()).await.unwrap();
    let answered = read_response(&mut stream).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let idle_from = Instant::now();
    let rest = within(
        HEADER_TIMEOUT + MARGIN,
        "the idle connection to close",
        read_until_closed(&mut stream),
    )
    .await;
    let idle = idle_from.elapsed();
    assert!(
        idle >= HEADER_TIMEOUT - Duration::from_millis(100),
        "closed after {idle:?} idle"
    );
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest}"
    );
    eprintln!("idle keep-alive connection closed after {idle:?}");
    sluice.stop().await;
}

/// Reads one response whose body has a `Content-Length`, leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")?
                        .parse()
                        .ok()
                })
                .expect("content-length");
            if body.len() >= len {
                return text;
            }
        }
        let n = within(DEADLINE, "a response", stream.read(&mut buf))
            .await
            .unwrap();
        assert_ne!(n, 0, "closed mid-response: {text}");
        bytes.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_while_the_data_plane_serves() {
    let (sluice, _up) = start("admincap", "max_connections = 4").await;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", sluice.admin);
    // Four kept-alive connections, each proven accepted by its answer, hold every permit.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(sluice.admin).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    for _ in 0..3 {
        let mut extra = TcpStream::connect(sluice.admin).await.unwrap();
        let _ = extra.write_all(request.as_bytes()).await;
        let reply = within(
            DEADLINE,
            "the over-cap connection to close",
            read_until_closed(&mut extra),
        )
        .await;
        assert!(
            reply.is_empty(),
            "served beyond the cap: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    // The data plane does not notice.
    let mut client = TcpStream::connect(sluice.route).await.unwrap();
    echo(&mut client, b"through the route while admin is full").await;
    // A freed slot is served again.
    drop(held.pop());
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {}", sluice.admin);
    eventually_async(DEADLINE, "a freed admin slot to serve", async || {
        try_raw(sluice.admin, &health, Vec::new())
            .await
            .is_some_and(|r| r.status == 200)
    })
    .await;
    sluice.stop().await;
}

#[tokio::test]
async fn cross_site_post_is_refused_and_the_member_stays_enabled() {
    let (sluice, up) = start("crosssite", "").await;
    let drain = drain_head(&sluice, "crosssite", up.addr);
    for extra in [
        "Origin: http://evil.example",
        "Origin: null",
        &format!("Origin: https://{}", sluice.admin),
        "Sec-Fetch-Site: cross-site",
        "Sec-Fetch-Site: same-site",
    ] {
        let reply = raw(sluice.admin, &format!("{drain}\r\n{extra}"), Vec::new()).await;
        assert_eq!(reply.status, 403, "{extra}: {reply:?}");
        assert!(
            error_of(&reply).contains("cross-origin request"),
            "{reply:?}"
        );
        assert_eq!(member_admin(&sluice).await, "enabled", "drained by {extra}");
    }
    // The listener's own origin (its own UI, a same-origin fetch) and curl still work.
    let own = format!(
        "{drain}\r\nOrigin: http://{}\r\nSec-Fetch-Site: same-origin",
        sluice.admin
    );
    assert_eq!(raw(sluice.admin, &own, Vec::new()).await.status, 200);
    assert_eq!(member_admin(&sluice).await, "drain");
    sluice.stop().await;
}

#[tokio::test]
async fn wrong_host_is_refused() {
    let (sluice, up) = start("wronghost", "").await;
    let port = sluice.admin.port();
    let status = |host: String| format!("GET /status HTTP/1.1\r\nHost: {host}");
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "localhost".to_string(),
    ] {
        let reply = raw(sluice.admin, &status(host.clone()), Vec::new()).await;
        assert_eq!(reply.status, 403, "{host}: {reply:?}");
        assert!(error_of(&reply).contains("DNS rebinding"), "{reply:?}");
    }
    let no_host = raw(sluice.admin, "GET /status HTTP/1.0", Vec::new()).await;
    assert_eq!(no_host.status, 403, "{no_host:?}");
    let rebound = format!(
        "POST /pools/wronghost/members/{}/drain HTTP/1.1\r\nHost: evil.example:{port}",
        up.addr
    );
    assert_eq!(raw(sluice.admin, &rebound, Vec::new()).await.status, 403);
    assert_eq!(member_admin(&sluice).await, "enabled");
    for host in [sluice.admin.to_string(), format!("LocalHost:{port}")] {
        let reply = raw(sluice.admin, &status(host.clone()), Vec::new()).await;
        assert_eq!(reply.status, 200, "{host}: {reply:?}");
    }
    sluice.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413_and_changes_nothing() {
    let (sluice, up) = start("bigbody", "").await;
    let drain = drain_head(&sluice, "bigbody", up.addr);
    let ten_mb = vec![b'x'; 10 << 20];
    let declared = raw(
        sluice.admin,
        &format!("{drain}\r\nContent-Length: {}", ten_mb.len()),
        ten_mb.clone(),
    )
    .await;
    assert_eq!(declared.status, 413, "{declared:?}");
    assert!(
        error_of(&declared).contains(&format!("larger than {BODY_LIMIT} bytes")),
        "{declared:?}"
    );
    // Chunked, so the size is only known once the limit is crossed.
    let mut chunked = Vec::new();
    for chunk in ten_mb.chunks(1 << 16) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = raw(
        sluice.admin,
        &format!("{drain}\r\nTransfer-Encoding: chunked"),
        chunked,
    )
    .await;
    assert_eq!(streamed.status, 413, "{streamed:?}");
    assert_eq!(member_admin(&sluice).await, "enabled");
    sluice.stop().await;
}

#[tokio::test]
async fn malformed_body_is_400_and_changes_nothing() {
    let (sluice, up) = start("badchunk", "").await;
    let drain = drain_head(&sluice, "badchunk", up.addr);
    let reply = raw(
        sluice.admin,
        &format!("{drain}\r\nTransfer-Encoding: chunked"),
        b"zz\r\nhello\r\n0\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        error_of(&reply).starts_with("malformed request body"),
        "{reply:?}"
    );
    assert_eq!(member_admin(&sluice).await, "enabled");
    // A small well-formed body is read and ignored: the action runs.
    let reply = raw(
        sluice.admin,
        &format!("{drain}\r\nContent-Length: 2"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(member_admin(&sluice).await, "drain");
    sluice.stop().await;
}

#[tokio::test]
async fn token_is_required_everywhere_but_healthz() {
    let dir = scratch_dir("admin-token");
    let file = dir.join("token");
    std::fs::write(&file, "s3cret-token\n").unwrap();
    let admin = format!("token_file = {:?}", file.display().to_string());
    let (sluice, up) = start("tokenroute", &admin).await;
    let host = format!("Host: {}", sluice.admin);
    let get = |path: &str, auth: &str| format!("GET {path} HTTP/1.1\r\n{host}{auth}");

    let healthz = raw(sluice.admin, &get("/healthz", ""), Vec::new()).await;
    assert_eq!(healthz.status, 200, "{healthz:?}");
    for auth in [
        "",
        "\r\nAuthorization: Bearer wrong",
        "\r\nAuthorization: Basic czNjcmV0",
    ] {
        let reply = raw(sluice.admin, &get("/status", auth), Vec::new()).await;
        assert_eq!(reply.status, 401, "{auth}: {reply:?}");
        assert!(reply.head.contains("www-authenticate: bearer"), "{reply:?}");
        assert!(error_of(&reply).contains("token"), "{reply:?}");
    }
    let drain = drain_head(&sluice, "tokenroute", up.addr);
    assert_eq!(raw(sluice.admin, &drain, Vec::new()).await.status, 401);
    let bearer = "\r\nAuthorization: Bearer s3cret-token";
    let status = raw(sluice.admin, &get("/status", bearer), Vec::new()).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(
        status.body["pools"][0]["members"][0]["admin"], "enabled",
        "drained without the token"
    );
    let reply = raw(sluice.admin, &format!("{drain}{bearer}"), Vec::new()).await;
    assert_eq!(
        (reply.status, &reply.body["member"]["admin"]),
        (200, &Value::from("drain"))
    );
    sluice.stop().await;
}

#[test]
fn admin_config_errors_name_the_key_value_and_reason() {
    let dir = scratch_dir("admin-config");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.join("missing");
    let check = |admin: &str| {
        let text = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n[routes.r]\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n[pools.p]\nmembers = [{{ addr = \"127.0.0.1:1\" }}]\n"
        );
        match sluice::config::from_str(&text, None) {
            Ok(_) => panic!("accepted {admin}"),
            Err(e) => e.to_string(),
        }
    };
    let path = |p: &std::path::Path| p.display().to_string();
    assert_eq!(
        check(&format!("token_file = {:?}", path(&empty))),
        format!(
            "<command line>: admin.token_file = {:?}: the file is empty; put the token in it or remove the key (line 3, column 14)",
            path(&empty)
        )
    );
    assert_eq!(
        check(&format!("token_file = {:?}", path(&missing))),
        format!(
            "<command line>: admin.token_file = {:?}: cannot read {}: No such file or directory (os error 2) (line 3, column 14)",
            path(&missing),
            path(&missing)
        )
    );
    assert_eq!(
        check("max_connections = 0"),
        "<command line>: admin.max_connections = 0: must be between 1 and 1024 (line 3, column 19)"
    );
}

#[tokio::test]
async fn every_error_is_json() {
    let (sluice, _up) = start("jsonerrors", "").await;
    let host = format!("Host: {}", sluice.admin);
    for (request, status, says) in [
        ("GET /nope", 404, "no such endpoint: GET /nope"),
        (
            "DELETE /status",
            405,
            "method DELETE not allowed on /status",
        ),
        ("GET /reload", 405, "method GET not allowed on /reload"),
        (
            "POST /pools/jsonerrors/members/%FF/drain",
            400,
            "Invalid URL",
        ),
    ] {
        let reply = raw(
            sluice.admin,
            &format!("{request} HTTP/1.1\r\n{host}"),
            Vec::new(),
        )
        .await;
        assert_eq!(reply.status, status, "{request}: {reply:?}");
        assert!(error_of(&reply).contains(says), "{request}: {reply:?}");
    }
    // hyper refuses a head over its buffer before any request exists: no body to make JSON.
    let huge = format!(
        "GET /status HTTP/1.1\r\n{host}\r\nX-Big: {}",
        "a".repeat(20 << 10)
    );
    let reply = raw(sluice.admin, &huge, Vec::new()).await;
    assert_eq!(
        (reply.status, &reply.body),
        (431, &Value::Null),
        "{reply:?}"
    );
    sluice.stop().await;
}
