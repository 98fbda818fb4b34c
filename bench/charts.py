"""PNG charts of a benchmark result: the load during each switch method and during a certificate
renewal, deploy time by host count.

Drawn from the result document alone (``bench/results/latest.json``), so a chart can be drawn
again from any run without running anything:

    .venv/bin/python -m bench.charts [RESULTS_JSON] [--out DIR]

``figure_*`` functions are pure (data in, a matplotlib Figure out) and use matplotlib's
object API on the Agg canvas: no pyplot, no global state, no display.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter

from bench.report import SWITCH_LABELS
from bench.timeline import Timeline

REPO = Path(__file__).resolve().parents[1]
# In the docs tree, so the charts the README and the docs show are committed with the figures
# (bench/results/*.json other than latest.json are not).
CHARTS = REPO / "docs" / "img" / "bench"
DPI = 100
SWITCH_SIZE_PER_METHOD = (4.0, 6.0)  # inches, one column per method
HOSTS_SIZE = (6.4, 4.0)
# (attribute of Timeline, axis label)
PANELS = (
    ("requests_per_second", "requests/s"),
    ("p99_ms", "p99 latency (ms)"),
    ("errors_per_second", "failed requests/s"),
)
COMMAND_SHADE = {"color": "tab:orange", "alpha": 0.15, "lw": 0}
SWITCH_SHADE = {"color": "tab:red", "alpha": 0.25, "lw": 0}


def _nan(values: Sequence[float | None]) -> list[float]:
    """None (a bucket where nothing answered) as NaN: a gap in the line, not a zero."""
    return [math.nan if v is None else float(v) for v in values]


def figure_switches(timelines: Mapping[str, Timeline]) -> Figure:
    """One column per method (its label the key), rows for requests/s, p99 and failures/s on
    shared y axes so the methods compare at a glance; the command's run is shaded, and the
    switch inside it (when known) more darkly. p99 is on a log scale: a few milliseconds and
    several seconds both have to be readable."""
    if not timelines:
        raise ValueError("figure_switches: no timeline to draw")
    width, height = SWITCH_SIZE_PER_METHOD
    fig = Figure(figsize=(width * len(timelines) + 0.8, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(PANELS), len(timelines), sharex="col", sharey="row", squeeze=False)
    shades = {}
    for column, (label, timeline) in enumerate(timelines.items()):
        for row, (attribute, axis_label) in enumerate(PANELS):
            ax = axes[row][column]
            ax.step(timeline.t, _nan(getattr(timeline, attribute)), where="post", label=axis_label)
            shades["command running"] = ax.axvspan(*timeline.command, **COMMAND_SHADE)
            if timeline.switch:
                shades["switch"] = ax.axvspan(*timeline.switch, **SWITCH_SHADE)
            ax.grid(True, alpha=0.3)
            if column == 0:
                ax.set_ylabel(axis_label)
        axes[0][column].set_title(label, fontsize="medium")
        axes[-1][column].set_xlabel("seconds from the command's start")
    axes[1][0].set_yscale("log")  # the row shares its y axis: one call sets every column
    # 5 and 2000, not 5x10^0 and 2x10^3; in-between ticks labelled only when the range is narrow.
    axes[1][0].yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes[1][0].yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    axes[0][0].set_ylim(bottom=0)
    # No failure at all still gets a readable axis, with zero at the bottom.
    axes[2][0].set_ylim(0, max(1.0, axes[2][0].get_ylim()[1]))
    axes[0][-1].legend(shades.values(), shades.keys(), loc="lower right", fontsize="small")
    return fig


def host_series(multi_host: Mapping) -> dict[str, list[tuple[int, float]]]:
    """Deploy time (median seconds) by host count, one series with ``--batch`` and one without,
    from the multi-host section: its ``curve`` (points ``{"hosts", "mode", "batch", "median"}``;
    ``mode`` "rolling" or "batch", else a ``batch`` above 1 means batched) when the benchmark
    measured one, else the two points results from before the curve have (one host, and all
    hosts one after another)."""
    series: dict[str, list[tuple[int, float]]] = {}
    points = multi_host.get("curve")
    if points is None:
        counts = {"deploy_one": 1, "deploy_all": multi_host.get("web_count", 3)}
        points = [
            {"hosts": hosts, "batch": 1, "median": multi_host[key]["median"]}
            for key, hosts in counts.items()
            if key in multi_host
        ]
    for point in points:
        mode = point.get("mode")
        batched = mode == "batch" if mode else int(point.get("batch", 1)) > 1
        name = "with --batch" if batched else "one host at a time"
        series.setdefault(name, []).append((int(point["hosts"]), float(point["median"])))
    return {name: sorted(values) for name, values in sorted(series.items())}


def figure_hosts(series: Mapping[str, Sequence[tuple[int, float]]]) -> Figure:
    """Code-only deploy time against the number of web hosts, a line per series."""
    if not any(series.values()):
        raise ValueError("figure_hosts: no point to draw")
    fig = Figure(figsize=HOSTS_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, points in series.items():
        ax.plot([h for h, _ in points], [s for _, s in points], marker="o", label=name)
    hosts = sorted({h for points in series.values() for h, _ in points})
    ax.set_xticks(hosts)
    ax.set_xlabel("web hosts")
    ax.set_ylabel("fab deploy, code-only change (s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


def save(fig: Figure, path: Path) -> Path:
    """The figure as a PNG of exactly its size in pixels (no tight bounding box)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


