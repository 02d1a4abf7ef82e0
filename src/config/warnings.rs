//! Things a valid config allows that are rarely what the operator meant: `sluice check` prints
//! them on stderr (exit 0; `--strict` makes them fatal for CI) and `sluice run` logs them at
//! start. Each names the key and says why, like an error does.

use super::Config;

/// One warning: `FILE: warning: key.path: why`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub key: String,
    pub reason: String,
}

impl Warning {
    pub fn render(&self, file: &str) -> String {
        use super::error::one_line;
        format!(
            "{}: warning: {}: {}",
            one_line(file),
            one_line(&self.key),
            one_line(&self.reason)
        )
    }
}

/// Every warning `config` earns, in file order of its tables.
pub fn warnings(config: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    for pool in &config.pools {
        if !config.routes.iter().any(|r| r.pool == pool.name) {
            out.push(Warning {
                key: format!("pools.{}", pool.name),
                reason: "no route uses this pool; its health checks run for nothing".into(),
            });
        }
        if pool.health.is_none() && pool.breaker.is_none() {
            out.push(Warning {
                key: format!("pools.{}", pool.name),
                reason: "health checks and breaker are both off: a dead member stays in \
                         rotation and every client sent to it pays a failed connect"
                    .into(),
            });
        }
    }
    for route in &config.routes {
        if route.idle_timeout.is_none() {
            out.push(Warning {
                key: format!("routes.{}.idle_timeout", route.name),
                reason: "\"0s\" never closes an idle connection: a client that vanishes \
                         without a FIN holds two descriptors until sluice restarts"
                    .into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_pools_unguarded_pools_and_endless_idle_are_named() {
        let config = super::super::from_str(
            r#"
            [routes.web]
            listen = "127.0.0.1:0"
            pool = "web"
            idle_timeout = "0s"
            [pools.web]
            members = [{ addr = "127.0.0.1:9" }]
            [pools.web.health]
            enabled = false
            [pools.web.breaker]
            enabled = false
            [pools.spare]
            members = [{ addr = "127.0.0.1:9" }]
            "#,
            None,
        )
        .unwrap();
        let rendered: Vec<String> = warnings(&config)
            .iter()
            .map(|w| w.render("x.toml"))
            .collect();
        assert_eq!(
            rendered,
            [
                "x.toml: warning: pools.spare: no route uses this pool; its health checks run for nothing",
                "x.toml: warning: pools.web: health checks and breaker are both off: a dead member stays in rotation and every client sent to it pays a failed connect",
                "x.toml: warning: routes.web.idle_timeout: \"0s\" never closes an idle connection: a client that vanishes without a FIN holds two descriptors until sluice restarts",
            ]
        );
        let clean = super::super::from_str(
            "[routes.web]\nlisten = \"127.0.0.1:0\"\npool = \"web\"\n[pools.web]\nmembers = [{ addr = \"127.0.0.1:9\" }]\n",
            None,
        )
        .unwrap();
        assert!(warnings(&clean).is_empty());
    }
}
