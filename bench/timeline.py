"""What happened to the load, second by second, while a release switched; pure functions.

bench/switch_load.lua writes one line per request (``<epoch ms> <status> <latency us>``, status
0 for a request that got no response); ``parse_request_log`` reads it, ``build`` cuts the
requests of both clients into fixed buckets on a time axis whose zero is the moment the
method's command started (``fab deploy``, ``systemctl reload``, the naive stop and start), with
that command's own start and end, and the switch inside it where the step log says where it
was, marked on the same axis. bench/charts.py draws it; the result JSON keeps it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.fab_output import SWITCH_STEPS

BUCKET_SECONDS = 0.5  # fine enough for a switch of a few seconds, about 130 requests a bucket


@dataclass(frozen=True)
class Request:
    """One request of the load: when it ended (epoch ms), its status (0: no response)."""

    at_ms: int
    status: int
    latency_ms: float

    @property
    def failed(self) -> bool:
        return not 200 <= self.status <= 299


def parse_request_log(text: str) -> list[Request]:
    """The lines of one wrk run's request log, in file order."""
    requests = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            raise ValueError(f"request log line {number}: {line!r} is not '<ms> <status> <us>'")
        at, status, latency = (int(f) for f in fields)
        requests.append(Request(at, status, latency / 1000))
    return requests


def p99(latencies: Sequence[float]) -> float | None:
    """The nearest-rank 99th percentile (what at least 99% of the values are at or under)."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[max(math.ceil(0.99 * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class Timeline:
    """Per-bucket figures of the load around one method's command. Times are seconds from the
    command's start; a bucket is ``[t, t + bucket_seconds)``. ``p99_ms`` is None for a bucket
    in which nothing answered (every request failed without a response)."""

    bucket_seconds: float
    t: tuple[float, ...]
    requests_per_second: tuple[float, ...]
    errors_per_second: tuple[float, ...]
    p99_ms: tuple[float | None, ...]
    command: tuple[float, float]
    switch: tuple[float, float] | None = None

    def to_json(self) -> dict:
        return {
            "bucket_seconds": self.bucket_seconds,
            "t": list(self.t),
            "requests_per_second": list(self.requests_per_second),
            "errors_per_second": list(self.errors_per_second),
            "p99_ms": list(self.p99_ms),
            "command": list(self.command),
            "switch": list(self.switch) if self.switch else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> Timeline:
        lengths = {len(data[k]) for k in ("t", "requests_per_second", "errors_per_second",
                                          "p99_ms")}  # fmt: skip
        if len(lengths) != 1:
            raise ValueError(f"timeline: series of different lengths {sorted(lengths)}")
        switch = data.get("switch")
        return cls(
            bucket_seconds=float(data["bucket_seconds"]),
            t=tuple(data["t"]),
            requests_per_second=tuple(data["requests_per_second"]),
            errors_per_second=tuple(data["errors_per_second"]),
            p99_ms=tuple(data["p99_ms"]),
            command=(data["command"][0], data["command"][1]),
            switch=(switch[0], switch[1]) if switch else None,
        )


def build(
    requests: Iterable[Request],
    command: tuple[float, float],
    load: tuple[float, float],
    switch: tuple[float, float] | None = None,
    bucket_seconds: float = BUCKET_SECONDS,
) -> Timeline:
    """The requests that ended while the load ran (``load``: epoch seconds it started and was
    stopped), in buckets aligned on the command's start (``command``: epoch seconds). Only
    buckets that lie wholly inside the load are kept, so none is half empty for lack of load."""
    if bucket_seconds <= 0:
        raise ValueError(f"bucket_seconds: {bucket_seconds} is not allowed; above zero only")
    zero = command[0]
    first = math.ceil(round((load[0] - zero) / bucket_seconds, 6))
    last = math.floor(round((load[1] - zero) / bucket_seconds, 6))  # exclusive
    buckets: dict[int, list[Request]] = {k: [] for k in range(first, last)}
    for request in requests:
        k = math.floor((request.at_ms / 1000 - zero) / bucket_seconds)
        if k in buckets:
            buckets[k].append(request)
    keys = sorted(buckets)

    def rate(count: int) -> float:
        return round(count / bucket_seconds, 1)

    def rel(span: tuple[float, float]) -> tuple[float, float]:
        return (round(span[0] - zero, 3), round(span[1] - zero, 3))

    return Timeline(
        bucket_seconds=bucket_seconds,
        t=tuple(round(k * bucket_seconds, 3) for k in keys),
        requests_per_second=tuple(rate(len(buckets[k])) for k in keys),
        errors_per_second=tuple(rate(sum(r.failed for r in buckets[k])) for k in keys),
        p99_ms=tuple(p99([r.latency_ms for r in buckets[k] if r.status]) for k in keys),
        command=rel(command),
        switch=rel(switch) if switch else None,
    )


def during(requests: Iterable[Request], span: tuple[float, float]) -> dict:
    """Totals of the requests that ended inside ``span`` (epoch seconds): what a reader wants
    of the command itself, without the steady seconds of load before and after it."""
    inside = [r for r in requests if span[0] <= r.at_ms / 1000 < span[1]]
    answered = [r.latency_ms for r in inside if r.status]
    return {
        "requests": len(inside),
        "failed": sum(r.failed for r in inside),
        "no_response": sum(not r.status for r in inside),
        "p99_ms": p99(answered),
    }


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def switch_window(log: Iterable[dict]) -> tuple[float, float] | None:
    """Epoch seconds from the start of the first switch step (pointing the idle slot at the
    release) to the end of the last (stopping the old slot), over every host of a deploy or
    rollback's step log; None if it has none. A step's entry is written when it ends."""
    spans = [
        (_epoch(e["time"]) - float(e["seconds"]), _epoch(e["time"]))
        for e in log
        if str(e.get("step", "")).startswith(SWITCH_STEPS) and "time" in e
    ]
    if not spans:
        return None
    return (min(s for s, _ in spans), max(e for _, e in spans))
