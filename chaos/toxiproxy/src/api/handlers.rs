//! One handler per Toxiproxy endpoint: parse the path, call the store, shape the answer.
//!
//! Status codes per endpoint, from `api.go`: creating a proxy and `/populate` answer 201; creating
//! or updating a toxic answers 200 (Toxiproxy never writes 201 there); deletes and `/reset`
//! answer 204 with no body; everything else 200.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{TOXIPROXY_VERSION, error_json, json_response, no_content, ok, status_of};
use crate::error::Error;
use crate::proxy::{Proxy, SETTLE};
use crate::store::Store;
use crate::toxic::{NewToxic, ToxicPatch};

type Shared = State<Arc<Store>>;

/// Extension: waits (bounded) until a `connect_timeout` added or removed has taken effect on
/// the listener, so the answer means "done", as for enabling and disabling. Other toxics
/// settle at once.
async fn settle(proxy: &Proxy) {
    let _ = tokio::time::timeout(SETTLE, proxy.settled()).await;
}

pub async fn version() -> Response {
    // Byte for byte what Toxiproxy writes, trailing newline included.
    let body = format!("{{\"version\": \"{TOXIPROXY_VERSION}\"}}\n");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    // Lets a runner tell this server from a real Toxiproxy without changing the body.
    headers.insert(
        "x-sluice-toxiproxy",
        HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    response
}

pub async fn reset(State(store): Shared) -> Result<Response, Error> {
    store.reset().await?;
    Ok(no_content())
}

pub async fn populate(State(store): Shared, body: Bytes) -> Response {
    let (proxies, err) = store.populate(&body).await;
    let mut list = Vec::with_capacity(proxies.len());
    for proxy in &proxies {
        list.push(proxy.to_json().await);
    }
    // Go marshals an empty result slice as null, and clients are written against that.
    let list = if list.is_empty() {
        Value::Null
    } else {
        Value::Array(list)
    };
    match err {
        None => json_response(StatusCode::CREATED, &json!({ "proxies": list })),
        Some(err) => {
            let mut body = error_json(&err);
            body["proxies"] = list;
            json_response(status_of(&err), &body)
        }
    }
}

pub async fn proxy_index(State(store): Shared) -> Response {
    ok(&store.list_json().await)
}

pub async fn proxy_create(State(store): Shared, body: Bytes) -> Result<Response, Error> {
    let proxy = store.create(&body).await?;
    Ok(json_response(StatusCode::CREATED, &proxy.to_json().await))
}

pub async fn proxy_show(State(store): Shared, Path(name): Path<String>) -> Result<Response, Error> {
    let proxy = store.get(&name).await?;
    Ok(ok(&proxy.to_json().await))
}

pub async fn proxy_update(
    State(store): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let proxy = store.update(&name, &body).await?;
    Ok(ok(&proxy.to_json().await))
}

pub async fn proxy_delete(
    State(store): Shared,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    store.remove(&name).await?;
    Ok(no_content())
}

pub async fn toxic_index(
    State(store): Shared,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let proxy = store.get(&name).await?;
    let toxics: Vec<Value> = proxy
        .toxics()
        .snapshot()
        .all()
        .map(|t| t.to_json())
        .collect();
    Ok(ok(&Value::Array(toxics)))
}

pub async fn toxic_create(
    State(store): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let proxy = store.get(&name).await?;
    let toxic = proxy.toxics().add(NewToxic::from_json(&body)?)?;
    settle(&proxy).await;
    Ok(ok(&toxic.to_json()))
}

pub async fn toxic_show(
    State(store): Shared,
    Path((name, toxic)): Path<(String, String)>,
) -> Result<Response, Error> {
    let proxy = store.get(&name).await?;
    let snapshot = proxy.toxics().snapshot();
    let toxic = snapshot.find(&toxic).ok_or(Error::ToxicNotFound)?;
    Ok(ok(&toxic.to_json()))
}

pub async fn toxic_update(
    State(store): Shared,
    Path((name, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Error> {
    let proxy = store.get(&name).await?;
    // Toxiproxy looks the toxic up before reading the body, so an unknown name is a 404 even
    // when the body is bad.
    if proxy.toxics().snapshot().find(&toxic).is_none() {
        return Err(Error::ToxicNotFound);
    }
    let updated = proxy
        .toxics()
        .update(&toxic, ToxicPatch::from_json(&body)?)?;
    Ok(ok(&updated.to_json()))
}

pub async fn toxic_delete(
    State(store): Shared,
    Path((name, toxic)): Path<(String, String)>,
) -> Result<Response, Error> {
    let proxy = store.get(&name).await?;
    proxy.toxics().remove(&toxic)?;
    settle(&proxy).await;
    Ok(no_content())
}
