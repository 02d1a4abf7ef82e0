"""The measurements. Each function runs one forwarder through one scenario and records its
figures into :class:`Results`; a failure is recorded as a note for that forwarder and figure and
the run goes on.

- :func:`smoke`       one echo through the forwarder before anything is measured
- :func:`throughput`  iperf3, 1 and 8 streams: Gbit/s, and the forwarder's CPU s/GB (figures 1, 5)
- :func:`http`        wrk with ``Connection: close`` (conn/s, p99) and keep-alive (p50, p99) (2, 3)
- :func:`idle`        RSS (and PSS) per idle connection, fresh forwarder per run (4)
- :func:`health`      CPU% of the forwarder probing 1,000 members every second, else idle (6)
"""

from __future__ import annotations

import json
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .forwarders import Direct, Forwarder, Running, Setup, Socat
from .helpers import PAYLOAD
from .upstreams import HTTP_PATH, HoldServer, IperfServer, Listeners, NginxHttp, helper_argv, helper_env

WRK_LUA = Path(__file__).with_name("wrk_report.lua")
# File descriptors a forwarder needs beyond two per relayed connection (listeners, epoll, logs).
FD_SLACK = 256


@dataclass
class Params:
    """Run parameters; :data:`FULL` and :data:`QUICK` are the two presets."""

    rounds: int
    iperf_seconds: int
    wrk_seconds: int
    wrk_close_conns: int
    wrk_ka_conns: int
    idle_levels: list[int]
    # socat forks one process per connection; above this many the idle test is not run for it.
    socat_idle_max: int
    health_members: int
    health_interval: str
    health_warmup_seconds: float
    health_seconds: float


FULL = Params(rounds=3, iperf_seconds=10, wrk_seconds=10, wrk_close_conns=32, wrk_ka_conns=4,
              idle_levels=[5000, 20000], socat_idle_max=5000, health_members=1000,
              health_interval="1s", health_warmup_seconds=5, health_seconds=30)
QUICK = Params(rounds=2, iperf_seconds=2, wrk_seconds=2, wrk_close_conns=32, wrk_ka_conns=4,
               idle_levels=[1000, 2000], socat_idle_max=2000, health_members=1000,
               health_interval="1s", health_warmup_seconds=3, health_seconds=5)


@dataclass
class Results:
    """Values per metric and forwarder (one per round), notes (why a value is missing or odd),
    extras (wrk error counts, observed probe rates) and the exact commands used."""

    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    extra: dict[str, dict[str, list]] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)

    def add(self, metric: str, fw: str, value: float) -> None:
        self.samples.setdefault(metric, {}).setdefault(fw, []).append(value)

    def note(self, metric: str, fw: str, text: str) -> None:
        notes = self.notes.setdefault(metric, {}).setdefault(fw, [])
        if text not in notes:
            notes.append(text)

    def add_extra(self, metric: str, fw: str, value) -> None:
        self.extra.setdefault(metric, {}).setdefault(fw, []).append(value)

    def command(self, key: str, argv: list[str]) -> None:
        """Records the first command line seen for ``key`` (ports vary, the shape does not)."""
        self.commands.setdefault(key, shlex.join(argv))


@dataclass
class Context:
    """What every scenario needs: parameters, results, a work dir, the long-lived upstreams."""

    params: Params
    results: Results
    workdir: Path
    iperf: IperfServer
    nginx: NginxHttp

    def dir(self, *parts) -> Path:
        """A fresh directory for one forwarder instance (configs, logs)."""
        d = self.workdir.joinpath(*map(str, parts))
        d.mkdir(parents=True, exist_ok=True)
        return d


def _start(ctx: Context, fw: Forwarder, setup: Setup, *parts) -> Running:
    running = fw.start(setup, ctx.dir(*parts))
    if running.proc is not None:
        ctx.results.command(f"fw:{fw.id}", running.argv)
        if running.config:
            ctx.results.configs.setdefault(fw.id, running.config)
    return running


def _process_count(running: Running) -> int:
    return len(procs.tree_pids(running.proc.pid)) if running.proc else 0


def _wait_children_gone(running: Running, baseline: int, timeout: float = 5.0) -> None:
    """Waits until a fork-per-connection forwarder is back to ``baseline`` processes, so its
    children's CPU is in the parent's cutime/cstime."""
    if running.proc is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _process_count(running) > baseline:
        time.sleep(0.05)


