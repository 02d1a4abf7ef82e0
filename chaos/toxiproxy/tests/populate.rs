//! `/populate` and `/reset` against Toxiproxy v2's semantics (`proxy_collection.go`, `api.go`).

mod support;

use serde_json::json;
use support::{Server, echo_server};

#[tokio::test]
async fn populate_creates_keeps_and_replaces() {
    let server = Server::start().await;
    let upstream = echo_server().await.to_string();
    let other = echo_server().await.to_string();
    let list = json!([
        {"name": "a", "listen": "127.0.0.1:0", "upstream": upstream},
        {"name": "b", "listen": "127.0.0.1:0", "upstream": upstream, "enabled": false},
    ]);
    let first = server.call("POST", "/populate", Some(list)).await;
    assert_eq!(first.status, 201, "{first:?}");
    let proxies = first.json["proxies"].as_array().unwrap();
    assert_eq!(
        (proxies[0]["name"].clone(), proxies[1]["enabled"].clone()),
        (json!("a"), json!(false))
    );
    let a_listen = proxies[0]["listen"].as_str().unwrap().to_string();

    server.toxic("a", json!({"type": "latency"})).await;
    let same = json!([{"name": "a", "listen": a_listen, "upstream": upstream}]);
    let kept = server.call("POST", "/populate", Some(same)).await;
    assert_eq!(
        kept.json["proxies"][0]["toxics"].as_array().unwrap().len(),
        1,
        "untouched"
    );

    let changed = json!([{"name": "a", "listen": a_listen, "upstream": other}]);
    let replaced = server.call("POST", "/populate", Some(changed)).await;
    assert_eq!(replaced.status, 201, "{replaced:?}");
    assert_eq!(replaced.json["proxies"][0]["upstream"], json!(other));
    assert_eq!(
        replaced.json["proxies"][0]["toxics"],
        json!([]),
        "a new proxy"
    );

    let bad = json!([{"name": "c", "upstream": upstream}, {"upstream": upstream}]);
    let rejected = server.call("POST", "/populate", Some(bad)).await;
    assert_eq!(rejected.status, 400);
    assert_eq!(
        rejected.json,
        json!({"error": "missing required field: name at proxy 2", "status": 400, "proxies": null})
    );
    assert_eq!(
        server.call("GET", "/proxies/c", None).await.status,
        404,
        "nothing created"
    );
    server.stop().await;
}

#[tokio::test]
async fn reset_enables_proxies_and_removes_toxics() {
    let server = Server::start().await;
    server.proxy("db", echo_server().await).await;
    server.toxic("db", json!({"type": "timeout"})).await;
    server
        .call("POST", "/proxies/db", Some(json!({"enabled": false})))
        .await;
    let reset = server.call("POST", "/reset", None).await;
    assert_eq!((reset.status, reset.raw.len()), (204, 0));
    let proxy = server.call("GET", "/proxies/db", None).await;
    assert_eq!(
        (&proxy.json["enabled"], &proxy.json["toxics"]),
        (&json!(true), &json!([]))
    );
    server.stop().await;
}
