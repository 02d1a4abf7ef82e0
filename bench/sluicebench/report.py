"""Medians, ranges and ratios from a results JSON, rendered as docs/BENCHMARKS.md.

Every figure is compared with HAProxy's best config for that figure (plain or splice-auto,
whichever has the better median), so "1.00×" means "as good as HAProxy at its best here".
"""

from __future__ import annotations

import statistics

HAPROXY_IDS = ("haproxy", "haproxy-splice")


def summarize(data: dict) -> dict[str, dict[str, dict]]:
    """``{metric: {forwarder: {median, min, max, n}}}`` for every recorded value list."""
    out: dict[str, dict[str, dict]] = {}
    for metric, per_fw in data["samples"].items():
        for fw, values in per_fw.items():
            if values:
                out.setdefault(metric, {})[fw] = {
                    "median": statistics.median(values), "min": min(values),
                    "max": max(values), "n": len(values)}
    return out


def haproxy_best(metric: dict, summary: dict) -> tuple[str, float] | None:
    """(forwarder id, median) of HAProxy's best config for ``metric``, or None if neither ran."""
    cands = [(fw, summary.get(metric["id"], {}).get(fw, {}).get("median")) for fw in HAPROXY_IDS]
    cands = [(fw, v) for fw, v in cands if v is not None]
    if not cands:
        return None
    pick = max if metric["better"] == "higher" else min
    return pick(cands, key=lambda c: c[1])


def ratios(data: dict, summary: dict) -> dict[str, dict[str, float]]:
    """``{metric: {forwarder: median / HAProxy best median}}`` where both exist and the base is
    not zero."""
    out: dict[str, dict[str, float]] = {}
    for m in data["metrics"]:
        best = haproxy_best(m, summary)
        if not best or best[1] == 0:
            continue
        for fw, s in summary.get(m["id"], {}).items():
            out.setdefault(m["id"], {})[fw] = s["median"] / best[1]
    return out


def _scrub(text: str, meta: dict) -> str:
    """Paths made readable: the run's temp dir becomes $WORK, the repository becomes ``.``."""
    text = text.replace(meta.get("workdir", "\0"), "$WORK")
    return text.replace(meta.get("repo", "\0") + "/", "./")


def _fmt(v: float, spec: str) -> str:
    return format(v, spec) if abs(v) < 1e5 else format(v, ",.0f")


def _label(data: dict, fw: str) -> str:
    for f in data["forwarders"]:
        if f["id"] == fw:
            return f["label"]
    return fw


def _notes_cell(data: dict, metric: str, fw: str) -> str:
    notes = data["notes"].get(metric, {}).get(fw, [])
    text = "; ".join(notes)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) < 260 else text[:257] + "..."


def _figure_table(data: dict, m: dict, summary: dict, rat: dict) -> list[str]:
    best = haproxy_best(m, summary)
    base = f"× {_label(data, best[0])}" if best else "× HAProxy (did not run)"
    lines = [f"### {m['title']}",
             "",
             f"{m['unit']}, {m['better']} is better. Ratio: median ÷ the better HAProxy config's median.",
             "",
             f"| forwarder | median | min–max | {base} | rounds | notes |",
             "|---|---:|---:|---:|---:|---|"]
    for f in data["forwarders"]:
        fw = f["id"]
        s = summary.get(m["id"], {}).get(fw)
        notes = _notes_cell(data, m["id"], fw)
        if s is None and not notes:
            continue
        if s is None:
            lines.append(f"| {f['label']} | n/a | | | 0 | {notes} |")
            continue
        r = rat.get(m["id"], {}).get(fw)
        lines.append(f"| {f['label']} | {_fmt(s['median'], m['fmt'])} | "
                     f"{_fmt(s['min'], m['fmt'])}–{_fmt(s['max'], m['fmt'])} | "
                     f"{'' if r is None else f'{r:.2f}×'} | {s['n']} | {notes} |")
    return lines + [""]


SUMMARY_METRICS = ("tput_1", "tput_8", "conn_rate", "ka_p99", "cpu_gb_1", "health_cpu")