# === smoke ===


def _panic_message(proc: procs.Proc) -> str:
    """A Rust panic's location and message from the log (the backtrace is left out), else the
    log's last line."""
    lines = proc.log_tail(200, reasons_first=False).splitlines()
    for i, line in enumerate(lines):
        if "panicked at" in line:
            return " ".join(lines[i:i + 2])[:300]
    return lines[-1][:300] if lines else ""


def smoke(ctx: Context, fw: Forwarder) -> str | None:
    """One 16-byte echo through the forwarder. None if it worked, else why not."""
    hold = HoldServer(ctx.dir("smoke", fw.id), max_seconds=60)
    hold.start()
    running = None
    try:
        try:
            running = _start(ctx, fw, Setup(procs.free_port(), [hold.port]), "smoke", fw.id)
        except Exception as e:  # noqa: BLE001
            return f"did not start: {e}"
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as s:
            s.sendall(PAYLOAD)
            got = b""
            while len(got) < len(PAYLOAD):
                chunk = s.recv(64)
                if not chunk:
                    break
                got += chunk
        if got != PAYLOAD:
            why = _panic_message(running.proc) if running.proc else ""
            return f"echo through it returned {got!r}, expected {PAYLOAD!r}; it logged: {why}"
        return None
    except Exception as e:  # noqa: BLE001 - any failure means: skip this forwarder
        why = _panic_message(running.proc) if running and running.proc else ""
        return f"no echo through it ({e})" + (f"; it logged: {why}" if why else "")
    finally:
        if running:
            fw.stop(running)
        hold.stop()


# === throughput and CPU per GB ===


def _iperf(ctx: Context, port: int, streams: int) -> dict:
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(ctx.params.iperf_seconds),
            "-P", str(streams), "-J", "--connect-timeout", "3000"]
    ctx.results.command(f"iperf3 -P {streams}", argv)
    for attempt in range(5):
        try:
            out = procs.run(argv, timeout=ctx.params.iperf_seconds + 30, name="iperf3-client")
            return json.loads(out)
        except RuntimeError as e:
            # The server takes a moment to reset between tests.
            if "busy" in str(e) and attempt < 4:
                time.sleep(1)
                continue
            raise
    raise AssertionError("unreachable")


def throughput(ctx: Context, fw: Forwarder, rnd: int) -> None:
    """iperf3 client -> forwarder -> iperf3 server, 1 then 8 streams. Records ``tput_N`` in
    Gbit/s (received) and ``cpu_gb_N``, the forwarder's user+system CPU seconds per GB received."""
    r = ctx.results
    try:
        running = _start(ctx, fw, Setup(procs.free_port(), [ctx.iperf.port]), "tput", fw.id, rnd)
    except Exception as e:  # noqa: BLE001
        for n in (1, 8):
            r.note(f"tput_{n}", fw.id, f"failed to start: {e}")
        return
    try:
        for n in (1, 8):
            try:
                nprocs = _process_count(running)
                cpu0 = procs.cpu_seconds(running.proc.pid) if running.proc else 0.0
                data = _iperf(ctx, running.port, n)
                _wait_children_gone(running, nprocs)
                cpu1 = procs.cpu_seconds(running.proc.pid) if running.proc else 0.0
                recv = data["end"]["sum_received"]
                r.add(f"tput_{n}", fw.id, recv["bits_per_second"] / 1e9)
                if running.proc is None:
                    r.note(f"cpu_gb_{n}", fw.id, "n/a: no forwarder process")
                elif recv["bytes"] > 0:
                    r.add(f"cpu_gb_{n}", fw.id, (cpu1 - cpu0) / (recv["bytes"] / 1e9))
            except Exception as e:  # noqa: BLE001
                r.note(f"tput_{n}", fw.id, f"failed: {str(e)[:300]}")
                r.note(f"cpu_gb_{n}", fw.id, "failed with the throughput run")
            time.sleep(0.5)
    finally:
        fw.stop(running)


# === HTTP: connection rate and latency ===


