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
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from deploy.shell import as_root, script

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


# $1 lock dir, $2 holder record.
ACQUIRE_SCRIPT = (
    'if mkdir "$1"; then printf "%s\\n" "$2" > "$1/holder.json"; '
    'elif [ -d "$1" ]; then cat "$1/holder.json" 2>/dev/null; exit 3; else exit 1; fi'
)
# $1 lock dir, $2 the stale holder's token line, $3 our record. A second mutex directory makes
# the check-and-replace atomic against another deploy doing the same takeover at the same moment.
TAKEOVER_SCRIPT = (
    'mkdir "$1.takeover" 2>/dev/null || exit 3; '
    'if grep -qF "$2" "$1/holder.json" 2>/dev/null; then '
    'printf "%s\\n" "$3" > "$1/holder.json.new" && mv -f "$1/holder.json.new" "$1/holder.json"; '
    'rc=$?; else rc=3; fi; rmdir "$1.takeover"; exit $rc'
)
# $1 lock dir, $2 our token line: remove the lock only if it is still ours.
RELEASE_SCRIPT = 'if grep -qF "$2" "$1/holder.json" 2>/dev/null; then rm -rf "$1"; fi'


def _token_line(holder: Holder) -> str:
    return f'"token": "{holder.token}"'


def acquire_command(lock_dir: str, holder: Holder) -> list[str]:
    """Make the lock and write the holder; if it exists, print the holder and exit HELD."""
    return as_root(script(ACQUIRE_SCRIPT, lock_dir, holder.to_json(), name="lock"))


def takeover_command(lock_dir: str, stale: Holder, holder: Holder) -> list[str]:
    """Replace a stale holder with ours, only if the lock still belongs to that stale holder."""
    args = (lock_dir, _token_line(stale), holder.to_json())
    return as_root(script(TAKEOVER_SCRIPT, *args, name="lock"))


def release_command(lock_dir: str, holder: Holder) -> list[str]:
    """Remove the lock if it is still ours (a takeover may have replaced it)."""
    return as_root(script(RELEASE_SCRIPT, lock_dir, _token_line(holder), name="lock"))


def force_remove_command(lock_dir: str) -> list[str]:
    return as_root(["rm", "-rf", lock_dir, lock_dir + ".takeover"])
