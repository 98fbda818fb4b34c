"""wrk command lines and what bench/ reads back from them; nothing here runs anything.

Every run carries one of the Lua scripts beside this file, which print JSON lines (``WRK_*``)
that ``parse_output`` reads: wrk's own totals and latency percentiles (summary.lua), the release
tests' per-request counts (tests/release/load.lua, through switch_load.lua), and the time of the
first and last failed response.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from deploy.local.network import TEST_RANGE

HERE = Path(__file__).resolve().parent
SWITCH_SCRIPT = HERE / "switch_load.lua"
THROUGHPUT_SCRIPT = HERE / "throughput.lua"
# The only places load may go: the project's own test hosts (RFC 2544 range) and loopback.
TEST_NET = ipaddress.ip_network(TEST_RANGE)
# switch_load.lua connects to this address instead of resolving the URL's host, so a URL can
# name a domain (wrk's SNI and Host come from the URL) that nothing resolves on this machine.
CONNECT_ENV = "DROPSTACK_WRK_CONNECT"
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


class TargetNotAllowed(ValueError):
    """A load target outside the project's test hosts and loopback."""


def check_target(url: str) -> str:
    """``url`` unchanged if its host is a literal address in 198.18.0.0/15 or loopback."""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise TargetNotAllowed(
            f"{url}: load goes to literal addresses only, not {host!r}"
        ) from None
    if address not in TEST_NET and not address.is_loopback:
        raise TargetNotAllowed(f"{url}: {address} is neither a test host ({TEST_NET}) nor loopback")
    return url


def wrk_command(
    url: str,
    *,
    threads: int,
    connections: int,
    seconds: int,
    script: Path,
    script_args: tuple[str, ...] = (),
    timeout_seconds: int = 5,
    netns: str | None = None,
    connect: str | None = None,
) -> list[str]:
    """wrk bounded by ``seconds`` (the script bounds the requests), optionally run inside a
    network namespace (``ip netns exec``) to load a host from its own loopback.

    With ``connect`` (a literal address, checked like a URL's host) the URL may name a domain:
    wrk sends it as SNI and Host while switch_load.lua connects to ``connect`` only, which is
    how the site is reached over HTTPS without DNS or /etc/hosts."""
    if connect is None:
        check_target(url)
    else:
        parts = urlsplit(url)
        check_target(f"{parts.scheme}://{f'[{connect}]' if ':' in connect else connect}/")
        if script != SWITCH_SCRIPT:
            raise ValueError(f"wrk: only {SWITCH_SCRIPT.name} connects to a given address")
    if seconds < 1 or connections < threads or threads < 1:
        raise ValueError(f"wrk: {threads} threads, {connections} connections, {seconds}s")
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
        "--timeout", f"{timeout_seconds}s", "-s", str(script), url,
    ]  # fmt: skip
    if script_args:
        command += ["--", *script_args]
    if connect is not None:
        command = ["env", f"{CONNECT_ENV}={connect}", *command]
    return ["ip", "netns", "exec", netns, *command] if netns else command


@dataclass(frozen=True)
class Figures:
    """One wrk run, as bench/ reports it. Latencies in milliseconds."""

    requests: int
    seconds: float
    connect: int
    read: int
    write: int
    timeout: int
    status_over_399: int
    latency_ms: dict[str, float]
    non2xx: int | None = None  # counted per response by load.lua (switch runs only)
    statuses: dict[str, int] = field(default_factory=dict)
    releases: dict[str, int] = field(default_factory=dict)
    failing_window: tuple[int, int] | None = None  # epoch seconds of first and last non-2xx

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx: error responses plus socket errors."""
        bad = self.non2xx if self.non2xx is not None else self.status_over_399
        return bad + self.socket_errors

    @property
    def rate(self) -> float:
        return round(self.requests / self.seconds, 1) if self.seconds else 0.0

    def to_json(self) -> dict:
        data = asdict(self)
        data["failing_window"] = list(self.failing_window) if self.failing_window else None
        return {**data, "socket_errors": self.socket_errors, "failed": self.failed,
                "requests_per_second": self.rate}  # fmt: skip


def _tagged(text: str, tag: str) -> dict | None:
    prefix = tag + " "
    line = next((x for x in text.splitlines() if x.startswith(prefix)), None)
    return json.loads(line.removeprefix(prefix)) if line else None


def parse_output(text: str) -> Figures:
    """A wrk run's figures from its ``WRK_*`` lines; a ValueError when the summary is missing
    (wrk died or was killed before printing it)."""
    summary = _tagged(text, "WRK_SUMMARY")
    if summary is None:
        tail = " | ".join(text.strip().splitlines()[-3:]) or "no output"
        raise ValueError(f"wrk printed no WRK_SUMMARY line: {tail}")
    result = _tagged(text, "WRK_RESULT") or {}
    failing = _tagged(text, "WRK_FAILING") or {}
    window = (failing["first"], failing["last"]) if failing.get("first") else None
    lat = summary["latency_us"]
    return Figures(
        requests=summary["requests"],
        seconds=round(summary["duration_us"] / 1e6, 2),
        connect=summary["connect"],
        read=summary["read"],
        write=summary["write"],
        timeout=summary["timeout"],
        status_over_399=summary["status_over_399"],
        latency_ms={k: round(lat[k] / 1000, 2) for k in ("mean", "p50", "p90", "p99", "max")},
        non2xx=result.get("non2xx"),
        statuses=result.get("status", {}),
        releases=result.get("releases", {}),
        failing_window=window,
    )


def combined(runs: dict[str, Figures]) -> dict:
    """Totals over concurrent runs (the keep-alive and the connection-per-request clients)."""
    figures = list(runs.values())
    return {
        "requests": sum(f.requests for f in figures),
        "failed": sum(f.failed for f in figures),
        "non2xx": sum((f.non2xx if f.non2xx is not None else f.status_over_399) for f in figures),
        "socket_errors": sum(f.socket_errors for f in figures),
    }
