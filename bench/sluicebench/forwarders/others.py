"""The forwarders sluice is compared with: HAProxy, nginx (stream module), socat and the naive
tokio forwarder (examples/naive_forward.rs)."""

from __future__ import annotations

from pathlib import Path

from .. import procs
from ..upstreams import NGINX_STREAM_MODULE
from .base import IDLE_TIMEOUT, Forwarder, Setup

# === HAProxy ===


class HAProxy(Forwarder):
    health_probes = True

    def __init__(self, splice: bool):
        self.splice = splice
        self.id = "haproxy-splice" if splice else "haproxy"
        self.label = "HAProxy (splice-auto)" if splice else "HAProxy"
        self.settings = ("mode tcp, " + ("option splice-auto" if splice else "no splice")
                         + ", nbthread default (one per core), no log")
        if splice:
            self.health_probes = False  # the health-cost figure runs plain HAProxy once

    def write_config(self, setup: Setup, workdir: Path) -> tuple[list[str], str]:
        check = f" check inter {setup.health_interval}" if setup.health_interval else ""
        servers = "\n".join(f"    server s{i} 127.0.0.1:{u}{check}"
                            for i, u in enumerate(setup.upstreams))
        maxconn = setup.max_conns + 100
        pipes = ""
        if self.splice:
            # Each pipe holds two fds (default maxpipes = maxconn / 4) and HAProxy will not start
            # if they do not fit the fd limit. Idle connections hold no pipe, so the idle test's
            # large maxconn gets only the pipes that fit.
            room = (procs.nofile_hard_limit() - 2 * maxconn - 200) // 2
            if room < maxconn // 4:
                pipes = f"\n    maxpipes {max(16, room)}"
        text = f"""# sluicebench: HAProxy (generated)
global
    maxconn {maxconn}{pipes}
defaults
    mode tcp
    timeout connect 5s
    timeout client {IDLE_TIMEOUT}
    timeout server {IDLE_TIMEOUT}
{"    option splice-auto" if self.splice else "    # no splice"}
frontend bench
    bind 127.0.0.1:{setup.listen_port} backlog 1024
    default_backend up
backend up
    balance roundrobin
{servers}
"""
        path = workdir / "haproxy.cfg"
        path.write_text(text)
        return ["haproxy", "-db", "-f", str(path)], text

    def check(self, argv: list[str], workdir: Path) -> None:
        procs.run(["haproxy", "-c", "-q", "-f", argv[-1]], timeout=20, log_dir=workdir,
                  name="haproxy-check")


# === nginx stream ===


class NginxStream(Forwarder):
    def __init__(self, workers: str):
        self.workers = workers
        self.id = f"nginx-{workers}"
        self.label = f"nginx stream (workers {workers})"
        self.settings = (f"stream module, worker_processes {workers}, proxy_timeout {IDLE_TIMEOUT}, "
                         "no access log")

    def write_config(self, setup: Setup, workdir: Path) -> tuple[list[str], str]:
        nofile = procs.nofile_hard_limit()
        text = f"""# sluicebench: nginx stream (generated)
load_module {NGINX_STREAM_MODULE};
daemon off;
master_process on;
worker_processes {self.workers};
worker_rlimit_nofile {nofile};
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections {max(4096, nofile - 100)}; }}
stream {{
    server {{
        listen 127.0.0.1:{setup.listen_port} backlog=1024;
        proxy_pass 127.0.0.1:{setup.upstreams[0]};
        proxy_connect_timeout 5s;
        proxy_timeout {IDLE_TIMEOUT};
        tcp_nodelay on;
    }}
}}
"""
        path = workdir / "nginx.conf"
        path.write_text(text)
        return ["nginx", "-p", f"{workdir}/", "-c", str(path), "-e", f"{workdir}/error.log"], text

    def check(self, argv: list[str], workdir: Path) -> None:
        procs.run(argv + ["-t", "-q"], timeout=20, log_dir=workdir, name="nginx-check")


# === socat ===


class Socat(Forwarder):
    id = "socat"
    label = "socat"
    settings = ("TCP-LISTEN:port,fork,reuseaddr,backlog=1024 (+bind=127.0.0.1, nodelay); "
                "one process per connection")

    def write_config(self, setup: Setup, workdir: Path) -> tuple[list[str], str]:
        argv = ["socat",
                f"TCP-LISTEN:{setup.listen_port},bind=127.0.0.1,fork,reuseaddr,backlog=1024,nodelay",
                f"TCP:127.0.0.1:{setup.upstreams[0]},nodelay"]
        return argv, ""


# === naive tokio forwarder ===


class Naive(Forwarder):
    id = "naive"
    label = "naive tokio (copy_bidirectional)"
    settings = "examples/naive_forward.rs: accept, connect, copy_bidirectional; tokio default runtime"

    def __init__(self, binary: Path):
        self.binary = binary

    def available(self) -> str | None:
        return None if self.binary.exists() else f"{self.binary} not built"

    def write_config(self, setup: Setup, workdir: Path) -> tuple[list[str], str]:
        return [str(self.binary), f"127.0.0.1:{setup.listen_port}",
                f"127.0.0.1:{setup.upstreams[0]}"], ""