RENEWAL_LABEL = "certbot renew --force-renewal (HTTPS)"
# Left to right, from the method with the least between the old code and the new to the most.
METHOD_ORDER = (
    "naive_restart", "gunicorn_reload", "dropstack_deploy", "dropstack_rollback",
    "dropstack_rollback_started",
)  # fmt: skip


def switch_timelines(zero_downtime: Mapping) -> dict[str, Timeline]:
    """The timelines in the zero-downtime section, by result key, in METHOD_ORDER."""
    return {
        key: Timeline.from_json(zero_downtime[key]["timeline"])
        for key in METHOD_ORDER
        if isinstance(zero_downtime.get(key), Mapping) and zero_downtime[key].get("timeline")
    }


def draw(doc: Mapping, out: Path = CHARTS) -> dict[str, str]:
    """Every chart the document has data for, as PNGs in ``out``; for each chart its path,
    or why it was not drawn."""
    drawn: dict[str, str] = {}
    zero = doc.get("zero_downtime") or {}
    timelines = switch_timelines(zero) if "error" not in zero else {}
    if timelines:
        labelled = {SWITCH_LABELS[key]: t for key, t in timelines.items()}
        drawn["switches"] = str(save(figure_switches(labelled), out / "switches.png"))
        for key, timeline in timelines.items():
            one = figure_switches({SWITCH_LABELS[key]: timeline})
            drawn[key] = str(save(one, out / f"switch-{key.replace('_', '-')}.png"))
    else:
        drawn["switches"] = "not drawn: " + zero.get("error", "no timelines in zero_downtime")
    renewal = doc.get("renewal") or {}
    if "error" not in renewal and renewal.get("timeline"):
        one = figure_switches({RENEWAL_LABEL: Timeline.from_json(renewal["timeline"])})
        drawn["renewal"] = str(save(one, out / "renewal.png"))
    else:
        drawn["renewal"] = "not drawn: " + renewal.get("error", "no timeline in renewal")
    multi = doc.get("multi_host") or {}
    series = host_series(multi) if "error" not in multi else {}
    if any(series.values()):
        drawn["hosts"] = str(save(figure_hosts(series), out / "deploy-by-hosts.png"))
    else:
        drawn["hosts"] = "not drawn: " + multi.get("error", "no deploy times in multi_host")
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.charts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "results", nargs="?", type=Path, default=REPO / "bench" / "results" / "latest.json"
    )
    parser.add_argument("--out", type=Path, default=CHARTS, help=f"default {CHARTS}")
    args = parser.parse_args(argv)
    drawn = draw(json.loads(args.results.read_text()), args.out)
    for name, where in drawn.items():
        print(f"charts: {name}: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
