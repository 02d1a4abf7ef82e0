"""Command line: ``python3 -m sluicebench [--quick] [...]`` (normally through ``bench/run``).

A full run writes bench/results/latest.json, docs/BENCHMARKS.md and docs/benchmarks.png. A quick
run writes the same three files under bench/results/quick/, so a smoke run never replaces the
published numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import procs, scenarios
from .chart import render_png
from .forwarders import Forwarder, all_forwarders
from .machine import describe, loadavg
from .metrics import metric_list
from .report import render_markdown
from .upstreams import IperfServer, NginxHttp

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("throughput", "http", "idle", "health")


class Watchdog(Exception):
    """The run went past ``--max-minutes``."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The driver's options (bench/run passes everything through)."""
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run (2 rounds of 2 s runs)")
    p.add_argument("--rounds", type=int, help="override the number of rounds")
    p.add_argument("--seconds", type=int, help="override the length of each iperf3/wrk run")
    p.add_argument("--idle-levels", help="comma-separated idle connection counts (e.g. 5000,20000)")
    p.add_argument("--forwarders", help="comma-separated forwarder ids to run (default: all); "
                   "ids: direct, sluice-bare, sluice-copy, sluice-full, sluice-silent, sluice-onesocket, haproxy, haproxy-splice, nginx-1, "
                   "nginx-auto, socat, naive")
    p.add_argument("--only", help=f"comma-separated scenarios (default: all): {', '.join(SCENARIOS)}")
    p.add_argument("--target-dir", help="cargo target dir holding release/sluice "
                   "(default: $CARGO_TARGET_DIR or ./target)")
    p.add_argument("--sluice-bin", help="sluice binary to run (default: TARGET/release/sluice)")
    p.add_argument("--sluice-source", help="where --sluice-bin was built from, for the report "
                   "(e.g. \"/work/main at 1796780\")")
    p.add_argument("--naive-bin", help="naive forwarder (default: TARGET/release/examples/naive_forward)")
    p.add_argument("--results", help="results JSON path")
    p.add_argument("--docs-dir", help="where BENCHMARKS.md and benchmarks.png go")
    p.add_argument("--render-only", metavar="JSON", help="re-render Markdown and PNG from a results file")
    p.add_argument("--keep-workdir", action="store_true", help="keep configs and logs in /tmp")
    p.add_argument("--max-minutes", type=float,
                   help="stop everything after this long (default 20 quick, 120 full)")
    # Consumed by bench/run; accepted here so they can be passed through.
    p.add_argument("--no-install", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-build", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_params(args: argparse.Namespace) -> scenarios.Params:
    """The preset for ``--quick`` or a full run, with command-line overrides applied."""
    params = dataclasses.replace(scenarios.QUICK if args.quick else scenarios.FULL)
    if args.rounds:
        params.rounds = args.rounds
    if args.seconds:
        params.iperf_seconds = params.wrk_seconds = args.seconds
    if args.idle_levels:
        params.idle_levels = [int(x) for x in args.idle_levels.split(",")]
    return params


def output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(results JSON, docs dir) for this run."""
    if args.quick:
        results, docs = REPO / "bench/results/quick/results.json", REPO / "bench/results/quick"
    else:
        results, docs = REPO / "bench/results/latest.json", REPO / "docs"
    return (Path(args.results) if args.results else results,
            Path(args.docs_dir) if args.docs_dir else docs)


def render(data: dict, docs_dir: Path) -> None:
    """Writes BENCHMARKS.md and benchmarks.png for ``data`` into ``docs_dir``."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "BENCHMARKS.md").write_text(render_markdown(data, "benchmarks.png"))
    render_png(data, docs_dir / "benchmarks.png")
    print(f"sluicebench: wrote {docs_dir / 'BENCHMARKS.md'} and {docs_dir / 'benchmarks.png'}")


def _progress(t0: float, results: scenarios.Results, fw: Forwarder, what: str, metrics: list[str]) -> None:
    parts = []
    for m in metrics:
        vals = results.samples.get(m, {}).get(fw.id)
        notes = results.notes.get(m, {}).get(fw.id)
        if vals:
            parts.append(f"{m}={vals[-1]:.3g}")
        elif notes:
            parts.append(f"{m}: {notes[-1][:100]}")
    elapsed = time.monotonic() - t0
    print(f"[{int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {what:<10} {fw.id:<15} {'  '.join(parts)}",
          flush=True)


def run_rounds(ctx: scenarios.Context, forwarders: list[Forwarder], only: set[str],
               idle_levels: list[int]) -> None:
    """Every round: all forwarders through each scenario in turn, order rotated per round."""
    t0 = time.monotonic()
    p = ctx.params
    for rnd in range(p.rounds):
        print(f"--- round {rnd + 1}/{p.rounds}", flush=True)
        k = rnd % len(forwarders)
        order = forwarders[k:] + forwarders[:k]
        if "throughput" in only:
            for fw in (f for f in order if f.runs("throughput")):
                scenarios.throughput(ctx, fw, rnd)
                _progress(t0, ctx.results, fw, "throughput", ["tput_1", "tput_8", "cpu_gb_1", "cpu_gb_8"])
        if "http" in only:
            for fw in (f for f in order if f.runs("http")):
                scenarios.http(ctx, fw, rnd)
                _progress(t0, ctx.results, fw, "http", ["conn_rate", "close_p99", "ka_p50", "ka_p99"])
        if "idle" in only:
            for n in idle_levels:
                for fw in (f for f in order if f.runs("idle")):
                    scenarios.idle(ctx, fw, n, rnd)
                    _progress(t0, ctx.results, fw, f"idle {n}", [f"idle_rss_{n}", f"idle_pss_{n}"])
        if "health" in only:
            for fw in (f for f in order if f.runs("health")):
                if fw.health_probes:
                    scenarios.health(ctx, fw, rnd)
                    _progress(t0, ctx.results, fw, "health", ["health_cpu"])


def _on_alarm(*_):
    raise Watchdog("the run went past --max-minutes; stopped")


def _on_term(*_):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    """Runs the benchmark (or re-renders), returns the exit status."""
    args = parse_args(argv)
    results_path, docs_dir = output_paths(args)
    if args.render_only:
        data = json.loads(Path(args.render_only).read_text())
        args.quick = data["meta"].get("quick", False)
        render(data, output_paths(args)[1])
        return 0

    target = Path(args.target_dir or os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    sluice_bin = Path(args.sluice_bin) if args.sluice_bin else target / "release/sluice"
    naive_bin = Path(args.naive_bin) if args.naive_bin else target / "release/examples/naive_forward"
    params = build_params(args)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if only - set(SCENARIOS):
        print(f"unknown scenario(s): {', '.join(only - set(SCENARIOS))}", file=sys.stderr)
        return 64
    forwarders = all_forwarders(sluice_bin.resolve(), naive_bin.resolve())
    if args.forwarders:
        wanted = args.forwarders.split(",")
        unknown = set(wanted) - {f.id for f in forwarders}
        if unknown:
            print(f"unknown forwarder(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 64
        forwarders = [f for f in forwarders if f.id in wanted]

    substitute = scenarios.idle_substitute_level(params)
    idle_levels = params.idle_levels + ([substitute] if substitute else [])
    results = scenarios.Results()
    workdir = Path(tempfile.mkdtemp(prefix="sluicebench-"))
    meta = {
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "params": dataclasses.asdict(params),
        "invocation": " ".join([os.environ.get("SLUICEBENCH_INVOCATION", "bench/run"),
                                shlex.join(argv)]).strip(),
        "results_path": os.path.relpath(results_path, REPO),
        "load_start": loadavg(),
        "workdir": str(workdir),
        "repo": str(REPO),
        **describe(REPO, sluice_bin, naive_bin,
                   args.sluice_source or (None if not args.sluice_bin else "given with --sluice-bin")),
    }
    print(f"sluicebench: {len(forwarders)} forwarders, {params.rounds} rounds, work dir {workdir}",
          flush=True)
    errors: list[str] = []
    skipped: dict[str, str] = {}
    max_minutes = args.max_minutes or (20 if args.quick else 120)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    signal.alarm(int(max_minutes * 60))
    interrupted = False
    try:
        iperf, nginx = IperfServer(workdir), NginxHttp(workdir)
        iperf.start()
        nginx.start()
        results.command("upstream: iperf3 server", iperf.proc.argv)
        results.command("upstream: nginx HTTP", nginx.proc.argv)
        results.configs["nginx-http-upstream"] = nginx.config()
        ctx = scenarios.Context(params, results, workdir, iperf, nginx)
        usable = []
        for fw in forwarders:
            reason = fw.available() or scenarios.smoke(ctx, fw)
            if reason:
                print(f"sluicebench: skipping {fw.id}: {reason}", flush=True)
                skipped[fw.id] = reason
            else:
                usable.append(fw)
        if usable:
            run_rounds(ctx, usable, only, idle_levels)
    except Watchdog as e:
        errors.append(str(e))
        print(f"sluicebench: {e}", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("sluicebench: interrupted; stopping every process", flush=True)
    except BaseException:
        print(f"sluicebench: failed; configs and logs kept in {workdir}", flush=True)
        raise
    finally:
        signal.alarm(0)
        procs.stop_all()
    if interrupted:
        print(f"sluicebench: configs and logs kept in {workdir}", flush=True)
        return 130

    used_metrics = [m.to_dict() for m in metric_list(params.idle_levels, substitute,
                                                     params.health_members, params.health_interval)
                    if m.scenario in only]
    for fw_id, reason in skipped.items():
        for m in used_metrics:
            results.note(m["id"], fw_id, f"skipped: {reason}")
    meta["load_end"] = loadavg()
    meta["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    data = {
        "meta": meta,
        "forwarders": [{"id": f.id, "label": f.label, "settings": f.settings} for f in forwarders],
        "metrics": used_metrics,
        "samples": results.samples,
        "notes": results.notes,
        "extra": results.extra,
        "commands": results.commands,
        "configs": results.configs,
        "errors": errors,
    }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = results_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.rename(results_path)
    print(f"sluicebench: wrote {results_path}")
    render(data, docs_dir)
    if args.keep_workdir:
        print(f"sluicebench: configs and logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