def _summary_table(data: dict, summary: dict, rat: dict) -> list[str]:
    metrics = [m for m in data["metrics"] if m["id"] in SUMMARY_METRICS]
    idle = [m for m in data["metrics"] if m["id"].startswith("idle_rss_") and summary.get(m["id"])]
    metrics[4:4] = idle[:1]
    head = "| forwarder | " + " | ".join(f"{m['title']} ({m['unit']})" for m in metrics) + " |"
    lines = [head, "|---|" + "---:|" * len(metrics)]
    for f in data["forwarders"]:
        cells = []
        for m in metrics:
            s = summary.get(m["id"], {}).get(f["id"])
            r = rat.get(m["id"], {}).get(f["id"])
            if s is None:
                cells.append("n/a" if data["notes"].get(m["id"], {}).get(f["id"]) else "")
            else:
                cells.append(_fmt(s["median"], m["fmt"]) + (f" ({r:.2f}×)" if r is not None else ""))
        lines.append(f"| {f['label']} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_markdown(data: dict, png_name: str) -> str:
    """The whole BENCHMARKS.md text for a results JSON."""
    meta = data["meta"]
    summary = summarize(data)
    rat = ratios(data, summary)
    p = meta["params"]
    out = ["# sluice benchmarks", "",
           f"Generated by `{meta['invocation']}` on {meta['started']} from "
           f"`{meta['results_path']}`. Do not edit by hand: rerun the harness.", ""]
    if meta.get("quick"):
        out += ["> **Quick smoke run (`--quick`)**: short measurements and few rounds. The numbers "
                "show that the harness works, not how the forwarders compare.", ""]
    out += [f"> Load average (1/5/15 min) at start: {meta['load_start']}; at end: {meta['load_end']} "
            f"on {meta['machine']['nproc']} cores. Other work on the machine (compiles) makes every "
            "figure noisy; compare ratios within one run, not absolute numbers across runs.", "",
            f"![Median ratio to HAProxy's best config, per figure]({png_name})", "",
            "## Summary", "",
            "Medians over the rounds; in parentheses the ratio to HAProxy's best config for that "
            "figure. Details, ranges and notes per figure below.", ""]
    out += _summary_table(data, summary, rat)

    out += ["## Machine and tools", "", "| item | value |", "|---|---|"]
    for k, v in meta["machine"].items():
        out.append(f"| {k} | {v} |")
    for k, v in meta["tools"].items():
        out.append(f"| {k} | {v} |")
    out += ["", "## Forwarders", "",
            "All listen on 127.0.0.1 with backlog 1024, TCP_NODELAY, timeouts of 10 minutes and no "
            "access log. Each measurement starts a fresh forwarder process.", "",
            "| id | forwarder | settings |", "|---|---|---|"]
    for f in data["forwarders"]:
        out.append(f"| `{f['id']}` | {f['label']} | {f['settings']} |")
    out += ["", "## Method", "",
            f"- {p['rounds']} rounds. In each round every forwarder runs every scenario, "
            "interleaved (all forwarders through throughput, then all through HTTP, ...), and the "
            "order of forwarders rotates by one each round. Tables give the median over rounds and "
            "the min–max range.",
            f"- **Throughput** (figures 1 and 5): `iperf3` client → forwarder → "
            "`iperf3 -s -B 127.0.0.1` (one server for the whole run), "
            f"{p['iperf_seconds']} s each with 1 and 8 parallel streams (iperf3 3.12 runs all streams "
            "in one thread). Gbit/s received. **CPU per GB**: the forwarder's user+system CPU "
            "seconds (/proc/PID/stat utime+stime, plus cutime+cstime of reaped children, summed "
            "over its processes) during the run, divided by GB received.",
            f"- **Connection rate and latency** (figures 2 and 3): `wrk` → forwarder → nginx "
            f"serving a 1 KiB static file (one worker, no access log). `Connection: close` with "
            f"{p['wrk_close_conns']} connections: requests/s equals new connections/s; "
            f"keep-alive with {p['wrk_ka_conns']} connections. {p['wrk_seconds']} s each, one wrk "
            "thread, after a 1 s warm-up. wrk is closed-loop, so latencies are at saturation; "
            "wrk's latency excludes the TCP connect.",
            "- **Idle memory** (figure 4): a fresh forwarder; a client opens N connections through "
            "it one after another, sends 16 bytes on each and waits for the echo from the upstream "
            "(so every connection carried data end to end), then holds them. (VmRSS after − VmRSS "
            "before) / N, summed over the forwarder's processes (nginx master and workers, socat "
            "and its children), 1 s after the last connection. PSS (/proc/PID/smaps_rollup) is "
            "given too: it splits shared pages, which is the fairer sum for socat's forks.",
            f"- **Health checking cost** (figure 6): the forwarder with {p['health_members']:,} "
            "members, all accept-and-close listeners on 127.0.0.1 in one helper process, probed "
            f"every {p['health_interval']}, no traffic. CPU% of the forwarder (100 = one core) "
            f"over {p['health_seconds']} s after a {p['health_warmup_seconds']} s warm-up. nginx "
            "open source and socat have no active health checks.",
            "- Everything binds and connects to 127.0.0.1 only; every process is started by the "
            "harness and stopped by PID.", ""]

    out += ["## Results per figure", ""]
    for m in data["metrics"]:
        if m["id"] in data["samples"] or m["id"] in data["notes"]:
            out += _figure_table(data, m, summary, rat)

    errors = {m: v for m, v in data["extra"].items() if m in ("conn_rate", "ka_p50")}
    if errors and not any(sum(e.values()) for per_fw in errors.values() for runs in per_fw.values()
                          for e in runs):
        out += ["wrk reported no errors (connect, read, write, HTTP status, timeout) in any run.", ""]
    elif errors:
        out += ["### wrk errors per run", "",
                "connect/read/write/status/timeout counts, one entry per round.", "",
                "| figure | forwarder | errors |", "|---|---|---|"]
        for m, per_fw in errors.items():
            for fw, runs in per_fw.items():
                if any(sum(e.values()) for e in runs):
                    kinds = ("connect", "read", "write", "status", "timeout")
                    text = ", ".join("/".join(str(e[k]) for k in kinds) for e in runs)
                    out.append(f"| {m} | {_label(data, fw)} | {text} |")
        out.append("")
    probes = data["extra"].get("health_cpu", {})
    if probes:
        out += ["### Health probes observed", "",
                "Probes per second, expected ≈ members ÷ interval. *accepted*: counted by the "
                "listeners' accept(). HAProxy's pure TCP check answers the SYN-ACK with a reset, "
                "so its probes are never established on the listener's side and do not show "
                "there. *connects*: the kernel's TCP ActiveOpens counter over the window (SYNs "
                "sent), which counts every probe, plus any other loopback traffic in this "
                "network namespace.", "",
                "| forwarder | accepted/s per round | connects/s per round |", "|---|---|---|"]
        for fw, runs in probes.items():
            acc = ", ".join(str(r.get("accepted_per_second")) for r in runs)
            opens = ", ".join(str(r.get("active_opens_per_second")) for r in runs)
            out.append(f"| {_label(data, fw)} | {acc} | {opens} |")
        out.append("")

    out += ["## Commands", "",
            "The exact command lines (ports differ per run). Run the whole thing with `just bench` "
            "(or `bench/run`); `just bench --quick` is a short smoke run.", "", "```"]
    for k, v in sorted(data["commands"].items()):
        out.append(f"# {k}\n{_scrub(v, meta)}")
    out += ["```", "", "## Generated configs", ""]
    for fw, text in data["configs"].items():
        label = "nginx HTTP upstream" if fw == "nginx-http-upstream" else _label(data, fw)
        out += [f"<details><summary>{label}</summary>", "", "```",
                _scrub(text.rstrip(), meta), "```",
                "", "</details>", ""]
    if data.get("errors"):
        out += ["## Harness errors", ""] + [f"- {e}" for e in data["errors"]] + [""]
    return "\n".join(out)
