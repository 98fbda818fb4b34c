"""What the benchmarks read from a `fab` run: the steps each host ran with their times and how
many provisioning steps changed something, from the run's JSON step log (deploy.steps.record),
and the release a deploy built, from its output. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

RELEASE = re.compile(r"^release (?P<name>\d{14}-[0-9a-f]{7,}(?:-dirty)?):", re.M)


@dataclass(frozen=True)
class Step:
    host: str
    name: str
    changed: bool
    seconds: float


def steps(log: Iterable[dict]) -> list[Step]:
    """The step log's entries that finished (changed or ok), in order."""
    return [
        Step(e["host"], e["step"], e["status"] == "changed", float(e["seconds"]))
        for e in log
        if e.get("status") in ("changed", "ok")
    ]


def release_built(out: str) -> str | None:
    """The release a deploy shipped: the last name it printed (a rename comes after)."""
    names = RELEASE.findall(out)
    return names[-1] if names else None


def provision_changes(log: Iterable[dict]) -> dict[str, int]:
    """Changed steps per host."""
    changed: dict[str, int] = {}
    for step in steps(log):
        changed[step.host] = changed.get(step.host, 0) + step.changed
    return changed


# The steps of deploy.release.host.Switch.steps: from freeing the idle slot (or reusing it
# warm) to retiring the old slot (stopped once Nginx has drained from it, kept warm, or handed
# to the host to drain and stop: a rollback).
SWITCH_STEPS = (
    "stop idle slot", "reuse warm slot", "point slot", "database migrations", "start slot",
    "health gate", "route nginx", "switch current", "enable slot", "stop old slot",
    "keep old slot", "retire old slot",
)  # fmt: skip


def switch_seconds(log: Iterable[dict]) -> dict[str, float]:
    """Per host, the seconds of the switch itself (the idle slot started, checked, routed to,
    the old one drained and stopped), without building, uploading and unpacking."""
    totals: dict[str, float] = {}
    for step in steps(log):
        if step.name.startswith(SWITCH_STEPS):
            totals[step.host] = totals.get(step.host, 0.0) + step.seconds
    # To the hundredth: a switch into a warm slot takes a few tenths (the step log has ms).
    return {host: round(total, 2) for host, total in totals.items()}


def reused_warm_slot(log: Iterable[dict]) -> bool:
    """Whether a rollback found its release still running in the slot a switch kept warm (the
    step is ``ok``: nothing started); ``changed`` means the window had ended and it started."""
    return any(s.name.startswith("reuse warm slot") and not s.changed for s in steps(log))


def image_built(out: str) -> bool:
    """Whether `fab local.up` had to build a root filesystem image (a cold cache)."""
    return bool(re.search(r"^local: building the \w+ image", out, re.M))
