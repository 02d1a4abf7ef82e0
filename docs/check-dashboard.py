#!/usr/bin/env python3
"""Checks docs/grafana-dashboard.json against the code and, optionally, a live sluice/Prometheus.

    python3 docs/check-dashboard.py                                   # JSON + metric names
    python3 docs/check-dashboard.py --metrics http://127.0.0.1:9901/metrics   # + label names
    python3 docs/check-dashboard.py --prometheus http://127.0.0.1:9090        # + evaluate exprs

1. The file is valid JSON with a ${DS_PROMETHEUS} input, every panel uses that datasource,
   panel ids and refIds are unique and no two panels overlap on the grid.
2. Every sluice_* name in an expr or variable query is a metric named in
   src/telemetry/metrics.rs (_bucket/_sum/_count only for histograms).
3. With --metrics (a URL or a file of the Prometheus text format, from a sluice that has
   served traffic, failed a connect and reloaded): every label used in a selector, in by()/
   ignoring() or in a legend exists on a metric of that expr (plus instance/job from the scrape).
4. With --prometheus: every expr evaluates without error (variables replaced by ".*",
   $__rate_interval by 1m); empty results are listed, not failed.
Exit 1 on any failure.
"""
import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
METRICS_RS = ROOT / "src" / "telemetry" / "metrics.rs"
SCRAPE_LABELS = {"instance", "job"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                "and", "or", "unless"}


def code_metrics():
    src = METRICS_RS.read_text()
    consts = dict(re.findall(r'pub const (\w+): &str =\s*"(sluice_\w+)"', src))
    histograms = {consts[c] for c in re.findall(r"describe_histogram!\(\s*(\w+)", src)}
    names = set(consts.values())
    for h in histograms:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names, histograms


def exprs(dash):
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"], t.get("legendFormat", "")))
    for v in dash["templating"]["list"]:
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        out.append((f"variable {v['name']}", q, ""))
    return out


def metric_refs(expr, known):
    """The metric names an expr reads (bare names), the sets a __name__ regex matches, errors."""
    bare, regexes, errors = set(), [], []
    for rx in re.findall(r'__name__=~"([^"]+)"', expr):
        hits = {m for m in known if re.fullmatch(rx, m)}
        if not hits:
            errors.append(f'__name__=~"{rx}" matches no metric of metrics.rs')
        regexes.append(hits)
    unquoted = re.sub(r'"[^"]*"', '""', expr)  # drop string literals
    for name in re.findall(r"\bsluice_[a-z0-9_]+", unquoted):
        if name not in known:
            errors.append(f"{name}: not a metric of metrics.rs")
        bare.add(name)
    return bare, regexes, errors


def base_name(name, histograms):
    stem = re.sub(r"_(bucket|sum|count)$", "", name)
    return stem if stem in histograms else name


def labels_used(expr, legend):
    used = set()
    for sel in re.findall(r"\{([^}]*)\}", expr):
        used |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel))
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        used |= {l.strip() for l in clause.split(",") if l.strip()}
    expr_no_q = re.sub(r'"[^"]*"', '""', expr)
    m = re.search(r"label_values\((?:.*,)?\s*([a-zA-Z_]\w*)\s*\)\s*$", expr_no_q)
    if m:
        used.add(m.group(1))
    used |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    used.discard("__name__")
    return used - PROMQL_WORDS


def scrape_labels(source):
    if re.match(r"https?://", source):
        text = urllib.request.urlopen(source, timeout=5).read().decode()
    else:
        text = Path(source).read_text()
    labels = {}
    for line in text.splitlines():
        m = re.match(r"^(sluice_\w+)(?:\{(.*)\})?\s", line)
        if m:
            labels.setdefault(m.group(1), set()).update(re.findall(r'(\w+)="', m.group(2) or ""))
    return labels


def evaluate(url, expr):
    q = expr.replace("$__rate_interval", "1m")
    q = re.sub(r"\$\{?(instance|route|pool)(?::\w+)?\}?", ".*", q)
    if q.startswith("label_values("):
        return None, None  # a Grafana function, not PromQL
    full = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        body = json.load(urllib.request.urlopen(full, timeout=10))
    except urllib.error.HTTPError as e:
        return f"{e.code}: {json.load(e).get('error')}", None
    return None, len(body["data"]["result"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dashboard", nargs="?", default=str(DASHBOARD))
    ap.add_argument("--metrics", help="URL or file of a sluice /metrics scrape")
    ap.add_argument("--prometheus", help="base URL of a Prometheus that scrapes sluice")
    args = ap.parse_args()

    failures = []
    dash = json.loads(Path(args.dashboard).read_text())
    if not any(i.get("name") == "DS_PROMETHEUS" for i in dash.get("__inputs", [])):
        failures.append("no DS_PROMETHEUS in __inputs")
    for p in dash["panels"]:
        if p["type"] != "row" and p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            failures.append(f"{p['title']}: datasource is not ${{DS_PROMETHEUS}}")
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        failures.append("panel ids are not unique")
    cells = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            failures.append(f"{p['title']}: wider than the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    failures.append(f"{p['title']}: overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = p["title"]
            else:
                continue
            break
        refs = [t["refId"] for t in p.get("targets", [])]
        if len(refs) != len(set(refs)):
            failures.append(f"{p['title']}: duplicate refId")
    known, histograms = code_metrics()
    live = scrape_labels(args.metrics) if args.metrics else None
    all_exprs = exprs(dash)
    seen = set()
    for where, expr, legend in all_exprs:
        bare, regexes, errors = metric_refs(expr, known)
        failures += [f"{where}: {e}" for e in errors]
        seen |= {base_name(r, histograms) for r in bare}
        if live is not None:
            have = set(SCRAPE_LABELS)
            for r in bare:
                if r not in live:
                    failures.append(f"{where}: {r} is not in the scrape (not emitted yet?)")
                have |= live.get(r, set())
            for hits in regexes:
                if not hits & live.keys():
                    failures.append(f"{where}: none of {sorted(hits)} is in the scrape")
                for r in hits & live.keys():
                    have |= live[r]
            refs = sorted(bare | set().union(*regexes))
            for label in labels_used(expr, legend) - have:
                failures.append(f"{where}: label {label!r} is not on {refs}")
    if args.prometheus:
        for where, expr, _ in all_exprs:
            error, n = evaluate(args.prometheus, expr)
            if error:
                failures.append(f"{where}: Prometheus rejects {expr!r}: {error}")
            elif n is not None:
                print(f"{n:4d} series  {where}")
    base = {base_name(m, histograms) for m in known}
    print(f"{len(all_exprs)} exprs, {len(seen & base)} of {len(base)} metrics used; unused: {sorted(base - seen) or 'none'}")
    for f in failures:
        print("FAIL", f)
    print("ok" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
