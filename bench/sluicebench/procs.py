"""Processes the harness starts, and what /proc says about them.

Every process is started through :func:`start`, which records it, and stopped through
:func:`stop`, by PID: SIGTERM, a bounded wait, then SIGKILL. Descendants (socat's children,
nginx's workers) are found through /proc and stopped by PID too, after checking their start time
so a recycled PID is never signalled. :func:`stop_all` runs on exit whatever happened, so a
failed or interrupted run leaves nothing behind.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """A process started by the harness."""

    name: str
    argv: list[str]
    popen: subprocess.Popen
    log_path: Path
    start_ticks: int = 0
    # Descendants seen while it ran, as (pid, start_ticks), so stop() can reach them.
    seen_children: set[tuple[int, int]] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15, reasons_first: bool = True) -> str:
        """The last lines of its combined stdout/stderr, for error messages. Lines that look
        like the reason (ALERT, emerg, error, panicked) come first, so a truncated note keeps
        them."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        tail = text.splitlines()[-lines:]
        if not reasons_first:
            return "\n".join(tail)
        keys = ("ALERT", "[emerg]", "error", "panicked")
        first = [ln for ln in tail if any(k in ln for k in keys)]
        return "\n".join(first + [ln for ln in tail if ln not in first])


_LIVE: dict[int, Proc] = {}


def _raise_nofile() -> None:
    """In the child: soft RLIMIT_NOFILE up to the hard limit (the idle test holds many sockets)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def nofile_hard_limit() -> int:
    """The hard RLIMIT_NOFILE every started process inherits."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def start(name: str, argv: list[str], log_dir: Path, *, stdin_pipe: bool = False,
          env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
    """Starts ``argv`` with output to ``log_dir/name.log`` and records it for :func:`stop_all`.

    The child gets its own session, so a Ctrl-C in the terminal reaches only the driver, which
    then stops everything in order.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")
    try:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_raise_nofile,
        )
    finally:
        log.close()
    proc = Proc(name, argv, popen, log_path)
    st = read_stat(proc.pid)
    proc.start_ticks = st.start_ticks if st else 0
    _LIVE[proc.pid] = proc
    return proc


def _signal_if_same(pid: int, start_ticks: int, sig: int) -> None:
    """Signals ``pid`` only if it is still the process that started at ``start_ticks``."""
    st = read_stat(pid)
    if st is None or st.start_ticks != start_ticks:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(proc: Proc, timeout: float = 10.0) -> int | None:
    """Stops ``proc`` and its descendants by PID; returns its exit status (None if it was killed
    and never reaped, which does not happen in practice)."""
    for pid in tree_pids(proc.pid)[1:]:
        st = read_stat(pid)
        if st:
            proc.seen_children.add((pid, st.start_ticks))
    if proc.alive():
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(5)
    # Children the root did not take down with it (socat's per-connection forks).
    deadline = time.monotonic() + 3
    for pid, ticks in proc.seen_children:
        _signal_if_same(pid, ticks, signal.SIGTERM)
    for pid, ticks in proc.seen_children:
        while time.monotonic() < deadline:
            st = read_stat(pid)
            if st is None or st.start_ticks != ticks or st.state == "Z":
                break
            time.sleep(0.05)
        _signal_if_same(pid, ticks, signal.SIGKILL)
    _LIVE.pop(proc.pid, None)
    return proc.popen.returncode


def stop_all() -> None:
    """Stops every process still recorded, newest first (clients before servers)."""
    for proc in reversed(list(_LIVE.values())):
        try:
            stop(proc, timeout=5)
        except Exception as e:  # noqa: BLE001 - cleanup must reach every process
            print(f"sluicebench: stopping {proc.name} (pid {proc.pid}): {e}")


# === /proc readers ===


@dataclass
class Stat:
    """The fields of /proc/PID/stat the harness uses (times in clock ticks)."""

    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    start_ticks: int


def read_stat(pid: int) -> Stat | None:
    """/proc/PID/stat, or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses; the fields start after the last ')'.
    f = raw[raw.rindex(")") + 2:].split()
    return Stat(state=f[0], ppid=int(f[1]), utime=int(f[11]), stime=int(f[12]),
                cutime=int(f[13]), cstime=int(f[14]), start_ticks=int(f[19]))


def tree_pids(root: int) -> list[int]:
    """``root`` followed by all its live descendants (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = read_stat(int(entry))
        if st is not None:
            children.setdefault(st.ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its descendants, including reaped children.

    /proc/PID/stat of a process covers all its threads; cutime/cstime hold the children it has
    already waited for, so a fork-per-connection server is covered before and after reaping.
    """
    ticks = 0
    for pid in tree_pids(root):
        st = read_stat(pid)
        if st is not None:
            ticks += st.utime + st.stime + st.cutime + st.cstime
    return ticks / CLK_TCK


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def memory_kib(root: int) -> tuple[int, int, int]:
    """(VmRSS sum, Pss sum, process count) over ``root`` and its descendants, in KiB.

    RSS counts shared pages (libc, the binary) once per process; Pss splits them, which is the
    fairer sum for fork-per-connection servers.
    """
    pids = tree_pids(root)
    return (sum(_status_kib(p, "VmRSS") for p in pids), sum(_pss_kib(p) for p in pids), len(pids))


def tcp_active_opens() -> int:
    """ActiveOpens from /proc/net/snmp: connect() attempts (SYNs sent) in this network namespace.

    Counts a health probe whatever happens next; HAProxy's pure TCP checks answer the SYN-ACK
    with a reset, so the listener never sees them established or accepted."""
    rows = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


# === ports ===

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and not handed out before in this run."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def _listening_ports() -> set[int]:
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local, state = f[1], f[3]
        if state == "0A" and local.startswith("0100007F:"):
            ports.add(int(local.split(":")[1], 16))
    return ports


def wait_listening(port: int, proc: Proc | None, timeout: float = 10.0) -> None:
    """Waits until something listens on 127.0.0.1:``port`` (read from /proc/net/tcp, so no
    connection is made); fails early with the log tail if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port in _listening_ports():
            return
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before listening "
                               f"on {port}:\n{proc.log_tail()}")
        time.sleep(0.05)
    tail = proc.log_tail() if proc else ""
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s\n{tail}")


def run(argv: list[str], timeout: float, log_dir: Path | None = None, name: str = "cmd") -> str:
    """Runs a client to completion (bounded by ``timeout``) and returns its stdout.

    It is recorded like any other process while it runs, so an interrupt stops it too.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_raise_nofile)
    rec = Proc(name, argv, proc, (log_dir or Path("/dev")) / f"{name}.log")
    _LIVE[proc.pid] = rec
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)
        raise RuntimeError(f"{' '.join(argv)}: no result after {timeout:.0f}s") from None
    finally:
        _LIVE.pop(proc.pid, None)
    if log_dir is not None:
        with open(log_dir / f"{name}.log", "a") as f:
            f.write(f"$ {' '.join(argv)}\n{out.decode(errors='replace')}{err.decode(errors='replace')}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}: "
                           f"{(err or out).decode(errors='replace')[-2000:]}")
    return out.decode(errors="replace")
