"""Running dropstack as an operator would, for the benchmarks: `fab` commands timed, a clone of
the repository that releases are built from, and root commands on a web host over SSH.

Deploys build from a temporary clone of this repository's HEAD (``dropstack.release.source``
in a runtime config passed with ``fab -f``), so the benchmark can commit trivial changes there
while the main work tree stays untouched; the deploy code itself is this work tree's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.inventory import Inventory, load_inventory
from deploy.shell import Command, as_root, join
from deploy.steps import read_step_log
from deploy.targets import connect

REPO = Path(__file__).resolve().parents[1]
FAB = REPO / ".venv" / "bin" / "fab"
LOG = REPO / "reports" / "bench.log"


class BenchFailed(Exception):
    """A command the benchmark depends on failed; ``str()`` names it and its last lines."""


def note(line: str) -> None:
    """Progress on the terminal, and in the log beside every command's full output."""
    print(f"bench: {line}", flush=True)
    with LOG.open("a") as log:
        log.write(f"bench: {line}\n")


@dataclass(frozen=True)
class Timed:
    command: list[str]
    code: int
    out: str
    seconds: float
    steps: tuple[dict, ...] = ()  # the run's step log (deploy.steps, JSON lines)


def run_timed(command: list[str], timeout: float = 600) -> Timed:
    """Run a command from the repository root with no stdin; its output goes to the log, and
    the steps it reports are read from its own step log (JSON lines), not from its output."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dropstack-bench-steps-") as tmp:
        step_log = Path(tmp) / "steps.jsonl"
        done = subprocess.run(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
            env={**os.environ, "DROPSTACK_STEP_LOG": str(step_log)},
        )  # fmt: skip
        steps = tuple(read_step_log(step_log))
    took = time.monotonic() - started
    with LOG.open("a") as log:
        log.write(f"$ {' '.join(command)}  # exit {done.returncode}, {took:.1f}s\n{done.stdout}\n")
    return Timed(command, done.returncode, done.stdout, took, steps)


def must(run: Timed) -> Timed:
    if run.code != 0:
        tail = " | ".join(run.out.strip().splitlines()[-4:])
        raise BenchFailed(f"{' '.join(run.command[1:])} exited {run.code}: {tail}")
    return run


@dataclass
class Source:
    """A clone of HEAD that releases are built from; ``commit_trivial`` makes a code-only change."""

    path: Path
    config: Path

    @classmethod
    def create(cls, workdir: Path) -> Source:
        path = workdir / "repo"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(path)], check=True)
        for key, value in (("user.email", "bench@example.invalid"), ("user.name", "bench")):
            subprocess.run(["git", "-C", str(path), "config", key, value], check=True)
        config = workdir / "fabric.yaml"
        config.write_text(json.dumps({"dropstack": {"release": {"source": str(path)}}}))
        return cls(path, config)

    def commit_trivial(self, label: str) -> str:
        """A comment appended to app/wsgi.py: new code, same dependencies."""
        wsgi = self.path / "app" / "wsgi.py"
        wsgi.write_text(wsgi.read_text() + f"# bench: {label}\n")
        subprocess.run(["git", "-C", str(self.path), "commit", "-qam", f"bench: {label}"],
                       check=True)  # fmt: skip
        return subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "HEAD"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip


def fab(*args: str, source: Source | None = None, timeout: float = 600) -> Timed:
    """`fab ARGS` from the repository root; with a source, releases are built from its clone."""
    config = ["-f", str(source.config)] if source else []
    return must(run_timed([str(FAB), *config, *args], timeout=timeout))


def temporary_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="dropstack-bench-")


def inventory() -> Inventory:
    return load_inventory()


class WebHost:
    """An SSH connection to one web host as the deploy user, with root through sudo."""

    def __init__(self, inv: Inventory, name: str):
        host = next(h for h in inv.web_hosts if h.name == name)
        self.name, self.public_ip = host.name, host.public_ip
        self.c = connect(inv, host)

    def run(self, command: str | Command, warn: bool = False, timeout: float = 300):
        """A shell string, or a token list from the release code's builders (joined and quoted
        in the one place, deploy.shell.join)."""
        line = command if isinstance(command, str) else join(command)
        return self.c.run(line, hide=True, warn=warn, in_stream=False, timeout=timeout)

    def root(self, script: str, warn: bool = False, timeout: float = 300):
        return self.run(join(as_root(["sh", "-c", script])), warn=warn, timeout=timeout)

    def close(self) -> None:
        self.c.close()


def wrk_version() -> str:
    if not shutil.which("wrk"):
        return "not installed"
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    return (out.splitlines() or ["?"])[0].split(" [")[0]
