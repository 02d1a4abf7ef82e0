//! `[target]`: drill a sluice that is already running. The drill starts no sluice: it creates
//! each member's proxy on the address the running sluice's pool lists (`members[].proxy`),
//! drives traffic at `listen` and reads member and breaker states from `admin`'s `/status`.

use std::net::SocketAddr;
use std::path::Path;

use super::{Validator, quote};
use crate::scenario::{Bounds, MemberSpec, Target};
use crate::schema::{MemberFile, TargetFile};

impl Validator {
    pub(super) fn target(&mut self, t: &TargetFile, scenario: &Path) -> Option<Target> {
        for (key, set) in [
            ("target.listen", t.listen.is_some()),
            ("target.admin", t.admin.is_some()),
        ] {
            if !set {
                self.error(
                    key,
                    None,
                    "missing: [target] needs the route's listen address and the admin API's",
                );
            }
        }
        let listen = self.loopback(
            "target.listen",
            t.listen.as_deref(),
            "the route under drill",
        );
        let admin = self.loopback("target.admin", t.admin.as_deref(), "its admin API");
        let access_log = t
            .access_log
            .as_ref()
            .map(|p| scenario.parent().unwrap_or(Path::new(".")).join(p));
        if let Some(path) = &access_log
            && let Err(e) = std::fs::File::open(path)
        {
            self.error(
                "target.access_log",
                Some(quote(&path.display().to_string())),
                format!("cannot read it: {e}"),
            );
        }
        Some(Target {
            listen: listen?,
            admin: admin?,
            pool: t.pool.clone(),
            access_log,
        })
    }

    /// Which member served a command run comes only from an access log; a running sluice's
    /// is its file.
    pub(super) fn target_can_measure(&mut self, target: &Target, command: bool, bounds: &Bounds) {
        for (key, bound) in [
            ("ejected_within", &bounds.ejected_within),
            ("returns_within", &bounds.returns_within),
            ("backup_serves_within", &bounds.backup_serves_within),
        ] {
            if bound.as_ref().is_some_and(|b| b.explained) {
                self.error(
                    format!("bounds.{key}"),
                    Some("\"explain\"".into()),
                    "not with [target]: the drill does not have the running sluice's config; \
                     write the number `sluice check --explain --config FILE` prints for it",
                );
            }
        }
        if target.access_log.is_some() || !command {
            return;
        }
        for (key, set) in [
            (
                "backup_serves_within",
                bounds.backup_serves_within.is_some(),
            ),
            ("returns_within", bounds.returns_within.is_some()),
        ] {
            if set {
                self.error(
                    format!("bounds.{key}"),
                    None,
                    "needs target.access_log with command traffic: which member served each run \
                     comes from the running sluice's access log (run it with --log-format json \
                     and access_log = \"FILE\")",
                );
            }
        }
    }

    pub(super) fn no_sluice_with_target(&mut self, inline: bool, file: bool) {
        for (key, set) in [("sluice", inline), ("sluice_config", file)] {
            if set {
                self.error(
                    key,
                    None,
                    "not with [target]: the running sluice is drilled with the config it has",
                );
            }
        }
    }

    pub(super) fn proxy_addr(&mut self, i: usize, m: &MemberFile) -> Option<SocketAddr> {
        let key = format!("members[{i}].proxy");
        self.loopback(&key, m.proxy.as_deref(), "")
    }

    /// With `[target]` every member needs its proxy address, free now; without, none may set one.
    pub(super) fn proxies(&mut self, members: &[MemberSpec], target: bool) {
        for (i, m) in members.iter().enumerate() {
            let key = format!("members[{i}].proxy");
            match (target, m.proxy) {
                (true, None) => self.error(
                    key,
                    None,
                    "missing: with [target], the address this member's fault proxy listens on, \
                     as the running sluice's pool lists it",
                ),
                (false, Some(addr)) => self.error(
                    key,
                    Some(quote(&addr.to_string())),
                    "only with [target]: a drill's own sluice dials proxies on ports it picks",
                ),
                (true, Some(addr)) => {
                    if let Err(e) = std::net::TcpListener::bind(addr) {
                        self.error(
                            key,
                            Some(quote(&addr.to_string())),
                            format!("cannot listen there: {e}"),
                        );
                    }
                }
                (false, None) => {}
            }
        }
    }

    fn loopback(&mut self, key: &str, value: Option<&str>, what: &str) -> Option<SocketAddr> {
        let value = value?;
        match value.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => Some(a),
            Ok(_) => {
                self.error(
                    key,
                    Some(quote(value)),
                    "must be a loopback address: drills talk only to 127.0.0.0/8 or ::1",
                );
                None
            }
            Err(_) => {
                let what = if what.is_empty() {
                    String::new()
                } else {
                    format!(" ({what})")
                };
                self.error(key, Some(quote(value)), format!("expected ip:port{what}"));
                None
            }
        }
    }
}
