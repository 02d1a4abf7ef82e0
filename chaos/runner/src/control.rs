//! Operator actions on the sluice under drill, the timeline's `drain`, `undrain` and `reload`:
//! through the admin API of a `[target]` sluice (`POST /pools/P/members/M/drain|enable`,
//! `POST /reload`), or on the drill's own sluice through the same handles its admin API uses
//! (the pool's drain flag, `Reloader::apply` of its config: a reload that changes nothing,
//! which is what a config-management run does most often, and what must lose no connection).

use std::net::SocketAddr;

use sluice::config::Config;
use sluice::server::Reloader;

use super::admin::Admin;

/// Where operator actions go.
pub enum Control {
    InProcess {
        reloader: Reloader,
        pool: String,
        // Boxed: a config is hundreds of bytes, the admin variant a few dozen.
        config: Box<Config>,
    },
    Admin {
        admin: Admin,
        pool: String,
    },
}

impl Control {
    /// Drains (or undrains) the member sluice dials at `proxy`.
    pub async fn drain(&self, proxy: SocketAddr, drained: bool) -> Result<(), String> {
        match self {
            Self::InProcess { reloader, pool, .. } => {
                let pool = reloader
                    .pool(pool)
                    .await
                    .ok_or_else(|| format!("sluice has no pool {pool:?}"))?;
                let member = pool
                    .members()
                    .iter()
                    .find(|m| m.addr() == proxy)
                    .cloned()
                    .ok_or_else(|| format!("pool has no member {proxy}"))?;
                member.set_drained(drained);
                Ok(())
            }
            Self::Admin { admin, pool } => {
                let verb = if drained { "drain" } else { "enable" };
                admin
                    .post(&format!("/pools/{pool}/members/{proxy}/{verb}"))
                    .await
            }
        }
    }

    pub async fn reload(&self) -> Result<(), String> {
        match self {
            Self::InProcess {
                reloader, config, ..
            } => reloader
                .apply(Config::clone(config))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Admin { admin, .. } => admin.post("/reload").await,
        }
    }
}
