//! The embedded sluice config: inline `[sluice]` or `sluice_config = "path"`, with exactly one
//! route over one pool, since the runner replaces that route's listen addresses and that
//! pool's members and must not bind or dial anything else.

use std::path::Path;

use toml::{Table, Value};

use super::Validator;
use crate::parse;
use crate::scenario::SluiceUnderTest;
use sluice::config::ConfigError;

impl Validator {
    pub(super) fn sluice(
        &mut self,
        inline: Option<Table>,
        path: Option<&str>,
        scenario: &Path,
    ) -> Option<SluiceUnderTest> {
        let (table, source, prefix) = match (inline, path) {
            (Some(t), None) => (t, scenario.to_path_buf(), "sluice."),
            (None, Some(p)) => {
                let full = scenario.parent().unwrap_or(Path::new(".")).join(p);
                match parse::table_file(&full) {
                    Ok(t) => (t, full, ""),
                    Err(e) => {
                        self.errors.push(e);
                        return None;
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.error(
                    "sluice_config",
                    None,
                    "set either [sluice] (inline) or sluice_config (a path), not both",
                );
                return None;
            }
            (None, None) => {
                self.error("sluice", None, "missing; the sluice config to drill, inline as [sluice] or as sluice_config = \"path\"");
                return None;
            }
        };
        let file = parse::file_name(&source);
        let mut at = |key: &str, value: Option<String>, reason: String| {
            self.errors.push(ConfigError::at_key(
                &file,
                format!("{prefix}{key}"),
                value,
                reason,
            ));
        };
        if table.contains_key("admin") {
            at(
                "admin",
                None,
                "not allowed in a drill: the runner listens only on 127.0.0.1:0".into(),
            );
        }
        let routes: Vec<(&String, &Value)> = table
            .get("routes")
            .and_then(Value::as_table)
            .map(|t| t.iter().collect())
            .unwrap_or_default();
        let [(route, route_table)] = routes.as_slice() else {
            let names: Vec<&str> = routes.iter().map(|(n, _)| n.as_str()).collect();
            at(
                "routes",
                None,
                format!(
                    "a drill needs exactly one route (found {}: {})",
                    names.len(),
                    names.join(", ")
                ),
            );
            return None;
        };
        let Some(pool) = route_table.get("pool").and_then(Value::as_str) else {
            at(
                &format!("routes.{route}.pool"),
                None,
                "missing; the pool the drill's members fill".into(),
            );
            return None;
        };
        let pools: Vec<&String> = table
            .get("pools")
            .and_then(Value::as_table)
            .map(|t| t.keys().collect())
            .unwrap_or_default();
        if pools.as_slice() != [pool] {
            let names: Vec<&str> = pools.iter().map(|n| n.as_str()).collect();
            at(
                "pools",
                None,
                format!(
                    "a drill needs exactly one pool, the route's {pool:?} (found: {})",
                    names.join(", ")
                ),
            );
            return None;
        }
        let seed = table
            .get("seed")
            .and_then(Value::as_integer)
            .and_then(|s| u64::try_from(s).ok());
        Some(SluiceUnderTest {
            route: route.to_string(),
            pool: pool.to_string(),
            table: table.clone(),
            inline: !prefix.is_empty(),
            source,
            seed,
        })
    }
}
