"""The machine and tool versions, recorded with every run."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from pathlib import Path


def _cmd(argv: list[str], line_with: str | None = None) -> str:
    """First line of a command's output (or the first line containing ``line_with``)."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    lines = (p.stdout + p.stderr).splitlines()
    if line_with:
        lines = [ln for ln in lines if line_with in ln] or lines
    return lines[0].strip() if lines else "?"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "?"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def describe(repo: Path, sluice_bin: Path, naive_bin: Path, sluice_source: str | None) -> dict:
    """Machine facts and the version of every tool the run uses. ``sluice_source`` says where
    the sluice binary came from when it was not built from this tree (``--sluice-bin``)."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    commit = _cmd(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = _cmd(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "kernel": platform.release(),
            "os": _os_name(),
            "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "nofile_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            "somaxconn": Path("/proc/sys/net/core/somaxconn").read_text().strip(),
            "ip_local_port_range": " ".join(
                Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()),
        },
        "tools": {
            "sluice": f"{_cmd([str(sluice_bin), '--version'])} ({sluice_bin}, "
                      + (sluice_source or f"built from this tree"
                         f"{', with uncommitted changes' if dirty and dirty != '?' else ''}") + ")",
            "harness": f"bench/ at {commit}",
            "naive_forward": f"{naive_bin}",
            "rustc": _cmd(["rustc", "--version"]),
            "haproxy": _cmd(["haproxy", "-v"], "version"),
            "nginx": _cmd(["nginx", "-v"], "version"),
            "socat": _cmd(["socat", "-V"], "socat version"),
            "iperf3": _cmd(["iperf3", "--version"]),
            "wrk": _cmd(["wrk", "-v"], "wrk"),
            "python": platform.python_version(),
            "matplotlib": _matplotlib_version(),
        },
    }


def _matplotlib_version() -> str:
    try:
        import matplotlib
        return matplotlib.__version__
    except ImportError:
        return "not installed"
