//! The collection of proxies by name: create, look up, update, delete, populate, reset.
//!
//! Semantics follow Toxiproxy's `ProxyCollection` and API handlers: names are unique (409), a
//! proxy that fails to start is not added, `/populate` checks every entry before creating any,
//! keeps an existing proxy untouched when its addresses match and replaces it otherwise, and
//! stops at the first failure, returning what it created so far. Bodies are parsed here rather
//! than in `api` because the defaults (an update starts from the proxy's current fields) are part
//! of those semantics. Running a single proxy is `proxy`'s job.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::addr::AddrPolicy;
use crate::error::Error;
use crate::proxy::{Proxy, ProxySpec};

/// All proxies of one server.
#[derive(Debug)]
pub struct Store {
    policy: AddrPolicy,
    // Held across a proxy's start or stop, as Toxiproxy holds its collection lock, so two
    // requests cannot race to create the same name. Lock order: this, then a proxy's own.
    proxies: Mutex<BTreeMap<String, Arc<Proxy>>>,
}

/// A proxy as `POST /proxies` and `/populate` accept it; absent fields are empty, and
/// `enabled` defaults to true.
#[derive(Debug, Deserialize)]
struct ProxyBody {
    name: Option<String>,
    listen: Option<String>,
    upstream: Option<String>,
    enabled: Option<bool>,
}

/// An update; absent fields keep the proxy's current value.
#[derive(Debug, Deserialize)]
struct UpdateBody {
    listen: Option<String>,
    upstream: Option<String>,
    enabled: Option<bool>,
}

impl Store {
    /// An empty store whose proxies bind and dial under `policy`.
    pub fn new(policy: AddrPolicy) -> Self {
        Store {
            policy,
            proxies: Mutex::new(BTreeMap::new()),
        }
    }

    /// Every proxy as a JSON object keyed by name (`GET /proxies`).
    pub async fn list_json(&self) -> Value {
        let proxies: Vec<Arc<Proxy>> = self.proxies.lock().await.values().cloned().collect();
        let mut out = Map::new();
        for proxy in proxies {
            out.insert(proxy.name().to_string(), proxy.to_json().await);
        }
        Value::Object(out)
    }

    /// The proxy with this name.
    pub async fn get(&self, name: &str) -> Result<Arc<Proxy>, Error> {
        let proxies = self.proxies.lock().await;
        proxies.get(name).cloned().ok_or(Error::ProxyNotFound)
    }

    /// Creates a proxy from a `POST /proxies` body and starts it if enabled.
    pub async fn create(&self, body: &[u8]) -> Result<Arc<Proxy>, Error> {
        let body: ProxyBody = serde_json::from_slice(body).map_err(Error::bad_body)?;
        let (name, spec) = self.checked(body, "")?;
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(&name) {
            return Err(Error::ProxyAlreadyExists);
        }
        let proxy = self.started(name.clone(), spec).await?;
        proxies.insert(name, proxy.clone());
        Ok(proxy)
    }

    /// Applies a `POST /proxies/{name}` body.
    pub async fn update(&self, name: &str, body: &[u8]) -> Result<Arc<Proxy>, Error> {
        let proxy = self.get(name).await?;
        let body: UpdateBody = serde_json::from_slice(body).map_err(Error::bad_body)?;
        let current = proxy.spec().await;
        let input = ProxySpec {
            listen: body.listen.unwrap_or(current.listen),
            upstream: body.upstream.unwrap_or(current.upstream),
            enabled: body.enabled.unwrap_or(current.enabled),
        };
        proxy.update(input).await?;
        Ok(proxy)
    }

    /// Stops and removes a proxy.
    pub async fn remove(&self, name: &str) -> Result<(), Error> {
        let mut proxies = self.proxies.lock().await;
        let proxy = proxies.get(name).ok_or(Error::ProxyNotFound)?;
        proxy.stop().await;
        proxies.remove(name);
        Ok(())
    }

    /// Enables every proxy and removes every toxic (`POST /reset`). Stops at the first proxy
    /// that fails to start, as Toxiproxy does.
    pub async fn reset(&self) -> Result<(), Error> {
        let proxies: Vec<Arc<Proxy>> = self.proxies.lock().await.values().cloned().collect();
        for proxy in proxies {
            proxy.start().await?;
            proxy.toxics().clear();
            // Bounded: a connect_timeout removed here has reopened the listener on return.
            let _ = tokio::time::timeout(crate::proxy::SETTLE, proxy.settled()).await;
        }
        Ok(())
    }

    /// Creates or replaces a list of proxies (`POST /populate`). Returns the proxies created or
    /// kept, and the error that stopped it, if any.
    pub async fn populate(&self, body: &[u8]) -> (Vec<Arc<Proxy>>, Option<Error>) {
        let bodies: Vec<ProxyBody> = match serde_json::from_slice(body) {
            Ok(bodies) => bodies,
            Err(err) => return (Vec::new(), Some(Error::bad_body(err))),
        };
        let mut checked = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.into_iter().enumerate() {
            match self.checked(body, &format!(" at proxy {}", i + 1)) {
                Ok(entry) => checked.push(entry),
                Err(err) => return (Vec::new(), Some(err)),
            }
        }
        let mut proxies = self.proxies.lock().await;
        let mut done = Vec::with_capacity(checked.len());
        for (name, spec) in checked {
            if let Some(existing) = proxies.get(&name) {
                match existing.differs(&spec.listen, &spec.upstream).await {
                    Ok(false) => {
                        done.push(existing.clone());
                        continue;
                    }
                    Ok(true) => existing.stop().await,
                    Err(err) => return (done, Some(err)),
                }
            }
            match self.started(name.clone(), spec).await {
                Ok(proxy) => {
                    proxies.insert(name, proxy.clone());
                    done.push(proxy);
                }
                Err(err) => return (done, Some(err)),
            }
        }
        (done, None)
    }

    /// Stops every proxy (server shutdown).
    pub async fn shutdown(&self) {
        let proxies: Vec<Arc<Proxy>> = self.proxies.lock().await.values().cloned().collect();
        for proxy in proxies {
            proxy.stop().await;
        }
    }

    /// Validates the required fields; `suffix` locates the entry in a `/populate` list.
    fn checked(&self, body: ProxyBody, suffix: &str) -> Result<(String, ProxySpec), Error> {
        let name = body.name.unwrap_or_default();
        if name.is_empty() {
            return Err(Error::MissingField(format!("name{suffix}")));
        }
        let upstream = body.upstream.unwrap_or_default();
        if upstream.is_empty() {
            return Err(Error::MissingField(format!("upstream{suffix}")));
        }
        self.policy.check_upstream_literal(&upstream)?;
        let spec = ProxySpec {
            listen: body.listen.unwrap_or_default(),
            upstream,
            enabled: body.enabled.unwrap_or(true),
        };
        Ok((name, spec))
    }

    /// A new proxy, started if `spec.enabled`.
    async fn started(&self, name: String, spec: ProxySpec) -> Result<Arc<Proxy>, Error> {
        let proxy = Proxy::new(name, spec.listen, spec.upstream, self.policy);
        if spec.enabled {
            proxy.start().await?;
        }
        Ok(proxy)
    }
}
