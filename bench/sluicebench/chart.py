"""docs/benchmarks.png: one panel per figure, a bar per forwarder, its median ÷ HAProxy's best
config for that figure. A dashed line marks 1.0 (HAProxy's best)."""

from __future__ import annotations

import math
from pathlib import Path

from .report import haproxy_best, ratios, summarize

COLORS = {
    "direct": "#b0b0b0",
    "sluice": "#d95f02",
    "haproxy": "#1b9e77",
    "nginx": "#7570b3",
    "socat": "#e7298a",
    "naive": "#66a61e",
}


# Bars longer than this ratio are cut (and marked) so the others stay readable.
CAP = 4.0


def _color(fw: str) -> str:
    return COLORS.get(fw.split("-")[0], "#444444")


def render_png(data: dict, path: Path) -> None:
    """Writes the chart for a results JSON to ``path``. PSS panels are left out (tables only)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(data)
    rat = ratios(data, summary)
    metrics = [m for m in data["metrics"] if rat.get(m["id"]) and not m["id"].startswith("idle_pss_")]
    if not metrics:
        return
    fws = [f for f in data["forwarders"]]
    ncols = 3
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(16, 3.3 * nrows + 1.2), squeeze=False)
    for ax, m in zip(axes.flat, metrics, strict=False):  # the grid may have spare cells
        rows = [(f["label"], f["id"], rat[m["id"]][f["id"]]) for f in fws if f["id"] in rat[m["id"]]]
        rows.reverse()  # first forwarder at the top
        labels = [r[0] for r in rows]
        values = [r[2] for r in rows]
        # One outlier (socat's RSS, counted once per fork) must not flatten the others: bars past
        # CAP are cut there and keep their true value in the label.
        shown = [min(v, CAP) for v in values]
        bars = ax.barh(labels, shown, height=0.7, color=[_color(r[1]) for r in rows])
        for bar, r, v in zip(bars, rows, values, strict=True):
            if r[1] == "direct":
                bar.set_hatch("//")
                bar.set_edgecolor("white")
            if v > CAP:
                bar.set_hatch("..")
                bar.set_edgecolor("white")
        ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
        top = max(shown + [1.0])
        ax.set_xlim(0, top * (1.45 if max(values) > CAP else 1.25))
        # At least five rows of height, filled from the top, so panels with two bars match.
        ax.set_ylim(len(rows) - 0.5 - max(len(rows), 5), len(rows) - 0.5)
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2,
                    f"{v:.2f}×" + (" (cut)" if v > CAP else ""), va="center", fontsize=8)
        best = haproxy_best(m, summary)
        base = "HAProxy splice" if best and best[0] == "haproxy-splice" else "HAProxy"
        ax.set_title(f"{m['title']}\n{m['better']} is better · base {base}: "
                     f"{format(best[1], m['fmt'])} {m['unit']}", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    meta = data["meta"]
    kind = "QUICK SMOKE RUN, not representative · " if meta.get("quick") else ""
    fig.suptitle(f"sluice vs HAProxy, nginx, socat, naive tokio: median ÷ HAProxy's best config\n"
                 f"{kind}{meta['params']['rounds']} rounds · {meta['machine']['nproc']} cores "
                 f"{meta['machine']['cpu']} · {meta['started']} · load at start {meta['load_start']}",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
