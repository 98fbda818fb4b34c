"""The per-host deploy lock: a directory made atomically, holding a record of who holds it.

``mkdir`` either creates the directory or fails because it exists, so two deploys can never both
hold a host. The holder record says who (user@machine), when, what revision and which process; a
lock left by a killed deploy is taken over only when that is provably safe: the holder ran on
this very machine and its process is gone. Any other held lock is reported with the command
that clears it.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from deploy.release.commands import as_root

HOLDER_FILE = "holder.json"
# Exit codes of the acquire script, so one round trip says what happened.
ACQUIRED, HELD = 0, 3


@dataclass(frozen=True)
class Holder:
    user: str
    machine: str
    pid: int
    action: str  # deploy, rollback
    revision: str
    release: str
    started: str  # ISO 8601, UTC
    token: str  # tells this holder's lock from a later one after a takeover

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self, now: datetime | None = None) -> str:
        age = ""
        try:
            started = datetime.fromisoformat(self.started)
            seconds = int(((now or datetime.now(UTC)) - started).total_seconds())
            age = f", {seconds // 60}m{seconds % 60:02d}s ago"
        except ValueError:
            pass
        return (
            f"{self.action} of {self.release or self.revision[:7] or '?'} by "
            f"{self.user}@{self.machine} (pid {self.pid}, started {self.started}{age})"
        )


def new_holder(action: str, revision: str, release: str, now: datetime | None = None) -> Holder:
    """The record for a lock this process is about to take."""
    return Holder(
        user=getpass.getuser(),
        machine=socket.gethostname(),
        pid=os.getpid(),
        action=action,
        revision=revision,
        release=release,
        started=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        token=os.urandom(8).hex(),
    )


def parse_holder(text: str) -> Holder | None:
    """The holder record, or None when it is missing or unreadable (a lock mid-creation)."""
    try:
        data = json.loads(text)
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__})
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: Holder, machine: str, alive=pid_alive) -> bool:
    """Safe to take over: the holder ran on this machine and its process no longer exists.

    A holder on another machine may be alive and mid-switch; only a person can know it is not.
    """
    return holder.machine == machine and holder.pid != os.getpid() and not alive(holder.pid)


def acquire_command(lock_dir: str, holder: Holder) -> str:
    """Make the lock and write the holder; if it exists, print the holder and exit HELD."""
    d = shlex.quote(lock_dir)
    record = shlex.quote(holder.to_json())
    return as_root(
        f"if mkdir {d}; then printf '%s\\n' {record} > {d}/{HOLDER_FILE}; "
        f"elif [ -d {d} ]; then cat {d}/{HOLDER_FILE} 2>/dev/null; exit {HELD}; "
        "else exit 1; fi"
    )


def takeover_command(lock_dir: str, stale: Holder, holder: Holder) -> str:
    """Replace a stale holder with ours, only if the lock still belongs to that stale holder.

    A second mutex directory makes the check-and-replace atomic against another deploy doing
    the same takeover at the same moment.
    """
    d = shlex.quote(lock_dir)
    guard = shlex.quote(lock_dir + ".takeover")
    token = shlex.quote(f'"token": "{stale.token}"')
    record = shlex.quote(holder.to_json())
    return as_root(
        f"mkdir {guard} 2>/dev/null || exit {HELD}; "
        f"if grep -qF {token} {d}/{HOLDER_FILE} 2>/dev/null; then "
        f"printf '%s\\n' {record} > {d}/{HOLDER_FILE}.new && "
        f"mv -f {d}/{HOLDER_FILE}.new {d}/{HOLDER_FILE}; rc=$?; else rc={HELD}; fi; "
        f"rmdir {guard}; exit $rc"
    )


def release_command(lock_dir: str, holder: Holder) -> str:
    """Remove the lock if it is still ours (a takeover may have replaced it)."""
    d = shlex.quote(lock_dir)
    token = shlex.quote(f'"token": "{holder.token}"')
    return as_root(f"if grep -qF {token} {d}/{HOLDER_FILE} 2>/dev/null; then rm -rf {d}; fi")


def read_command(lock_dir: str) -> str:
    d = shlex.quote(lock_dir)
    return f"if [ -d {d} ]; then cat {d}/{HOLDER_FILE} 2>/dev/null || echo '{{}}'; fi"


def force_remove_command(lock_dir: str) -> str:
    d = shlex.quote(lock_dir)
    return as_root(f"rm -rf {d} {shlex.quote(lock_dir + '.takeover')}")
