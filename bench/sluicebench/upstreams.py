"""The servers behind the forwarders. Each binds 127.0.0.1 only and is stopped by PID.

- :class:`IperfServer`  ``iperf3 -s``, for throughput and CPU per GB
- :class:`NginxHttp`    nginx serving one small static file, for connection rate and latency
- :class:`HoldServer`   the idle test's upstream (``helpers hold-server``)
- :class:`Listeners`    N accept-and-close listeners, the health-check targets
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import procs

NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
HTTP_FILE_BYTES = 1024
HTTP_PATH = "/small.bin"


def helper_argv(*args: str) -> list[str]:
    """Command line for a ``sluicebench.helpers`` subcommand, run by this same interpreter."""
    return [sys.executable, "-m", "sluicebench.helpers", *args]


def helper_env() -> dict[str, str]:
    """Environment that lets a helper import this package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return env


class IperfServer:
    """``iperf3 -s`` on 127.0.0.1; one server runs the whole benchmark (it serves tests in turn)."""

    def __init__(self, workdir: Path):
        self.port = procs.free_port()
        self.workdir = workdir
        self.proc: procs.Proc | None = None

    def start(self) -> None:
        """Starts the server and waits until it listens."""
        self.proc = procs.start("iperf3-server",
                                ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.port)],
                                self.workdir)
        procs.wait_listening(self.port, self.proc)

    def stop(self) -> None:
        """Stops the server by PID."""
        if self.proc:
            procs.stop(self.proc)


class NginxHttp:
    """nginx (http module) serving a 1 KiB static file on 127.0.0.1, one worker, no access log.

    Keep-alive requests per connection are unlimited so the keep-alive latency test never
    reconnects.
    """

    def __init__(self, workdir: Path):
        self.port = procs.free_port()
        self.dir = workdir / "nginx-http"
        self.proc: procs.Proc | None = None

    def config(self) -> str:
        """The nginx.conf text."""
        d = self.dir
        return f"""# nginx HTTP upstream for sluicebench (generated)
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{self.port} backlog=1024;
        root {d}/www;
    }}
}}
"""

    def start(self) -> None:
        """Writes config and file, checks the config (``nginx -t``), starts and waits."""
        (self.dir / "www").mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        (self.dir / "www" / HTTP_PATH.lstrip("/")).write_bytes(b"x" * HTTP_FILE_BYTES)
        # Workers run as nobody: the temp dirs mkdtemp made private must be readable.
        for p in [self.dir.parent, self.dir, self.dir / "www", self.dir / "www" / HTTP_PATH.lstrip("/")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config())
        argv = ["nginx", "-p", f"{self.dir}/", "-c", str(conf), "-e", f"{self.dir}/error.log"]
        procs.run(argv + ["-t", "-q"], timeout=20, log_dir=self.dir, name="nginx-http-check")
        self.proc = procs.start("nginx-http", argv, self.dir)
        procs.wait_listening(self.port, self.proc)

    def stop(self) -> None:
        """Stops master and worker by PID."""
        if self.proc:
            procs.stop(self.proc)


class HoldServer:
    """The idle test's upstream: accepts, echoes, holds. A fresh one per measurement."""

    def __init__(self, workdir: Path, max_seconds: float = 900):
        self.port = procs.free_port()
        self.workdir = workdir
        self.max_seconds = max_seconds
        self.proc: procs.Proc | None = None

    def start(self) -> None:
        """Starts it and waits until it listens."""
        self.proc = procs.start(
            f"hold-server-{self.port}",
            helper_argv("hold-server", "--port", str(self.port),
                        "--max-seconds", str(self.max_seconds)),
            self.workdir, env=helper_env())
        procs.wait_listening(self.port, self.proc)

    def stop(self) -> None:
        """Stops it by PID."""
        if self.proc:
            procs.stop(self.proc)


class Listeners:
    """``count`` accept-and-close listeners in one helper process (health-check targets)."""

    def __init__(self, workdir: Path, count: int, max_seconds: float = 900):
        self.workdir = workdir
        self.count = count
        self.max_seconds = max_seconds
        self.ports: list[int] = []
        self.status_file = workdir / f"listeners-{count}.status.json"
        self.proc: procs.Proc | None = None

    def start(self, timeout: float = 30) -> None:
        """Starts the helper and waits for its port list."""
        ports_file = self.workdir / f"listeners-{self.count}.ports.json"
        ports_file.unlink(missing_ok=True)
        self.status_file.unlink(missing_ok=True)
        self.proc = procs.start(
            f"listeners-{self.count}",
            helper_argv("listeners", "--count", str(self.count), "--ports-file", str(ports_file),
                        "--status-file", str(self.status_file),
                        "--max-seconds", str(self.max_seconds)),
            self.workdir, env=helper_env())
        deadline = time.monotonic() + timeout
        while not ports_file.exists():
            if not self.proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"listeners helper did not start:\n{self.proc.log_tail()}")
            time.sleep(0.05)
        self.ports = json.loads(ports_file.read_text())

    def accepted(self) -> int:
        """Connections accepted so far (the status file is rewritten once a second)."""
        try:
            return json.loads(self.status_file.read_text())["accepted"]
        except (OSError, ValueError, KeyError):
            return 0

    def stop(self) -> None:
        """Stops it by PID."""
        if self.proc:
            procs.stop(self.proc)