def _wrk(ctx: Context, port: int, conns: int, close: bool, seconds: int, key: str | None) -> dict:
    argv = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds}s", "--timeout", "5s",
            "-s", str(WRK_LUA)]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}{HTTP_PATH}")
    if key:
        ctx.results.command(key, argv)
    out = procs.run(argv, timeout=seconds + 30, name="wrk")
    for line in out.splitlines():
        if line.startswith("JSON "):
            return json.loads(line[5:])
    raise RuntimeError(f"no JSON line in wrk output:\n{out[-500:]}")


def _wrk_errors(res: dict) -> int:
    return sum(res["errors"].values())


def http(ctx: Context, fw: Forwarder, rnd: int) -> None:
    """wrk -> forwarder -> nginx (1 KiB file). ``Connection: close`` with
    ``wrk_close_conns`` connections gives ``conn_rate`` and ``close_p99``; keep-alive with
    ``wrk_ka_conns`` gives ``ka_p50`` and ``ka_p99``. wrk is closed-loop, so these are latencies
    at saturation, not at a fixed rate."""
    r, p = ctx.results, ctx.params
    try:
        running = _start(ctx, fw, Setup(procs.free_port(), [ctx.nginx.port]), "http", fw.id, rnd)
    except Exception as e:  # noqa: BLE001
        for m in ("conn_rate", "close_p99", "ka_p50", "ka_p99"):
            r.note(m, fw.id, f"failed to start: {e}")
        return
    try:
        nprocs = _process_count(running)
        _wrk(ctx, running.port, 2, False, 1, None)  # warm-up
        try:
            res = _wrk(ctx, running.port, p.wrk_close_conns, True, p.wrk_seconds, "wrk close")
            r.add("conn_rate", fw.id, res["requests"] / (res["duration_us"] / 1e6))
            r.add("close_p99", fw.id, res["p99_us"] / 1e3)
            r.add_extra("conn_rate", fw.id, res["errors"])
            if _wrk_errors(res):
                r.note("conn_rate", fw.id, "wrk reported errors (see extra)")
        except Exception as e:  # noqa: BLE001
            r.note("conn_rate", fw.id, f"failed: {str(e)[:300]}")
        _wait_children_gone(running, nprocs)
        try:
            res = _wrk(ctx, running.port, p.wrk_ka_conns, False, p.wrk_seconds, "wrk keep-alive")
            r.add("ka_p50", fw.id, res["p50_us"] / 1e3)
            r.add("ka_p99", fw.id, res["p99_us"] / 1e3)
            r.add_extra("ka_p50", fw.id, res["errors"])
            if _wrk_errors(res):
                r.note("ka_p50", fw.id, "wrk reported errors (see extra)")
        except Exception as e:  # noqa: BLE001
            r.note("ka_p50", fw.id, f"failed: {str(e)[:300]}")
    finally:
        fw.stop(running)


# === idle connections: memory ===


def idle_substitute_level(params: Params) -> int | None:
    """The largest level (a multiple of 500) a single forwarder process can hold under the hard
    RLIMIT_NOFILE, if some requested level cannot; else None."""
    hard = procs.nofile_hard_limit()
    if all(2 * n + FD_SLACK <= hard for n in params.idle_levels):
        return None
    sub = (hard - FD_SLACK) // 2 // 500 * 500
    return sub if sub not in params.idle_levels and sub > 0 else None


def idle_skip_reason(fw: Forwarder, n: int, params: Params) -> str | None:
    """Why ``fw`` cannot hold ``n`` idle connections here, or None."""
    if isinstance(fw, Direct):
        return "n/a: no forwarder process"
    hard = procs.nofile_hard_limit()
    if 2 * n + FD_SLACK > hard:
        return (f"n/a: a forwarder needs ~{2 * n + FD_SLACK:,} file descriptors for {n:,} relayed "
                f"connections; the hard RLIMIT_NOFILE here is {hard:,} and raising it needs "
                f"CAP_SYS_RESOURCE, which this machine does not grant")
    if isinstance(fw, Socat) and n > params.socat_idle_max:
        return (f"n/a: socat forks one process per connection ({n:,} processes); "
                f"not run above {params.socat_idle_max:,}")
    return None


