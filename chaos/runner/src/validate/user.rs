//! The user's world in a scenario: members that are the user's upstreams (`addr`) or commands
//! the drill starts (`start`), the user's workload (`[traffic] command`), and the rules that
//! keep built-in checks away from bytes the drill did not write.

use std::net::SocketAddr;
use std::path::Path;

use super::{Validator, quote};
use crate::scenario::{Bounds, CommandTraffic, MemberSource, MemberSpec};
use crate::schema::{ActionKind, MemberFile, StepFile, TrafficFile};

impl Validator {
    /// `server`, `addr` or `start` (at most one) of `members[i]`.
    pub(super) fn member_source(&mut self, i: usize, m: &MemberFile) -> MemberSource {
        let at = |k: &str| format!("members[{i}].{k}");
        let set = [m.server.is_some(), m.addr.is_some(), m.start.is_some()];
        if set.iter().filter(|s| **s).count() > 1 {
            self.error(
                format!("members[{i}]"),
                Some(quote(&m.name)),
                "set one of server (built-in), addr (your running upstream) or start (a command)",
            );
            return MemberSource::Builtin;
        }
        if let Some(addr) = &m.addr {
            if addr.contains('{') {
                self.error(
                    at("addr"),
                    Some(quote(addr)),
                    "placeholders belong in `start`: addr names an upstream that already runs",
                );
                return MemberSource::Builtin;
            }
            return match addr.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => MemberSource::Addr(a),
                Ok(_) => {
                    self.error(
                        at("addr"),
                        Some(quote(addr)),
                        "must be a loopback address: drills talk only to 127.0.0.0/8 or ::1",
                    );
                    MemberSource::Builtin
                }
                Err(_) => {
                    self.error(
                        at("addr"),
                        Some(quote(addr)),
                        "expected ip:port, e.g. \"127.0.0.1:6379\"",
                    );
                    MemberSource::Builtin
                }
            };
        }
        if let Some(command) = &m.start {
            if !command.contains("{port}") {
                self.error(
                    at("start"),
                    Some(quote(command)),
                    "must contain {port}: the drill picks a free port, starts the command on it \
                     and waits until it accepts",
                );
            }
            self.command_exists(&at("start"), command);
            return MemberSource::Start(command.clone());
        }
        MemberSource::Builtin
    }

    /// `[traffic] command` and `every`, when set.
    pub(super) fn command_traffic(&mut self, t: &TrafficFile) -> Option<CommandTraffic> {
        let command = t.command.as_ref()?;
        self.command_exists("traffic.command", command);
        for (key, set) in [
            ("clients", t.clients.is_some()),
            ("rate", t.rate.is_some()),
            ("payload", t.payload.is_some()),
            ("payload_max", t.payload_max.is_some()),
            ("client_first", t.client_first.is_some()),
        ] {
            if set {
                self.error(
                    format!("traffic.{key}"),
                    None,
                    "belongs to the built-in clients; with `command`, `every` sets the pace",
                );
            }
        }
        let every = t.every.map(|d| d.0);
        if every.is_none() && t.timeout.is_some() {
            self.error(
                "traffic.timeout",
                None,
                "limits runs started by `every`; a single run is bounded by traffic.duration",
            );
        }
        if let Some(every) = every
            && !(std::time::Duration::from_millis(10)..=std::time::Duration::from_secs(60))
                .contains(&every)
        {
            self.error(
                "traffic.every",
                Some(super::human(every)),
                "must be between 10ms and 1m",
            );
        }
        Some(CommandTraffic {
            command: command.clone(),
            every,
        })
    }

    /// Rules across members, traffic, timeline and bounds.
    pub(super) fn user_rules(
        &mut self,
        members: &[MemberSpec],
        raw_steps: &[StepFile],
        command: Option<&CommandTraffic>,
        bounds: &Bounds,
    ) {
        let user_members: Vec<&MemberSpec> =
            members.iter().filter(|m| !m.source.is_builtin()).collect();
        if command.is_none()
            && let Some(m) = user_members.first()
        {
            self.error(
                "traffic.command",
                None,
                format!(
                    "member {} is not a built-in server, and the built-in clients speak only to \
                     those: set traffic.command to your workload",
                    quote(&m.name)
                ),
            );
        }
        if bounds.max_refused.is_some() && command.is_some() {
            self.error(
                "bounds.max_refused",
                None,
                "needs the built-in clients: a command's exit status cannot tell sluice \
                 refusing it from the member failing it",
            );
        }
        if bounds.all_bytes_intact && (command.is_some() || !user_members.is_empty()) {
            self.error(
                "bounds.all_bytes_intact",
                Some("true".into()),
                "needs the built-in clients and servers' checksums; not available with your \
                 own members or traffic",
            );
        }
        for (k, step) in raw_steps.iter().enumerate() {
            let Some(kind @ (ActionKind::Kill | ActionKind::Restart)) = step.action else {
                continue;
            };
            let names = step.member.iter().chain(step.members.iter().flatten());
            for name in names {
                if let Some(m) = members.iter().find(|m| &m.name == name)
                    && let MemberSource::Addr(addr) = m.source
                {
                    self.error(
                        format!("timeline[{k}].action"),
                        Some(quote(kind.as_str())),
                        format!(
                            "member {} is your upstream at {addr}, which the drill does not own: \
                             use disable/enable or toxics on its proxy, or a `start` member",
                            quote(name)
                        ),
                    );
                }
            }
        }
    }

    /// The program a shell command starts with is on PATH (or is a path that exists).
    fn command_exists(&mut self, key: &str, command: &str) {
        // `VAR=value` assignments and `exec` come before the program a shell starts.
        let mut words = command
            .split_whitespace()
            .skip_while(|w| w.contains('=') && !w.starts_with('='))
            .skip_while(|w| *w == "exec");
        let Some(program) = words.next() else {
            self.error(key, Some(quote(command)), "names no program");
            return;
        };
        const BUILTINS: [&str; 8] = ["true", "false", "echo", "test", "[", ":", "printf", "cd"];
        let found = if BUILTINS.contains(&program) {
            true
        } else if program.contains('/') {
            Path::new(program).is_file()
        } else {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            })
        };
        if !found {
            self.error(
                key,
                Some(quote(command)),
                format!("{program}: command not found on PATH"),
            );
        }
    }
}
