"""What the benchmarks read from `fab` output: the steps each host ran with their times, the
release a deploy built, and how many provisioning steps changed something. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

# deploy.steps.HostLog prints "[web-1] route nginx to green        changed    0.4s".
STEP = re.compile(
    r"^\[(?P<host>[\w.-]+)\] (?P<name>\S.*?)\s+(?P<status>changed|ok)\s+(?P<seconds>\d+\.\d+)s$",
    re.M,
)
RELEASE = re.compile(r"^release (?P<name>\d{14}-[0-9a-f]{7,}(?:-dirty)?):", re.M)
# deploy.steps.HostLog.summary(): "web-1: 23 steps, 0 changed".
PROVISION_SUMMARY = re.compile(
    r"^(?P<host>[\w.-]+): (?P<steps>\d+) steps, (?P<changed>\d+) changed$", re.M
)


@dataclass(frozen=True)
class Step:
    host: str
    name: str
    changed: bool
    seconds: float


def steps(out: str) -> list[Step]:
    return [
        Step(m["host"], m["name"], m["status"] == "changed", float(m["seconds"]))
        for m in STEP.finditer(out)
    ]


def release_built(out: str) -> str | None:
    match = RELEASE.search(out)
    return match["name"] if match else None


def provision_changes(out: str) -> dict[str, int]:
    """Changed steps per host, from provisioning's closing summary lines."""
    return {m["host"]: int(m["changed"]) for m in PROVISION_SUMMARY.finditer(out)}


# The steps of deploy.release.host.Switch.go_live: from pointing the idle slot at the release
# to stopping the old slot once Nginx has drained from it.
SWITCH_STEPS = (
    "point slot", "database migrations", "start slot", "health gate", "route nginx",
    "switch current", "enable slot", "stop old slot",
)  # fmt: skip


def switch_seconds(out: str) -> dict[str, float]:
    """Per host, the seconds of the switch itself (the idle slot started, checked, routed to,
    the old one drained and stopped), without building, uploading and unpacking."""
    totals: dict[str, float] = {}
    for step in steps(out):
        if step.name.startswith(SWITCH_STEPS):
            totals[step.host] = round(totals.get(step.host, 0.0) + step.seconds, 1)
    return totals


def image_built(out: str) -> bool:
    """Whether `fab local.up` had to build a root filesystem image (a cold cache)."""
    return bool(re.search(r"^local: building the \w+ image", out, re.M))
