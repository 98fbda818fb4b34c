"""SYNTHETIC TEST DATA, made up for the unit tests of bench/timeline.py and bench/charts.py.

Nothing here was measured and none of it may appear in the docs: it only has the shape of what
bench/switch_load.lua writes (one line per request, ``<epoch ms> <status> <latency us>``), so
the parsing, bucketing and drawing can be checked against numbers known in advance.
"""

from __future__ import annotations

import random

from bench.timeline import Request

START = 1_800_000_000.0  # epoch seconds the synthetic load starts at


def steady_requests(
    seconds: float, per_second: int, outage: tuple[float, float] | None = None, seed: int = 18
) -> list[Request]:
    """``per_second`` requests a second, evenly spaced, from START for ``seconds``; latencies
    of 2 to 4 ms; inside ``outage`` (seconds from START) every request is a fast 503 and every
    tenth gets no response at all (status 0)."""
    rng = random.Random(seed)
    requests = []
    for i in range(int(seconds * per_second)):
        at = START + i / per_second
        offset = at - START
        if outage and outage[0] <= offset < outage[1]:
            status, latency_ms = (0, 5.0) if i % 10 == 0 else (503, 0.5)
        else:
            status, latency_ms = 200, rng.uniform(2.0, 4.0)
        requests.append(Request(round(at * 1000), status, round(latency_ms, 3)))
    return requests


def log_text(requests: list[Request]) -> str:
    """The requests as switch_load.lua writes them."""
    return "".join(f"{r.at_ms} {r.status} {round(r.latency_ms * 1000)}\n" for r in requests)