def _read_client_result(client: procs.Proc, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in client.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                return json.loads(line)
        if not client.alive():
            raise RuntimeError(f"hold-client exited: {client.log_tail()}")
        time.sleep(0.1)
    raise RuntimeError(f"hold-client: no result after {timeout:.0f}s")


def idle(ctx: Context, fw: Forwarder, n: int, rnd: int) -> None:
    """A fresh forwarder; ``n`` connections through it, each carrying one 16-byte echo, then
    held idle. Records (RSS after − RSS before) / n as ``idle_rss_N`` and the same for PSS, summed
    over the forwarder's processes (nginx workers, socat children)."""
    r = ctx.results
    reason = idle_skip_reason(fw, n, ctx.params)
    if reason:
        r.note(f"idle_rss_{n}", fw.id, reason)
        r.note(f"idle_pss_{n}", fw.id, reason)
        return
    d = ctx.dir("idle", fw.id, n, rnd)
    hold = HoldServer(d, max_seconds=600)
    hold.start()
    running, client = None, None
    try:
        running = _start(ctx, fw, Setup(procs.free_port(), [hold.port], max_conns=n), "idle", fw.id, n, rnd)
        time.sleep(0.5)
        rss0, pss0, _ = procs.memory_kib(running.proc.pid)
        argv = helper_argv("hold-client", "--port", str(running.port), "--count", str(n),
                           "--max-seconds", "300")
        ctx.results.command("idle client", argv)
        client = procs.start(f"hold-client-{n}", argv, d, stdin_pipe=True, env=helper_env())
        res = _read_client_result(client, timeout=60 + n / 100)
        if res.get("error") or res["opened"] != n:
            raise RuntimeError(f"opened {res['opened']} of {n}: {res.get('error')}")
        time.sleep(1.0)  # let lazily freed buffers and allocator caches settle
        rss1, pss1, nprocs = procs.memory_kib(running.proc.pid)
        r.add(f"idle_rss_{n}", fw.id, (rss1 - rss0) / n)
        r.add(f"idle_pss_{n}", fw.id, (pss1 - pss0) / n)
        r.add_extra(f"idle_rss_{n}", fw.id, {"rss_before_kib": rss0, "rss_after_kib": rss1,
                                             "processes": nprocs, "open_seconds": res["seconds"]})
    except Exception as e:  # noqa: BLE001
        r.note(f"idle_rss_{n}", fw.id, f"failed: {str(e)[:300]}")
        r.note(f"idle_pss_{n}", fw.id, f"failed: {str(e)[:300]}")
    finally:
        if client is not None:
            try:
                client.popen.stdin.write(b"close\n")
                client.popen.stdin.close()
                client.popen.wait(60)
            except Exception:  # noqa: BLE001 - stop() below takes over
                pass
            procs.stop(client)
        if running is not None:
            fw.stop(running)
        hold.stop()


# === health checking cost ===


def health(ctx: Context, fw: Forwarder, rnd: int) -> None:
    """The forwarder with ``health_members`` members (accept-and-close listeners, all on
    127.0.0.1), each probed every ``health_interval``, no traffic. Records ``health_cpu``: CPU
    seconds over the window / window length × 100 (100 = one core), after a warm-up."""
    r, p = ctx.results, ctx.params
    d = ctx.dir("health", fw.id, rnd)
    targets = Listeners(d, p.health_members, max_seconds=p.health_warmup_seconds + p.health_seconds + 120)
    running = None
    try:
        targets.start()
        running = _start(ctx, fw, Setup(procs.free_port(), targets.ports,
                                        health_interval=p.health_interval), "health", fw.id, rnd)
        time.sleep(p.health_warmup_seconds)
        a0, o0 = targets.accepted(), procs.tcp_active_opens()
        cpu0, t0 = procs.cpu_seconds(running.proc.pid), time.monotonic()
        time.sleep(p.health_seconds)
        cpu1, t1 = procs.cpu_seconds(running.proc.pid), time.monotonic()
        a1, o1 = targets.accepted(), procs.tcp_active_opens()
        r.add("health_cpu", fw.id, (cpu1 - cpu0) / (t1 - t0) * 100)
        r.add_extra("health_cpu", fw.id, {
            "accepted_per_second": round((a1 - a0) / (t1 - t0), 1),
            "active_opens_per_second": round((o1 - o0) / (t1 - t0), 1)})
    except Exception as e:  # noqa: BLE001
        r.note("health_cpu", fw.id, f"failed: {str(e)[:300]}")
    finally:
        if running is not None:
            fw.stop(running)
        targets.stop()
