"""The release steps on one host, run over a Fabric connection: the host itself
(``ReleaseHost``), its deploy lock, upload, unpack, virtualenv, migrations, pruning and audit.
The blue/green switch is ``switch.py``.

Each step has a human name (printed by ``HostLog``) and runs commands built in ``commands.py``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fabric import Connection
from invoke.exceptions import UnexpectedExit
from invoke.runners import Result

from deploy import shell
from deploy.host_model import HostLayout, HostSettings
from deploy.release import commands as cmd
from deploy.release import lock, plan
from deploy.release.build import Artifact
from deploy.release.lock import Holder
from deploy.release.plan import prune_selection, unused_venvs
from deploy.release.settings import ReleaseSettings
from deploy.release.state import HostState, parse_state, probe_command
from deploy.shell import chain
from deploy.steps import HostLog, StepFailed, Unchanged, last_words, say

DETAIL_WIDTH = 400
# How old the state probed with the lock may be and still stand for the host's state.
LOCKED_STATE_SECONDS = 5


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: clean up the host being changed, release the locks, stop."""


class LockHeld(Exception):
    """Another deploy holds a host's lock; ``holder`` is its record (None if unreadable)."""

    def __init__(self, host: str, holder: Holder | None):
        self.host, self.holder = host, holder
        super().__init__(host)


@dataclass
class ReleaseHost:
    """One connected host: runs commands quietly, names each step, honours cancellation."""

    c: Connection
    name: str
    settings: ReleaseSettings
    host: HostSettings  # the one host model: paths, units, sockets, users
    cancel: threading.Event = field(default_factory=threading.Event)
    log: HostLog = None  # type: ignore[assignment]
    task: str = "deploy"
    # (when, what) the state probed right after this run took the host's lock; state() uses it
    locked_state: tuple[float, HostState] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.log = self.log or HostLog(self.name, self.task)

    @property
    def layout(self) -> HostLayout:
        return self.host.paths

    def run(self, command: shell.Command, warn: bool = False) -> Result:
        # No stdin: a deploy run from CI or a test has none, and nothing here asks for input.
        return self.c.run(shell.join(command), hide=True, warn=warn, in_stream=False)

    def step(self, name: str, action) -> bool:
        if self.cancel.is_set():
            raise Interrupted()
        return self.log.step(name, action)

    def fail(self, step: str, reason: str, details: str = "") -> StepFailed:
        """Print the details (journal lines, the health response) and make the one-line error."""
        say(f"[{self.name}] {step:<44} FAILED")
        for line in details.strip().splitlines():
            # JSON log lines can carry a whole traceback; the start says what failed.
            shown = line if len(line) <= DETAIL_WIDTH else line[: DETAIL_WIDTH - 3] + "..."
            say(f"[{self.name}]   | {shown}")
        return StepFailed(self.name, step, reason)

    def state(self, keep: bool = False) -> HostState:
        """The host's release state: the one its lock was taken with (same round trip,
        acquire_lock) if not used yet and at most LOCKED_STATE_SECONDS old, else probed now.
        The lock keeps other deploys out, not timers (a warm window's end) or crashes, so a
        host whose turn comes later in a rollout is probed again. ``keep``: a planning read,
        leaving the locked state for the host's own steps."""
        locked = self.locked_state
        if not keep:
            self.locked_state = None
        if locked is not None and time.monotonic() - locked[0] <= LOCKED_STATE_SECONDS:
            return locked[1]
        return parse_state(self.run(probe_command(self.layout)).stdout, self.layout)

    def clock(self) -> int:
        return int(self.run(cmd.now_command()).stdout.strip())

    def journal(self, unit: str, since: int | None) -> str:
        lines = self.settings.journal_lines
        command = cmd.journal_command([unit], lines, f"@{since}" if since else "")
        return self.run(command, warn=True).stdout


# --- the deploy lock ---


# Printed between taking the lock and probing the state, so the output says the lock was taken
# whatever the probe then does.
LOCKED_MARK = "dropstack-lock=acquired"


def acquire_lock(h: ReleaseHost, holder: Holder) -> None:
    """Take the host's lock and, in the same round trip, probe its state as it is under the
    lock (``h.state()`` then returns that). A probe that fails leaves the state to be probed
    again; the lock is taken all the same."""
    taken = chain(lock.acquire_command(h.layout.lock, holder), ["echo", LOCKED_MARK])
    result = h.run(chain(taken, probe_command(h.layout)), warn=True)
    before, marked, after = result.stdout.partition(LOCKED_MARK + "\n")
    if marked:
        if result.exited == 0:
            h.locked_state = (time.monotonic(), parse_state(after, h.layout))
        return
    if result.exited == lock.HELD:
        raise LockHeld(h.name, lock.parse_holder(before.strip()))
    reason = last_words(result.stderr or result.stdout)
    if "No such file" in reason:
        reason += f"; is the host provisioned (fab provision --hosts {h.name})?"
    raise StepFailed(h.name, "acquire deploy lock", reason)


def take_over_lock(h: ReleaseHost, stale: Holder, holder: Holder) -> bool:
    return h.run(lock.takeover_command(h.layout.lock, stale, holder), warn=True).exited == 0


def release_lock(h: ReleaseHost, holder: Holder) -> None:
    h.run(lock.release_command(h.layout.lock, holder), warn=True)


