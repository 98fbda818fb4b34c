"""A throwaway Redis server for tests, like tests/postgres_cluster.py for PostgreSQL.

    with RedisServer() as redis:
        url = redis.url                    # unix:///tmp/dropstack-redis-.../redis.sock

It listens on a unix socket in a fresh temporary directory only (``port 0``: no TCP at all),
keeps nothing on disk, and is stopped and deleted when the ``with`` block ends.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis


class RedisNotInstalled(RuntimeError):
    """No redis-server on this machine."""


class RedisServer:
    def __init__(self) -> None:
        self.program = shutil.which("redis-server")
        if not self.program:
            raise RedisNotInstalled("redis-server not found: install redis-server (bin/setup)")
        self.base: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        assert self.base is not None
        return self.base / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def __enter__(self) -> RedisServer:
        self.base = Path(tempfile.mkdtemp(prefix="dropstack-redis-"))
        self.process = subprocess.Popen(
            [
                self.program, "--port", "0", "--unixsocket", str(self.socket),
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                "--dir", str(self.base), "--daemonize", "no", "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.process.stderr.read().decode()}")
            if self.socket.exists():
                try:
                    Redis(unix_socket_path=str(self.socket)).ping()
                    return self
                except Exception:  # noqa: S110 (not accepting yet; retried until the deadline)
                    pass
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError("redis-server did not answer within 10 s")

    def __exit__(self, *_exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
