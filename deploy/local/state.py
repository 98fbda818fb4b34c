"""Where a local stack keeps what it made, and the few primitives every part of it uses:
one error type, one lock, atomic private files, and running a command on this machine."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import UnexpectedExit

from deploy.inventory import local_state_dir
from deploy.local.network import HostPlan

DOWN_HINT = "run `fab local.down`, then `fab local.up` again"


class LocalStackError(Exception):
    """Something stopped the task; ``str()`` is the one line the user sees, saying what to do."""


class Below:
    """A file or directory right below the state root, declared in one line: ``key =
    Below("id_ed25519")`` reads as ``paths.root / "id_ed25519"``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, paths: StatePaths, owner: type) -> Path:
        return paths.root / self.name


@dataclass(frozen=True)
class StatePaths:
    """Where a local stack keeps what it made. Only ``key`` survives ``down``."""

    root: Path

    @classmethod
    def from_environment(cls) -> StatePaths:
        # The same directory deploy/inventory.py reads the inventory from.
        return cls(local_state_dir())

    key = Below("id_ed25519")
    public_key = Below("id_ed25519.pub")
    inventory = Below("inventory.json")
    known_hosts = Below("known_hosts")
    record = Below("stack.json")
    hosts = Below("hosts")
    db = Below("db")

    def host_dir(self, host: HostPlan) -> Path:
        return self.hosts / host.name

    def host_root(self, host: HostPlan) -> Path:
        return self.host_dir(host) / "root"

    def console_log(self, host: HostPlan) -> Path:
        return self.host_dir(host) / "console.log"


@contextlib.contextmanager
def exclusive(paths: StatePaths):
    """One `up` or `down` at a time: two at once would build and tear down the same names."""
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (paths.root / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LocalStackError(
                "another `fab local.up` or `fab local.down` is running; wait for it to finish"
            ) from None
        yield


def read_record(paths: StatePaths) -> dict | None:
    try:
        return json.loads(paths.record.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def write_private(path: Path, content: str, mode: int = 0o600) -> None:
    """Write atomically with the final mode from the start (no window where a secret is 0644)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        out.write(content)
    os.chmod(temporary, mode)
    temporary.replace(path)


def last_words(exc: Exception) -> str:
    if isinstance(exc, UnexpectedExit):
        output = exc.result.stderr.strip() or exc.result.stdout.strip() or "no output"
        return f"`{exc.result.command}` said {output.splitlines()[-1]}"
    return str(exc) or type(exc).__name__


def run(command: list[str], *, stdin: str | None = None, hint: str = DOWN_HINT) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise LocalStackError(
            f"`{shlex.join(command)}` failed: {last}" + (f"; {hint}" if hint else "")
        )
    return result.stdout