# --- getting a release onto the host ---


def upload_release(h: ReleaseHost, art: Artifact, with_wheels: bool) -> bool:
    """The archive, and the wheelhouse only when the host lacks a venv for this dependency set."""
    stage = cmd.staging_dir(h.layout, art.name)
    h.run(cmd.prepare_staging_command(h.layout, art.name))
    h.c.put(str(art.archive), f"{stage}/source.tar.gz")
    if with_wheels:
        h.c.put(str(art.wheelhouse.tarball), f"{stage}/wheelhouse.tar")
    return True


UNPACK_STEP = "unpack release"


def unpack_release(h: ReleaseHost, art: Artifact, deployer: str) -> bool:
    stage = cmd.staging_dir(h.layout, art.name)
    metadata = {
        "release": art.name,
        "revision": art.source.revision,
        "dirty": art.source.dirty,
        "deployer": deployer,
        "venv": art.wheelhouse.venv_key,
        "target": art.target.tag,
    }
    result = h.run(
        cmd.unpack_command(h.layout, art.name, f"{stage}/source.tar.gz", metadata), warn=True
    )
    if result.failed:
        if h.run(cmd.exists_command(h.layout.release(art.name)), warn=True).ok:
            raise StepFailed(h.name, UNPACK_STEP, f"{art.name} already exists on the host")
        raise StepFailed(h.name, UNPACK_STEP, last_words(result.stderr or result.stdout))
    return True


def ensure_venv(h: ReleaseHost, art: Artifact) -> bool:
    """Reuse the host's venv for this dependency set, or build it offline from the wheels."""
    key = art.wheelhouse.venv_key
    changed = False
    if h.run(cmd.venv_ready_command(h.layout, key), warn=True).failed:
        h.run(cmd.venvs_dir_command(h.layout, h.c.user))
        stage = cmd.staging_dir(h.layout, art.name)
        h.run(cmd.build_venv_command(h.layout, key, f"{stage}/wheelhouse.tar"))
        changed = True
    h.run(cmd.link_venv_command(h.layout, art.name, key))
    h.run(["rm", "-rf", cmd.staging_dir(h.layout, art.name)])
    return changed


def prune(h: ReleaseHost, protect: list[str]) -> bool:
    state = h.state()
    doomed = prune_selection(state, h.settings.keep, protect)
    venvs = unused_venvs(state, doomed)
    paths = [h.layout.release(n) for n in doomed] + [h.layout.venv(k) for k in venvs]
    h.run(cmd.clean_incoming_command(h.layout))
    if not paths:
        return False
    h.run(cmd.remove_paths_command(paths))
    say(f"[{h.name}]   pruned {', '.join(doomed + venvs)}")
    return True


# --- migrations and the switch ---


def database_revision(h: ReleaseHost, slot: str, thorough: bool = True) -> str | None:
    """The database's schema revision, as the running slot's release sees it.

    First the slot's readiness answer, which names the revision it just read (milliseconds);
    then, if ``thorough``, ``app.manage current`` through the slot's release (a Python start,
    seconds on a busy host). None when neither says."""
    answer = h.run(cmd.readiness_command(h.layout, slot, h.host.app.readiness_path), warn=True)
    revision = plan.parse_readiness_revision(answer.stdout) if answer.ok else None
    if revision is not None or not thorough:
        return revision
    answer = h.run(cmd.db_revision_command(h.layout, slot), warn=True)
    return plan.parse_db_revision(answer.stdout) if answer.ok else None


def release_heads(h: ReleaseHost, release: str) -> tuple[set[str], set[str]]:
    """(every revision, the heads) of a release's migration files."""
    return plan.parse_revisions(h.run(cmd.migration_revisions_command(h.layout, release)).stdout)


def nothing_to_migrate(h: ReleaseHost, release: str, live: str | None) -> str | None:
    """Why the release's migrations need not run (plan.nothing_to_migrate), None if they must."""
    kind = h.host.app.migrate
    if kind != "alembic" or not live:
        return plan.nothing_to_migrate(kind, None, set())
    _, heads = release_heads(h, release)
    return plan.nothing_to_migrate(kind, database_revision(h, live, thorough=False), heads)


def migrate(h: ReleaseHost, slot: str, release: str, live: str | None) -> bool | Unchanged:
    """The new release's migrations, before it takes traffic; the old one serves throughout.
    Skipped, and printed ``ok`` with the reason, when there is provably nothing to migrate."""
    skip = nothing_to_migrate(h, release, live)
    if skip:
        return Unchanged(skip)
    since = h.clock()
    result = h.run(cmd.migrate_command(h.layout, slot), warn=True)
    if result.failed:
        unit = h.layout.migrate_unit(slot)
        journal = h.journal(unit, since)
        raise h.fail(
            "database migrations",
            f"{unit} failed; the old release keeps serving. Last journal lines above",
            journal,
        )
    return True


def mark_failed(h: ReleaseHost, release: str, step: str, reason: str) -> None:
    record = {"step": step, "reason": reason}
    h.run(cmd.mark_failed_command(h.layout, release, record), warn=True)


def append_audit(h: ReleaseHost, line: str) -> None:
    try:
        h.run(cmd.audit_append_command(h.layout, line))
    except UnexpectedExit as exc:
        say(f"[{h.name}]   warning: audit log not written: {last_words(exc.result.stderr)}")
