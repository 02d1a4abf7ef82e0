//! The HTTP API against Toxiproxy v2's shapes and status codes (`api.go`, `api_test.go`).

mod support;

use serde_json::json;
use support::{Server, echo_server};

#[tokio::test]
async fn version_answers_like_toxiproxy() {
    let server = Server::start().await;
    let reply = server.call("GET", "/version", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json, json!({"version": "2.12.0"}));
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/json;charset=utf-8")
    );
    server.stop().await;
}

#[tokio::test]
async fn proxy_lifecycle_shapes_and_codes() {
    let server = Server::start().await;
    let upstream = echo_server().await;
    let body = json!({"name": "db", "listen": "127.0.0.1:0", "upstream": upstream.to_string()});
    let created = server.call("POST", "/proxies", Some(body)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let listen = created.json["listen"].as_str().unwrap().to_string();
    assert!(!listen.ends_with(":0"), "port 0 must be replaced: {listen}");
    assert_eq!(
        created.json,
        json!({"name": "db", "listen": listen, "upstream": upstream.to_string(),
               "enabled": true, "toxics": []})
    );

    let index = server.call("GET", "/proxies", None).await;
    assert_eq!((index.status, &index.json["db"]), (200, &created.json));

    let updated = server
        .call("POST", "/proxies/db", Some(json!({"enabled": false})))
        .await;
    assert_eq!(
        (updated.status, &updated.json["enabled"]),
        (200, &json!(false))
    );
    assert_eq!(
        updated.json["listen"],
        json!(listen),
        "other fields keep their value"
    );
    let patched = server
        .call("PATCH", "/proxies/db", Some(json!({"enabled": true})))
        .await;
    assert_eq!(
        (patched.status, &patched.json["enabled"]),
        (200, &json!(true))
    );

    let deleted = server.call("DELETE", "/proxies/db", None).await;
    assert_eq!((deleted.status, deleted.raw.len()), (204, 0));
    let gone = server.call("GET", "/proxies/db", None).await;
    assert_eq!(gone.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn errors_carry_toxiproxy_messages_and_codes() {
    let server = Server::start().await;
    let upstream = echo_server().await.to_string();
    server.proxy("db", upstream.parse().unwrap()).await;
    let cases = [
        ("GET", "/proxies/nope", None, 404, "proxy not found"),
        ("DELETE", "/proxies/nope", None, 404, "proxy not found"),
        ("GET", "/proxies/nope/toxics", None, 404, "proxy not found"),
        (
            "GET",
            "/proxies/db/toxics/nope",
            None,
            404,
            "toxic not found",
        ),
        (
            "DELETE",
            "/proxies/db/toxics/nope",
            None,
            404,
            "toxic not found",
        ),
        (
            "POST",
            "/proxies",
            Some(json!({"name": "db", "listen": "127.0.0.1:0", "upstream": upstream})),
            409,
            "proxy already exists",
        ),
        (
            "POST",
            "/proxies",
            Some(json!({"upstream": upstream})),
            400,
            "missing required field: name",
        ),
        (
            "POST",
            "/proxies",
            Some(json!({"name": "x"})),
            400,
            "missing required field: upstream",
        ),
        (
            "POST",
            "/proxies/db/toxics",
            Some(json!({"type": "gremlin"})),
            400,
            "invalid toxic type",
        ),
        (
            "POST",
            "/proxies/db/toxics",
            Some(json!({"type": "latency", "stream": "sideways"})),
            400,
            "stream was invalid, can be either upstream or downstream",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let reply = server.call(method, path, body).await;
        assert_eq!(
            reply.json,
            json!({"error": message, "status": status}),
            "{method} {path}"
        );
        assert_eq!(reply.status, status, "{method} {path}");
    }

    let bad_json = server
        .call_raw("POST", "/proxies", b"{not json".to_vec(), None)
        .await;
    assert_eq!(bad_json.status, 400);
    assert!(
        bad_json.json["error"]
            .as_str()
            .unwrap()
            .starts_with("bad request body: ")
    );

    server.toxic("db", json!({"type": "latency"})).await;
    let dup = server
        .call(
            "POST",
            "/proxies/db/toxics",
            Some(json!({"type": "latency"})),
        )
        .await;
    assert_eq!(
        (dup.status, &dup.json["error"]),
        (409, &json!("toxic already exists"))
    );

    // Not Toxiproxy: this machine only talks to loopback.
    let remote = server
        .call(
            "POST",
            "/proxies",
            Some(json!({"name": "r", "listen": "0.0.0.0:0", "upstream": upstream})),
        )
        .await;
    assert_eq!(remote.status, 400, "{remote:?}");
    assert!(server.call("GET", "/proxies/r", None).await.status == 404);
    server.stop().await;
}

#[tokio::test]
async fn toxic_crud_defaults_and_partial_update() {
    let server = Server::start().await;
    server.proxy("db", echo_server().await).await;
    let created = server
        .toxic(
            "db",
            json!({"type": "latency", "attributes": {"latency": 100}}),
        )
        .await;
    assert_eq!(
        created,
        json!({"attributes": {"latency": 100, "jitter": 0}, "name": "latency_downstream",
               "type": "latency", "stream": "downstream", "toxicity": 1.0})
    );
    server
        .toxic(
            "db",
            json!({"name": "cut", "type": "limit_data", "stream": "upstream",
                             "toxicity": 0.5, "attributes": {"bytes": 10}}),
        )
        .await;

    let list = server.call("GET", "/proxies/db/toxics", None).await;
    let names: Vec<_> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("cut"), json!("latency_downstream")],
        "upstream chain first"
    );

    let updated = server
        .call(
            "POST",
            "/proxies/db/toxics/latency_downstream",
            Some(json!({"attributes": {"jitter": 10}})),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(
        updated.json["attributes"],
        json!({"latency": 100, "jitter": 10})
    );
    let shown = server.call("GET", "/proxies/db/toxics/cut", None).await;
    assert_eq!((shown.status, &shown.json["toxicity"]), (200, &json!(0.5)));

    let proxy = server.call("GET", "/proxies/db", None).await;
    assert_eq!(proxy.json["toxics"].as_array().unwrap().len(), 2);
    let deleted = server.call("DELETE", "/proxies/db/toxics/cut", None).await;
    assert_eq!(deleted.status, 204);
    server.stop().await;
}

#[tokio::test]
async fn browsers_are_refused() {
    let server = Server::start().await;
    let ua = "Mozilla/5.0 (X11; Linux x86_64)";
    let reply = server
        .call_raw("GET", "/proxies", Vec::new(), Some(ua))
        .await;
    assert_eq!(reply.status, 403);
    let curl = server
        .call_raw("GET", "/proxies", Vec::new(), Some("curl/8"))
        .await;
    assert_eq!(curl.status, 200);
    server.stop().await;
}
