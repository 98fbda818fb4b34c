"""Helpers of the release host tests: run the release tasks as an operator would, read the
hosts, and put bounded load on Nginx."""

from __future__ import annotations

import ipaddress
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.local.network import TEST_RANGE

REPO = Path(__file__).resolve().parents[2]
LOCAL_TEST_NET = ipaddress.ip_network(TEST_RANGE)
LOAD_SCRIPT = Path(__file__).with_name("load.lua")


def on_host(c, command: str) -> str:
    return c.run(command, hide=True, in_stream=False, warn=True).stdout


def http_get(address: str, path: str, timeout: float = 5) -> tuple[int, dict]:
    """GET through Nginx, never through a proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}{path}", timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def serving_release(address: str) -> str:
    status, body = http_get(address, "/healthz")
    assert status == 200, body
    return body["release"]


@dataclass
class Source:
    """A clone of this repository that tests commit to; releases are built from it."""

    path: Path
    config: Path

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, message: str, files: dict[str, str]) -> str:
        for name, content in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(content)
        self.git("add", *files)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def reset(self, revision: str) -> None:
        self.git("reset", "-q", "--hard", revision)

    def read(self, name: str) -> str:
        return (self.path / name).read_text()


@dataclass
class Run:
    code: int
    out: str
    seconds: float


def fab_command(src: Source, *args: str) -> list[str]:
    return [sys.executable, "-m", "deploy.release", "-f", str(src.config), *args]


def fab(src: Source, *args: str, timeout: float = 300) -> Run:
    started = time.monotonic()
    done = subprocess.run(
        fab_command(src, *args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = done.stdout + done.stderr
    print(out)
    return Run(done.returncode, out, time.monotonic() - started)


def fab_background(src: Source, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        fab_command(src, *args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    proc.consumed = ""  # what read_until has read so far
    return proc


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    """Read a background run's output until a line contains ``marker``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        proc.consumed += line
        if marker in line:
            return proc.consumed
    proc.kill()
    raise AssertionError(f"{marker!r} never appeared in:\n{proc.consumed}")


def finish(proc: subprocess.Popen, timeout: float = 120) -> Run:
    started = time.monotonic()
    out, _ = proc.communicate(timeout=timeout)
    out = proc.consumed + out
    print(out)
    return Run(proc.returncode, out, time.monotonic() - started)


@dataclass
class Load:
    """wrk's results per client kind: "close" opens a connection per request, "keepalive"
    reuses connections like a browser or a load balancer."""

    results: dict[str, dict] | None = None


@contextmanager
def steady_load(address: str, seconds: int, connections: int = 4, domain: str | None = None,
                port: int | None = None, paths: tuple[str, ...] = ()):  # fmt: skip
    """Two wrk runs against Nginx for a bounded time, read after the block ends. With a
    ``domain`` they go over HTTPS to the address with the domain as Host (plain HTTP only
    redirects there); wrk sends the address as SNI, which the site's server_name lists.
    ``port``: other than 80/443 (the loopback TLS tests). ``paths``: what to request instead of
    the sample app's /healthz and /api/tasks (another app's, from its contract)."""
    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed (bin/setup installs it)")
    assert ipaddress.ip_address(address) in LOCAL_TEST_NET or address.startswith("127.")
    procs = {
        kind: subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "-s",
                str(LOAD_SCRIPT),
                f"{'https' if domain else 'http'}://{address}" + (f":{port}" if port else ""),
                "--",
                kind,
                domain or "-",
                *paths,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for kind in ("close", "keepalive")
    }
    load = Load()
    time.sleep(1.5)  # steady state before the change starts
    try:
        yield load
    finally:
        time.sleep(1.5)
        results = {}
        for kind, proc in procs.items():
            # Stop early once the change is done (SIGINT makes wrk print its summary).
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=seconds + 30)
            line = next((x for x in out.splitlines() if x.startswith("WRK_RESULT ")), None)
            assert line, out
            results[kind] = json.loads(line.removeprefix("WRK_RESULT "))
        load.results = results
        print("load:", json.dumps(results))


def assert_no_failures(load) -> None:
    """No failed request, for clients that open a connection per request and for clients that
    keep theirs alive alike: no non-2xx answer, no socket error of any kind. (Switching by
    reloading Nginx cost keep-alive clients a few read errors per reload, as Nginx 1.22 closes
    the idle client connections of the workers a reload retires; the live.sock switch never
    reloads Nginx.)"""
    for kind, r in load.results.items():
        assert r["requests"] > 100, (kind, r)
        errors = {k: r[k] for k in ("non2xx", "connect", "read", "write", "timeout")}
        assert errors == dict.fromkeys(errors, 0), (kind, r)
