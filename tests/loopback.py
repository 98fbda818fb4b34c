"""Helpers for tests that run real servers on loopback (Nginx, pebble, sshd)."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest


def wait_for_port(
    port: int, process: subprocess.Popen, what: str = "nginx", seconds: float = 10
) -> None:
    """Until something listens on 127.0.0.1:port; fails the test if the process exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {seconds}s")
