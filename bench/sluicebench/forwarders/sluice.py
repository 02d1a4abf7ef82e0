"""sluice under test: its config, built from :data:`SLUICE_PROFILES`, and its process.

A profile is a dict merged over a base config (one route, one pool), so a new config key is one
line here. Keys that only newer builds know sit in "optional" groups, each applied only when
``sluice check`` accepts it with the binary being measured; the report names any group left out.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from .. import procs
from .base import IDLE_TIMEOUT, Forwarder, Setup


def _bare(group_name: str, group: dict, **extra) -> dict:
    """The relay alone (no probes, every member counts as up, no retry, no breaker, no limits)
    plus one optional group of its own."""
    return {
        "top": {},
        "route": {},
        "pool": {},
        "health": {"enabled": False},
        "env": {"RUST_LOG": "warn"},
        "optional": {
            "retry and breaker off": {
                "route": {"retry": {"attempts": 1}},
                "pool": {"breaker": {"enabled": False}},
            },
            group_name: group,
        },
        **extra,
    }


# sluice profiles, merged over the base config built in `sluice_config`: "top" goes to the top
# level, "route" into [routes.bench], "pool" into [pools.up], "health" into [pools.up.health];
# "env" is the process environment.
#
# "optional" groups use keys that not every sluice build knows (the connect stack landed after
# the relay). Each group is applied only if `sluice check` accepts it with this binary; a group
# left out is named in the report. Add new keys (and new groups) here.
SLUICE_PROFILES: dict[str, dict] = {
    # The relay alone, default relay mode.
    "bare": _bare("relay", {"route": {"relay": "auto"}}),
    # bare with the user-space copy relay instead of splice: sluice's counterpart of HAProxy
    # without splice. "require": a build that rejects these groups is skipped, not mislabelled.
    "copy": _bare("relay", {"route": {"relay": "copy"}}, require=["relay"]),
    # bare with `reuse_port = false`: one listening socket that every worker accepts on, instead
    # of one SO_REUSEPORT socket per worker (the default), so the report shows why that default.
    # Only the throughput and connection-rate scenarios: idle memory and health checking do not
    # depend on how connections are accepted.
    "onesocket": _bare("one socket", {"top": {"reuse_port": False}}, require=["one socket"],
                       scenarios=["throughput", "http"]),
    # What an operator runs: every layer on, none of them triggering. Health checks every 2 s,
    # retry and breaker at their defaults, connection caps and rate limits far above what a
    # benchmark reaches (so their bookkeeping is paid, never their rejections).
    "full": {
        "top": {},
        "route": {},
        "pool": {},
        "health": {"enabled": True, "interval": "2s", "timeout": "1s", "rise": 2, "fall": 3},
        # Per-connection "connection closed" lines are info; the other forwarders keep no access
        # log either, so the comparison leaves them off. Set "info" to measure their cost.
        "env": {"RUST_LOG": "warn"},
        "optional": {
            "retry and breaker": {
                "route": {"retry": {"attempts": 3, "min_backoff": "25ms", "max_backoff": "1s",
                                    "budget": "5s"}},
                "pool": {"breaker": {"enabled": True, "consecutive_failures": 5,
                                     "open_for": "10s"}},
            },
            "limits": {
                "top": {"max_connections": 1_000_000},
                "route": {"max_connections": 1_000_000,
                          "rate_limit": {"per_second": 1_000_000},
                          "client_rate_limit": {"per_second": 1_000_000}},
            },
        },
    },
}
# full with the silent-member watch on (breaker.silent_after_request): the connection-rate run
# beside full shows what the watch costs; each HTTP client speaks first, so every connection
# arms it and nginx's answer ends it. Only the HTTP scenario: the watch does nothing else.
SLUICE_PROFILES["silent"] = copy.deepcopy(SLUICE_PROFILES["full"])
SLUICE_PROFILES["silent"]["optional"]["silent watch"] = {
    "pool": {"breaker": {"silent_after_request": "2s"}},
}
SLUICE_PROFILES["silent"]["require"] = ["silent watch"]
SLUICE_PROFILES["silent"]["scenarios"] = ["http"]


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def sluice_config(profile: str, setup: Setup, groups: list[str]) -> dict:
    """The sluice config for ``setup`` under ``profile`` (a key of :data:`SLUICE_PROFILES`) with
    the named optional ``groups`` applied."""
    p = SLUICE_PROFILES[profile]
    parts = {k: p[k] for k in ("top", "route", "pool", "health")}
    for g in groups:
        parts = _merge(parts, p["optional"][g])
    health = dict(parts["health"])
    if setup.health_interval is not None:
        health.update({"enabled": True, "interval": setup.health_interval,
                       "fast_interval": setup.health_interval})
    pool = _merge({"members": [{"addr": f"127.0.0.1:{u}"} for u in setup.upstreams]}, parts["pool"])
    pool["health"] = health
    route = _merge({"listen": f"127.0.0.1:{setup.listen_port}", "pool": "up",
                    "idle_timeout": IDLE_TIMEOUT, "backlog": 1024}, parts["route"])
    return _merge({"shutdown_grace": "1s"}, parts["top"]) | \
        {"routes": {"bench": route}, "pools": {"up": pool}}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v):
            return "[\n" + "".join(f"  {_toml_value(x)},\n" for x in v) + "]"
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def to_toml(doc: dict, prefix: str = "") -> str:
    """A small TOML writer for the shapes sluice configs use: scalars, arrays, inline tables in
    arrays, nested tables."""
    lines, tables = [], []
    for k, v in doc.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{prefix}.{k}" if prefix else k
        scalars = {a: b for a, b in v.items() if not isinstance(b, dict)}
        if scalars or not v:
            out += f"\n[{name}]\n" + to_toml(scalars, name)
        out += to_toml({a: b for a, b in v.items() if isinstance(b, dict)}, name)
    return out


class Sluice(Forwarder):
    """sluice under one of :data:`SLUICE_PROFILES`. Which optional key groups this binary
    accepts is found once, with ``sluice check``, on the first start."""

    def __init__(self, binary: Path, profile: str):
        self.binary = binary
        self.profile = profile
        self.id = f"sluice-{profile}"
        self.label = f"sluice ({profile})"
        self.health_probes = SLUICE_PROFILES[profile]["health"].get("enabled", True)
        if "scenarios" in SLUICE_PROFILES[profile]:
            self.scenarios = set(SLUICE_PROFILES[profile]["scenarios"])
        self.groups: list[str] | None = None  # optional groups this binary accepts
        self.dropped: dict[str, str] = {}     # optional groups it rejects, with the reason

    @property
    def settings(self) -> str:
        p = SLUICE_PROFILES[self.profile]
        h = p["health"]
        parts = ["health checks off" if not h.get("enabled", True)
                 else f"health checks every {h.get('interval', '2s')}"]
        parts += [f"{g}: {_describe(p['optional'][g])}" for g in (self.groups or [])]
        parts += [f"{g}: left out, this sluice build rejects the keys ({why})"
                  for g, why in self.dropped.items()]
        parts.append(f"RUST_LOG={p['env'].get('RUST_LOG', 'info')}")
        parts.append("one event loop per worker thread, one worker per core (default)")
        return "; ".join(parts)

    def available(self) -> str | None:
        return None if self.binary.exists() else f"{self.binary} not built"

    def _check(self, path: Path, workdir: Path) -> None:
        procs.run([str(self.binary), "check", "--config", str(path)], timeout=20,
                  log_dir=workdir, name="sluice-check")

    def _probe_groups(self, setup: Setup, workdir: Path) -> None:
        """Keeps the optional groups this binary's ``sluice check`` accepts."""
        self.groups = []
        for g in SLUICE_PROFILES[self.profile]["optional"]:
            path = workdir / f"sluice-probe-{g.replace(' ', '-')}.toml"
            path.write_text(to_toml(sluice_config(self.profile, setup, [g])))
            try:
                self._check(path, workdir)
                self.groups.append(g)
            except RuntimeError as e:
                unknown = re.findall(r"([\w.\[\]]+) = [^\n]*?: unknown key", str(e))
                self.dropped[g] = ("unknown " + ", ".join(dict.fromkeys(unknown)) if unknown
                                   else str(e).splitlines()[-1][:160])
        for g in SLUICE_PROFILES[self.profile].get("require", []):
            if g in self.dropped:
                raise RuntimeError(f"this sluice build rejects the {g!r} keys the {self.profile!r} "
                                   f"profile needs ({self.dropped[g]})")

    def write_config(self, setup: Setup, workdir: Path) -> tuple[list[str], str]:
        if self.groups is None:
            self._probe_groups(setup, workdir)
        text = f"# sluicebench: sluice profile {self.profile} (generated)\n" + \
            to_toml(sluice_config(self.profile, setup, self.groups))
        path = workdir / "sluice.toml"
        path.write_text(text)
        return [str(self.binary), "run", "--config", str(path)], text

    def check(self, argv: list[str], workdir: Path) -> None:
        self._check(Path(argv[-1]), workdir)

    def env(self) -> dict[str, str] | None:
        return SLUICE_PROFILES[self.profile]["env"]


def _describe(group: dict) -> str:
    """``{"route": {"retry": {"attempts": 1}}}`` -> ``route.retry.attempts=1`` (for the report)."""
    out = []

    def walk(prefix: str, d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                out.append(f"{prefix}{k}={v}")

    prefixes = {"top": "", "route": "route.", "pool": "pool.", "health": "health."}
    for section, values in group.items():
        walk(prefixes[section], values)
    return ", ".join(out)
