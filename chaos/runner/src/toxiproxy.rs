//! A small client for the Toxiproxy v2 HTTP API: the only way the drill touches faults.
//!
//! It speaks plain HTTP/1.1 with hyper's connection-level client, one connection per request:
//! the API sees a handful of requests per drill, so pooling would buy nothing, and a fresh
//! connection can never be a stale one. Every request has a deadline. Only the endpoints the
//! drill needs are here: `/version`, `/populate`, `/proxies/{name}` (enable, disable, delete),
//! `/proxies/{name}/toxics` (add, remove) and `/reset`. The same code drives sluice-toxiproxy
//! and a real Toxiproxy.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use thiserror::Error;

use super::scenario::Toxic;

/// An API call that did not do what was asked.
#[derive(Debug, Error)]
pub enum ToxiproxyError {
    #[error("TOXIPROXY_URL = {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{method} {path} on {addr}: {reason}")]
    Transport {
        method: Method,
        path: String,
        addr: SocketAddr,
        reason: String,
    },
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("{method} {path}: unexpected answer: {reason}")]
    Answer {
        method: Method,
        path: String,
        reason: String,
    },
}

/// A proxy as the API describes it (fields the drill reads).
#[derive(Clone, Debug, Deserialize)]
pub struct Proxy {
    pub name: String,
    /// With a requested port 0, the port picked.
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
}

/// A Toxiproxy API endpoint.
#[derive(Clone, Debug)]
pub struct Toxiproxy {
    addr: SocketAddr,
}

// === impl Toxiproxy ===

impl Toxiproxy {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// From a `TOXIPROXY_URL` such as `http://127.0.0.1:8474`. Only a loopback IP address is
    /// taken: the members the proxies dial listen on 127.0.0.1, so a remote Toxiproxy could not
    /// reach them, and plain HTTP is all there is (no TLS).
    pub fn from_url(url: &str) -> Result<Self, ToxiproxyError> {
        let bad = |reason: &str| ToxiproxyError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("expected http://HOST:PORT (no TLS)"))?;
        let authority = rest.trim_end_matches('/');
        let authority = authority.replace("localhost", "127.0.0.1");
        let addr: SocketAddr = authority
            .parse()
            .map_err(|_| bad("expected http://IP:PORT, e.g. http://127.0.0.1:8474"))?;
        if !addr.ip().is_loopback() {
            return Err(bad(
                "must be a loopback address: the drill's members listen on 127.0.0.1",
            ));
        }
        Ok(Self::new(addr))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's version string (`/version` answers JSON on newer releases, text on older).
    pub async fn version(&self) -> Result<String, ToxiproxyError> {
        let body = self.call(Method::GET, "/version", None).await?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => Ok(o
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string()),
            _ => Ok(String::from_utf8_lossy(&body).trim().to_string()),
        }
    }

    /// Creates (or replaces) proxies in one call; answers them with their real listen address.
    /// Creates (or updates) the proxies `(name, listen, upstream)` in one call.
    pub async fn populate(
        &self,
        proxies: &[(String, String, String)],
    ) -> Result<Vec<Proxy>, ToxiproxyError> {
        let list: Vec<Value> = proxies
            .iter()
            .map(|(name, listen, upstream)| {
                json!({"name": name, "listen": listen, "upstream": upstream, "enabled": true})
            })
            .collect();
        let body = self
            .call(Method::POST, "/populate", Some(Value::Array(list)))
            .await?;
        #[derive(Deserialize)]
        struct Populated {
            proxies: Vec<Proxy>,
        }
        let answer: Populated = self.decode(Method::POST, "/populate", &body)?;
        Ok(answer.proxies)
    }

    /// Enables (listening) or disables (listener closed, connections dropped) a proxy.
    pub async fn set_enabled(&self, proxy: &str, enabled: bool) -> Result<(), ToxiproxyError> {
        let path = format!("/proxies/{proxy}");
        self.call(Method::POST, &path, Some(json!({"enabled": enabled})))
            .await
            .map(drop)
    }

    pub async fn add_toxic(&self, proxy: &str, toxic: &Toxic) -> Result<(), ToxiproxyError> {
        let body = json!({
            "name": toxic.name,
            "type": toxic.kind,
            "stream": toxic.stream.as_str(),
            "toxicity": toxic.toxicity,
            "attributes": toxic.attributes,
        });
        let path = format!("/proxies/{proxy}/toxics");
        self.call(Method::POST, &path, Some(body)).await.map(drop)
    }

    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ToxiproxyError> {
        let path = format!("/proxies/{proxy}/toxics/{toxic}");
        self.call(Method::DELETE, &path, None).await.map(drop)
    }

    /// Every proxy enabled, every toxic removed (on the whole server, not only ours).
    pub async fn reset(&self) -> Result<(), ToxiproxyError> {
        self.call(Method::POST, "/reset", None).await.map(drop)
    }

    pub async fn delete_proxy(&self, proxy: &str) -> Result<(), ToxiproxyError> {
        let path = format!("/proxies/{proxy}");
        self.call(Method::DELETE, &path, None).await.map(drop)
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> Result<T, ToxiproxyError> {
        serde_json::from_slice(body).map_err(|e| ToxiproxyError::Answer {
            method,
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// One request on a fresh connection; a non-2xx status is an error carrying the body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Bytes, ToxiproxyError> {
        let transport = |reason: String| ToxiproxyError::Transport {
            method: method.clone(),
            path: path.to_string(),
            addr: self.addr,
            reason,
        };
        let (status, body) = super::http::exchange(self.addr, method.clone(), path, body)
            .await
            .map_err(transport)?;
        if !status.is_success() {
            return Err(ToxiproxyError::Status {
                method,
                path: path.to_string(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_plain_http_on_loopback() {
        let t = Toxiproxy::from_url("http://127.0.0.1:8474/").unwrap();
        assert_eq!(t.addr(), SocketAddr::from(([127, 0, 0, 1], 8474)));
        assert!(Toxiproxy::from_url("http://localhost:8474").is_ok());
        for bad in [
            "https://127.0.0.1:8474",
            "http://10.0.0.1:8474",
            "127.0.0.1:8474",
        ] {
            assert!(Toxiproxy::from_url(bad).is_err(), "{bad}");
        }
    }
}
