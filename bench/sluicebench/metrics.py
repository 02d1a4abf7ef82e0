"""The figures a run reports. Results store values per (metric id, forwarder id, round).

The metric list is saved in the results JSON, so the report renders from the file alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Metric:
    """One reported figure."""

    id: str
    title: str
    unit: str
    # "higher" or "lower": which direction is better; decides HAProxy's best config.
    better: str
    # The scenario that measures it: throughput, http, idle or health.
    scenario: str
    # Python format spec for values in tables.
    fmt: str = ".2f"

    def to_dict(self) -> dict:
        return asdict(self)


def metric_list(idle_levels: list[int], idle_substitute: int | None, health_members: int,
                health_interval: str) -> list[Metric]:
    """Every figure, in report order. ``idle_substitute`` is the largest idle level that fits
    the file-descriptor limit when a requested level does not (None if all fit)."""
    ms = [
        Metric("tput_1", "Throughput, 1 stream", "Gbit/s", "higher", "throughput"),
        Metric("tput_8", "Throughput, 8 streams", "Gbit/s", "higher", "throughput"),
        Metric("conn_rate", "New connections/s (Connection: close)", "conn/s", "higher", "http", ".0f"),
        Metric("close_p99", "p99 latency, Connection: close", "ms", "lower", "http", ".3f"),
        Metric("ka_p50", "p50 latency, keep-alive", "ms", "lower", "http", ".3f"),
        Metric("ka_p99", "p99 latency, keep-alive", "ms", "lower", "http", ".3f"),
    ]
    levels = list(idle_levels) + ([idle_substitute] if idle_substitute else [])
    def what(n: int) -> str:
        fits = " (the most that fit the fd limit)" if n == idle_substitute else ""
        return f"{n:,} connections{fits}"

    for n in levels:
        ms.append(Metric(f"idle_rss_{n}", f"RSS per idle connection, {what(n)}",
                         "KiB/conn", "lower", "idle", ".1f"))
    for n in levels:
        ms.append(Metric(f"idle_pss_{n}", f"PSS per idle connection, {what(n)}",
                         "KiB/conn", "lower", "idle", ".1f"))
    ms += [
        Metric("cpu_gb_1", "CPU per GB relayed, 1 stream", "CPU s/GB", "lower", "throughput", ".3f"),
        Metric("cpu_gb_8", "CPU per GB relayed, 8 streams", "CPU s/GB", "lower", "throughput", ".3f"),
        Metric("health_cpu", f"Health checks: CPU, {health_members:,} members probed every "
               f"{health_interval}", "% of one core", "lower", "health", ".1f"),
    ]
    return ms
