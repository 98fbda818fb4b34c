"""``python -m bench``: run the benchmarks on the local droplet, print the table, write the JSON.

bin/bench is the way in (it installs what is needed, becomes root and always ends with
`fab local.down`). The benchmarks run in order on a stack they bring up themselves: deploy
timings (one host), zero downtime and throughput (on that host), multi-host (deploy time on 1, 3
and 5 hosts, reusing that single host when it is serving), then a certificate renewal under
HTTPS load on a one-host stack with a domain. A benchmark that fails is recorded as not
measured, with why, and the next one still runs. The charts (bench/charts.py) are drawn from
the result JSON once it is written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import charts, deploy_times, multi_host, renewal, report, throughput, zero_downtime
from bench.drive import LOG, REPO, BenchFailed, Source, fab, note, temporary_workdir, wrk_version

RESULTS = REPO / "bench" / "results"
# Sections that take the stack down and bring up another shape: after them the single-host
# stack the others share has to be brought up again.
REPLACE_THE_STACK = ("multi_host", "renewal")


def revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    head = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return head + ("-dirty" if dirty else "")


def machine() -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version(),
    }


def single_host_ready(source: Source) -> None:
    """For a run without the deploy timings: a provisioned host serving a release, with one
    good release before it (the zero-downtime benchmark rolls back to it)."""
    deploy_times.bring_up()
    fab("provision")
    fab("deploy", source=source)
    fab("deploy", source=source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only", default=",".join(report.SECTIONS),
        help=f"comma-separated benchmarks to run (default all: {','.join(report.SECTIONS)})",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="repeats of the cheap deploys")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--charts", type=Path, default=charts.CHARTS,
        help="where the PNG charts go (default the docs' images, so they are committed)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(report.SECTIONS))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; known: {', '.join(report.SECTIONS)}")
    if os.geteuid() != 0:
        parser.error("the local droplet needs root: run bin/bench")

    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text("")
    started = time.monotonic()
    measured_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sections: dict = {}
    with temporary_workdir() as work:
        source = Source.create(Path(work))
        steps = {
            "deploy_timings": lambda: deploy_times.run(source, args.runs),
            "zero_downtime": lambda: zero_downtime.run(source),
            "throughput": throughput.run,
            "multi_host": lambda: multi_host.run(source, args.runs, single_ready),
            "renewal": lambda: renewal.run(source),
        }
        single_ready = False
        for name in report.SECTIONS:
            if name not in chosen:
                continue
            note(f"==> {name}")
            began = time.monotonic()
            try:
                if name in ("zero_downtime", "throughput") and not single_ready:
                    single_host_ready(source)
                    single_ready = True
                sections[name] = steps[name]()
                single_ready = (single_ready or name == "deploy_timings") and (
                    name not in REPLACE_THE_STACK
                )
            except Exception as exc:  # recorded as not measured; the next benchmark runs
                reason = (
                    str(exc) if isinstance(exc, BenchFailed) else f"{type(exc).__name__}: {exc}"
                )
                note(f"{name} FAILED: {reason}")
                sections[name] = {"error": reason}
                single_ready = False
            sections[name] = {
                **sections[name],
                "benchmark_seconds": round(time.monotonic() - began),
            }
        note("==> fab local.down")
        fab("local.down")

    doc = report.document(measured_at, machine(), revision(), sections)
    doc["total_seconds"] = round(time.monotonic() - started)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = measured_at.replace(":", "").replace("-", "")
    (args.results / f"{stamp}.json").write_text(json.dumps(doc, indent=2) + "\n")
    # latest.json: with --only, the sections not run keep their figures from the last result.
    latest = args.results / "latest.json"
    ran = [name for name in report.SECTIONS if name in chosen]
    if len(ran) < len(report.SECTIONS) and latest.exists():
        doc = report.merge(json.loads(latest.read_text()), doc, ran)
    latest.write_text(json.dumps(doc, indent=2) + "\n")
    try:
        drawn = charts.draw(doc, args.charts)
    except Exception as exc:  # the figures are written already; a chart must not hide the table
        drawn = {"charts": f"not drawn: {type(exc).__name__}: {exc}"}
    rows = report.table_rows(doc)
    print()
    print(report.render_text(rows))
    print()
    for name, where in drawn.items():
        print(f"bench: chart {name}: {where}")
    print(f"\nbench: {doc['total_seconds']} s in all; results in {args.results}/latest.json "
          f"and {stamp}.json; full output in {LOG}")  # fmt: skip
    return 1 if any("error" in doc[name] for name in chosen) else 0


if __name__ == "__main__":
    sys.exit(main())
