"""Putting bounded wrk load on a web host: a steady background load while something switches
releases, and closed-loop runs for throughput. Every run is bounded by wrk's ``-d``, a request
cap in its Lua script and a timeout here, and goes only to a test host or loopback."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.timeline import Request, parse_request_log
from bench.wrk import SWITCH_SCRIPT, THROUGHPUT_SCRIPT, Figures, parse_output, wrk_command

# The background load: two clients of four connections each, like the release tests: "keepalive"
# reuses connections (a browser, a load balancer), "close" opens one per request. One thread per
# connection: switch_load.lua's per-request log needs it (it pairs request() with response()).
CLIENT_KINDS = ("keepalive", "close")
CONNECTIONS_PER_CLIENT = 4
PAUSE_MS = 25  # per connection between requests: at most 8 x 40 = 320 requests/s in all
SETTLE_SECONDS = 2.0  # steady load before the change starts and after it ends


@dataclass
class SwitchLoad:
    """Filled in when the ``steady_load`` block ends: each client's wrk figures, every request
    of both clients (from their logs), and the wall-clock span the load ran (epoch seconds)."""

    clients: dict[str, Figures] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    span: tuple[float, float] = (0.0, 0.0)


def request_cap(max_seconds: int) -> int:
    """Requests per thread (one connection): what its pauses allow in ``max_seconds``, a bound
    that holds even if something made wrk ignore -d."""
    return max_seconds * 1000 // PAUSE_MS


def switch_load_command(
    base_url: str, kind: str, max_seconds: int, log: Path, connect: str | None = None
) -> list[str]:
    """One client of the steady load; with ``connect``, ``base_url`` may name the site's
    domain (SNI and Host) while wrk connects to that address (bench/wrk.py)."""
    return wrk_command(
        base_url,
        threads=CONNECTIONS_PER_CLIENT,
        connections=CONNECTIONS_PER_CLIENT,
        seconds=max_seconds,
        script=SWITCH_SCRIPT,
        script_args=(kind, str(PAUSE_MS), str(request_cap(max_seconds)), str(log)),
        connect=connect,
    )


@contextmanager
def steady_load(
    base_url: str, max_seconds: int = 240, connect: str | None = None
) -> Iterator[SwitchLoad]:
    """Both clients for the length of the block (SIGINT ends them; ``max_seconds`` at most).

    The figures are read when the block ends normally; on an error wrk is only stopped."""
    with tempfile.TemporaryDirectory(prefix="dropstack-bench-load-") as tmp:
        logs = {kind: Path(tmp) / f"{kind}.log" for kind in CLIENT_KINDS}
        started = time.time()
        procs = {
            kind: subprocess.Popen(
                switch_load_command(base_url, kind, max_seconds, logs[kind], connect),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for kind in CLIENT_KINDS
        }
        load = SwitchLoad()
        try:
            time.sleep(SETTLE_SECONDS)
            yield load
            time.sleep(SETTLE_SECONDS)
        finally:
            stopped = time.time()
            outputs = {kind: _stop(proc) for kind, proc in procs.items()}
        load.clients = {kind: parse_output(out) for kind, out in outputs.items()}
        for kind, log in logs.items():
            if not log.exists():
                raise ValueError(f"wrk ({kind}) wrote no request log: {outputs[kind][-200:]}")
            load.requests += parse_request_log(log.read_text())
        load.requests.sort(key=lambda r: r.at_ms)
        load.span = (started, stopped)


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # wrk stops and prints its summary
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def closed_loop(
    url: str, seconds: int, threads: int, connections: int, netns: str | None = None
) -> Figures:
    """wrk flat out for ``seconds`` (capped at 20,000 responses a second per thread)."""
    command = wrk_command(
        url, threads=threads, connections=connections, seconds=seconds,
        script=THROUGHPUT_SCRIPT, script_args=(str(seconds * 20_000),), netns=netns,
    )  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    return parse_output(done.stdout + done.stderr)
