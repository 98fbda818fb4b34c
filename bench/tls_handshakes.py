"""TLS handshakes and kept-alive requests per second against one HTTPS server, from Python's
``ssl`` (openssl s_time sends no SNI, and the site refuses handshakes without its name).

Used on loopback to price per-handshake certificate loading (docs/tls.md, "Renewal"): full
handshakes (a fresh session each time), resumed ones (the session cache, TLS 1.2 session IDs),
and requests on one kept-alive connection. Bounded in time; loopback or test hosts only.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass

from bench.wrk import TEST_NET


@dataclass(frozen=True)
class Target:
    address: str  # a literal loopback or test-host address
    port: int
    server_name: str  # SNI and Host
    cafile: str  # the CA the certificate chains to, given explicitly

    def __post_init__(self) -> None:
        address = ipaddress.ip_address(self.address)
        if not (address.is_loopback or address in TEST_NET):
            raise ValueError(f"{self.address}: neither loopback nor a test host")

    def context(self, version: ssl.TLSVersion) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        context.minimum_version = context.maximum_version = version
        return context

    def connect(self, context: ssl.SSLContext, session=None) -> ssl.SSLSocket:
        raw = socket.create_connection((self.address, self.port), timeout=5)
        return context.wrap_socket(raw, server_hostname=self.server_name, session=session)


def handshakes_per_second(target: Target, version: ssl.TLSVersion, resume: bool,
                          seconds: float = 3.0) -> tuple[float, float]:  # fmt: skip
    """Handshakes per second and the share that resumed a session. ``resume``: offer the
    first connection's session each time (TLS 1.2: Nginx's session cache, tickets are off)."""
    context = target.context(version)
    with target.connect(context) as first:
        session = first.session if resume else None
    count = resumed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with target.connect(context, session) as conn:
            resumed += conn.session_reused
        count += 1
    return count / seconds, resumed / max(count, 1)


def keepalive_requests_per_second(target: Target, path: str, seconds: float = 3.0) -> float:
    """GET ``path`` over kept-alive HTTPS connections, as fast as answers come (a new one
    only when Nginx closes one after its keepalive_requests, 1000 by default)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {target.server_name}\r\n\r\n".encode()
    context = target.context(ssl.TLSVersion.TLSv1_3)
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with target.connect(context) as conn, conn.makefile("rb") as reader:
            while time.monotonic() < deadline:
                conn.sendall(request)
                status = reader.readline()
                length, close = 0, False
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    close |= name.lower() == b"connection" and value.strip() == b"close"
                reader.read(length)
                count += bool(status)
                if close or not status:
                    break
    return count / seconds


def measure(target: Target, path: str = "/static/none", seconds: float = 3.0) -> dict[str, float]:
    tls12, tls13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    full12, _ = handshakes_per_second(target, tls12, False, seconds)
    full13, _ = handshakes_per_second(target, tls13, False, seconds)
    resumed12, share = handshakes_per_second(target, tls12, True, seconds)
    return {
        "full_tls12_per_s": round(full12),
        "full_tls13_per_s": round(full13),
        "resumed_tls12_per_s": round(resumed12),
        "resumed_share": round(share, 3),
        "keepalive_requests_per_s": round(keepalive_requests_per_second(target, path, seconds)),
    }
