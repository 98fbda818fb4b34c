"""A bounded prober: one request every ``interval`` seconds to the load balancer, recording
when each failed, so a test can measure the window in which clients saw errors."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from deploy.local.network import TEST_RANGE


@dataclass
class Probe:
    address: str
    path: str = "/healthz"
    interval: float = 0.1
    limit_seconds: float = 180  # it stops by itself, whatever the test does
    results: list[tuple[float, bool]] = field(default_factory=list)
    # With a domain: HTTPS to the address, the domain as SNI and Host, verified against cafile
    # (plain HTTP on a balancer with a certificate only redirects).
    domain: str | None = None
    cafile: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        assert ipaddress.ip_address(self.address) in ipaddress.ip_network(TEST_RANGE)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit_seconds
        while not self._stop.is_set() and time.monotonic() < end:
            started = time.monotonic()
            ok = False
            try:
                conn = self._connection()
                conn.request("GET", self.path, headers={"Host": self.domain or self.address})
                ok = conn.getresponse().status == 200
                conn.close()
            except (OSError, http.client.HTTPException):
                # A balancer switching backends may answer a malformed or cut-off response
                # (HTTPException, not OSError): a failed request, never the end of the probe.
                ok = False
            self.results.append((started, ok))
            self._stop.wait(self.interval)

    def _connection(self) -> http.client.HTTPConnection:
        if not self.domain:
            return http.client.HTTPConnection(self.address, 80, timeout=5)
        conn = http.client.HTTPSConnection(self.domain, 443, timeout=5)
        context = ssl.create_default_context(cafile=self.cafile)
        raw = socket.create_connection((self.address, 443), timeout=5)
        conn.sock = context.wrap_socket(raw, server_hostname=self.domain)
        return conn

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def failed(self) -> int:
        return sum(1 for _, ok in self.results if not ok)

    def error_window(self) -> float:
        """Seconds from the first failed request to the last one (0 with none)."""
        bad = [t for t, ok in self.results if not ok]
        return round(bad[-1] - bad[0], 1) if bad else 0.0

    def failed_since(self, moment: float) -> int:
        """Failed requests started at or after ``moment`` (time.monotonic())."""
        return sum(1 for t, ok in self.results if t >= moment and not ok)

    def ok_after_last_failure(self) -> int:
        """How many requests succeeded after the last failed one (all of them with none)."""
        count = 0
        for _, ok in reversed(self.results):
            if not ok:
                break
            count += 1
        return count

    def ok_since(self, seconds: float) -> bool:
        """Every request of the last ``seconds`` succeeded (and there were some)."""
        now = time.monotonic()
        recent = [ok for t, ok in self.results if t >= now - seconds]
        return bool(recent) and all(recent)
