//! The running sluice's admin API, for a `[target]` drill: which pool holds the drill's
//! proxies, and each one's health and breaker state from `/status`.

use std::net::SocketAddr;

use hyper::Method;
use serde::Deserialize;

use super::observe::{Breaker, MemberState};

/// A sluice admin API on loopback.
#[derive(Clone, Debug)]
pub struct Admin {
    pub addr: SocketAddr,
}

#[derive(Debug, Deserialize)]
struct Status {
    routes: Vec<RouteStatus>,
    pools: Vec<PoolStatus>,
}

#[derive(Debug, Deserialize)]
struct RouteStatus {
    listen: Vec<SocketAddr>,
    pool: String,
    #[serde(default)]
    active: u64,
}

#[derive(Debug, Deserialize)]
struct PoolStatus {
    name: String,
    balance: String,
    members: Vec<MemberStatus>,
}

#[derive(Debug, Deserialize)]
struct MemberStatus {
    resolved: SocketAddr,
    health: String,
    breaker: Option<BreakerStatus>,
}

#[derive(Debug, Deserialize)]
struct BreakerStatus {
    state: String,
}

/// The pool under drill as `/status` shows it.
#[derive(Debug)]
pub struct PoolView {
    pub name: String,
    pub balance: String,
    /// Per proxy asked for, in that order: its state, `None` when the pool does not list it.
    pub members: Vec<Option<MemberState>>,
}

impl Admin {
    async fn status(&self) -> Result<Status, String> {
        let (code, body) = super::http::exchange(self.addr, Method::GET, "/status", None)
            .await
            .map_err(|e| format!("admin API {}: GET /status: {e}", self.addr))?;
        if !code.is_success() {
            return Err(format!(
                "admin API {}: GET /status answered {code}",
                self.addr
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            format!(
                "admin API {}: GET /status: not sluice's status: {e}",
                self.addr
            )
        })
    }

    /// Waits until the route on `listen` has no open connection, or `deadline`; returns whether
    /// it got there. sluice writes a connection's access line before it stops counting it as
    /// active, so once the route is idle every line of the drill's connections is in the file.
    /// A deployed sluice with other clients on the route may never get there: then the drill
    /// goes on at the deadline and says so.
    pub async fn wait_route_idle(
        &self,
        listen: SocketAddr,
        deadline: tokio::time::Instant,
    ) -> bool {
        loop {
            let idle = self.status().await.is_ok_and(|s| {
                s.routes
                    .iter()
                    .filter(|r| r.listen.contains(&listen))
                    .all(|r| r.active == 0)
            });
            if idle {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// `POST path`; any 2xx is success, anything else names the status and body.
    pub async fn post(&self, path: &str) -> Result<(), String> {
        let (code, body) = super::http::exchange(self.addr, Method::POST, path, None)
            .await
            .map_err(|e| format!("admin API {}: POST {path}: {e}", self.addr))?;
        if code.is_success() {
            Ok(())
        } else {
            Err(format!(
                "admin API {}: POST {path} answered {code}: {}",
                self.addr,
                String::from_utf8_lossy(&body).trim()
            ))
        }
    }

    /// The pool named `pool`, or the one whose route listens on `listen`, with the states of
    /// the members at `proxies`.
    pub async fn pool(
        &self,
        pool: Option<&str>,
        listen: SocketAddr,
        proxies: &[SocketAddr],
    ) -> Result<PoolView, String> {
        let status = self.status().await?;
        let name = match pool {
            Some(p) => p.to_string(),
            None => status
                .routes
                .iter()
                .find(|r| r.listen.contains(&listen))
                .map(|r| r.pool.clone())
                .ok_or_else(|| {
                    format!(
                        "the sluice at admin {} has no route listening on {listen}",
                        self.addr
                    )
                })?,
        };
        let found = status
            .pools
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("the sluice at admin {} has no pool {name:?}", self.addr))?;
        let members = proxies
            .iter()
            .map(|proxy| {
                found
                    .members
                    .iter()
                    .find(|m| m.resolved == *proxy)
                    .map(|m| MemberState {
                        up: m.health == "up",
                        breaker: match m.breaker.as_ref().map(|b| b.state.as_str()) {
                            Some("open") => Breaker::Open,
                            Some("half_open") => Breaker::HalfOpen,
                            Some(_) => Breaker::Closed,
                            None => Breaker::None,
                        },
                    })
            })
            .collect();
        Ok(PoolView {
            name: found.name,
            balance: found.balance,
            members,
        })
    }
}
