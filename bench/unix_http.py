"""HTTP over a unix socket, the way Nginx reaches a slot's Gunicorn on the hosts: one
``http.client`` connection class for the benchmarks and the tests that talk to Gunicorn
directly."""

from __future__ import annotations

import http.client
import os
import socket


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str | os.PathLike, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(socket_path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)
