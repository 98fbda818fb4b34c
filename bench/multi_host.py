"""Benchmark 4: code-only deploy time against the number of web hosts, one host at a time and
with ``--batch`` (issue 18: "the cost of each further host is at most about 1 s with batching").

For each host count in HOST_COUNTS, one fresh local droplet (`fab local.up --web-count N`; a
load balancer comes with two or more), provisioned once (hosts in parallel) and given a first
release (with ``--batch``, the quickest way to a serving stack; not part of the curve); then
``--runs`` code-only deploys rolling one host at a time (`fab deploy`: web-1 alone first, the
canary that runs the migrations, then each other host), and as many with ``--batch N-1`` (web-1
alone, then the rest at once). With one host there is nothing to batch: its deploys are both
lines' first point. A single-host stack the earlier benchmarks left serving is reused for N = 1.
The curve is the median of each; what each further host costs is the least-squares slope.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from bench import fab_output
from bench.deploy_times import bring_up, deploy_runs
from bench.drive import BenchFailed, Source, fab, note
from bench.stats import slope, timing

HOST_COUNTS = (1, 3, 5)
MODES = ("rolling", "batch")  # one host at a time; the first alone, then the rest at once


def batch_size(hosts: int, mode: str) -> int:
    """``fab deploy --batch``'s value: the hosts switched at once after the first."""
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    return max(hosts - 1, 1) if mode == "batch" else 1


def deploy_args(hosts: int, mode: str) -> list[str]:
    """`fab deploy`'s options for ``mode`` on ``hosts`` hosts (none for one at a time)."""
    size = batch_size(hosts, mode)
    return ["--batch", str(size)] if size > 1 else []


def modes_for(hosts: int) -> tuple[str, ...]:
    """The modes worth measuring: with fewer than three hosts ``--batch N-1`` is 1, the same
    deploy as one at a time."""
    return MODES if batch_size(hosts, "batch") > 1 else ("rolling",)


def curve_points(stacks: Mapping[str, Mapping]) -> list[dict]:
    """The chart's points from the per-count results (keys: the host count as a string): for
    each count and mode its median, the runs and the ``--batch`` value. A count measured one way
    only (one host) gives that point to both lines; a count that failed gives none."""
    points = []
    for key in sorted(stacks, key=int):
        stack, hosts = stacks[key], int(key)
        for mode in MODES:
            measured_as = mode if mode in modes_for(hosts) else "rolling"
            entry = stack.get(measured_as)
            if not isinstance(entry, Mapping) or "median" not in entry:
                continue
            points.append({
                "hosts": hosts, "mode": mode, "batch": batch_size(hosts, measured_as),
                "median": entry["median"], "runs": list(entry["runs"]),
            })  # fmt: skip
    return points


def per_extra_host(points: list[dict]) -> dict[str, float | None]:
    """Seconds each further host adds, per mode: the least-squares slope of median against
    host count (None with fewer than two counts)."""
    return {
        mode: slope([(p["hosts"], p["median"]) for p in points if p["mode"] == mode])
        for mode in MODES
    }


def measure_stack(source: Source, runs: int, hosts: int, reuse: bool) -> dict:
    stack: dict = {}
    if reuse:
        note(f"{hosts} host: reusing the single-host stack the earlier benchmarks left serving")
        stack["reused_stack"] = True
    else:
        stack["local_up"] = bring_up(hosts)
        note(f"local.up --web-count {hosts}: {stack['local_up']['median']} s")
        first = fab("provision")
        stack["provision_first"] = {
            **timing([first.seconds]),
            "changed": fab_output.provision_changes(first.steps),
        }
        note(f"provision ({hosts} hosts): {first.seconds:.1f} s")
        stack["deploy_first"] = deploy_runs(
            source, f"first deploy, {hosts} hosts", 1, *deploy_args(hosts, "batch"), change=False
        )
    for mode in modes_for(hosts):
        stack[mode] = deploy_runs(
            source, f"code change, {hosts} hosts, {mode}", runs, *deploy_args(hosts, mode),
            change=True,
        )  # fmt: skip
    return stack


def run(source: Source, runs: int, single_host_serving: bool = False) -> dict:
    """Every host count in turn, each on its own stack; a count that fails is recorded with why
    and the next one still runs. Leaves the largest stack up."""
    stacks: dict[str, dict] = {}
    for hosts in HOST_COUNTS:
        began = time.monotonic()
        try:
            stacks[str(hosts)] = measure_stack(
                source, runs, hosts, reuse=single_host_serving and hosts == 1
            )
        except Exception as exc:  # the other counts still give a curve
            reason = str(exc) if isinstance(exc, BenchFailed) else f"{type(exc).__name__}: {exc}"
            note(f"{hosts} hosts FAILED: {reason}")
            stacks[str(hosts)] = {"error": reason}
        stacks[str(hosts)]["seconds"] = round(time.monotonic() - began)
    if all("error" in stack for stack in stacks.values()):
        raise BenchFailed("; ".join(f"{n} hosts: {s['error']}" for n, s in stacks.items()))
    points = curve_points(stacks)
    return {
        "host_counts": list(HOST_COUNTS),
        "stacks": stacks,
        "curve": points,
        "per_extra_host": per_extra_host(points),
    }
