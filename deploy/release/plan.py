"""Pure decisions of a release run: which slot, which release to roll back to, what to prune,
which hosts go together, and the plan that ``--dry-run`` prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deploy.host_model import SLOTS, other_slot
from deploy.release.settings import ReleaseError
from deploy.release.state import HostState


def slots_for(state: HostState) -> tuple[str | None, str]:
    """(live slot or None, slot to start the release in): the one live.sock does not name."""
    live = state.live_slot
    if live:
        return live, other_slot(live)
    routed = state.routed_slot
    return None, other_slot(routed) if routed else SLOTS[0]


def warm_slot(state: HostState, release: str) -> bool:
    """The idle slot still runs ``release`` (kept warm after the switch that retired it): a
    switch to it needs no start, only the gate and the link. Never for the release already
    current: switching to that is a restart (``fab secrets`` rotation), which needs a fresh
    process reading the environment file as it is now."""
    live, idle = slots_for(state)
    return (
        live is not None
        and release != state.current
        and state.active.get(idle, False)
        and state.slots.get(idle) == release
    )


def warm_window(state: HostState, release: str, seconds: int) -> int:
    """Seconds the slot a switch retires stays warm: ``warm_seconds``, but none when the switch
    restarts the current release (a secret rotation): the retired slot would hold the old
    environment, and no rollback could go to it (it runs the live release)."""
    return 0 if release == state.current else seconds


def good_releases(state: HostState) -> list[str]:
    """Releases that went live once and never failed, oldest first, with a venv to run in."""
    return [
        r.name
        for r in state.releases
        if (r.served or r.name == state.current)
        and not r.failed
        and r.venv is not None
        and state.venvs.get(r.venv, False)
    ]


def previous_good(state: HostState) -> str | None:
    """The newest good release older than the live one that no rollback has left: where a
    rollback goes. Deploy R2, roll back to R1, deploy R3: a rollback from R3 goes to R1, not
    to R2, which was rolled back from (``--release`` may still name it)."""
    if not state.current:
        return None
    left = {r.name for r in state.releases if r.rolled_back}
    older = [n for n in good_releases(state) if n < state.current and n not in left]
    return older[-1] if older else None


def rollback_target(state: HostState, requested: str | None = None) -> str:
    """The release to roll back to, or a ReleaseError saying why there is none."""
    if requested:
        info = state.release(requested)
        if info is None:
            known = ", ".join(r.name for r in state.releases) or "none"
            raise ReleaseError(f"release {requested} is not on the host; it has: {known}")
        if requested == state.current and state.live_slot:
            raise ReleaseError(f"release {requested} is already live")
        if info.failed:
            raise ReleaseError(f"release {requested} is marked failed; deploy a fixed one instead")
        if requested not in good_releases(state):
            why = "never went live" if not info.served else "has no complete virtualenv"
            raise ReleaseError(f"release {requested} {why} on this host")
        return requested
    target = previous_good(state)
    if target is None:
        skipped = [r.name for r in state.releases if r.rolled_back and r.name != state.current]
        note = f" (rolled back from, skipped: {', '.join(skipped)}; name one with --release)"
        raise ReleaseError(
            f"no good release older than {state.current or '(none live)'} to roll back to"
            + (note if skipped else "")
        )
    return target


def prune_selection(state: HostState, keep: int, protect: Sequence[str] = ()) -> list[str]:
    """Releases to delete: all but the ``keep`` newest, never the live, previous-good or a
    slot's release, nor any in ``protect`` (the one being deployed)."""
    names = [r.name for r in state.releases]
    kept = set(names[-keep:]) if keep > 0 else set()
    kept |= {state.current, previous_good(state), *state.slots.values(), *protect}
    return [name for name in names if name not in kept]


def unused_venvs(state: HostState, removed: Sequence[str], in_use: Sequence[str] = ()) -> list[str]:
    """Shared venvs no remaining release points to."""
    used = {r.venv for r in state.releases if r.name not in set(removed)} | set(in_use)
    return sorted(key for key in state.venvs if key not in used)


def batches(hosts: Sequence[str], size: int) -> list[list[str]]:
    if size < 1:
        raise ReleaseError(f"--batch: {size} is not allowed; at least 1 host at a time")
    return [list(hosts[i : i + size]) for i in range(0, len(hosts), size)]


@dataclass(frozen=True)
class HostPlan:
    host: str
    live: str | None  # slot, release
    idle: str
    current: str | None
    venv_reused: bool | None  # None: unknown (host not probed)


def host_plan(host: str, state: HostState | None, venv_key: str | None) -> HostPlan:
    if state is None:
        return HostPlan(host, None, "idle", None, None)
    live, idle = slots_for(state)
    reused = state.venvs.get(venv_key, False) if venv_key else None
    return HostPlan(host, live, idle, state.current, reused)


def render_plan(
    action: str,
    release: str,
    revision: str,
    groups: list[list[HostPlan]],
    steps: Mapping[str, Sequence[str]],
    notes: Sequence[str] = (),
) -> str:
    """What a run would do, host by host, without doing it: ``steps`` are each host's step
    names, from the list a run executes."""
    lines = [f"{action} {release} (revision {revision[:12]}), {sum(map(len, groups))} host(s)"]
    lines += [f"  note: {note}" for note in notes]
    for number, group in enumerate(groups, 1):
        lines.append(f"  batch {number}: {', '.join(p.host for p in group)}")
        for p in group:
            live = f"{p.live} ({p.current})" if p.live else "nothing live"
            env = {True: "reuse venv", False: "build venv", None: "venv: unknown"}[p.venv_reused]
            lines.append(f"    [{p.host}] now: {live}; new release goes to slot {p.idle}; {env}")
            lines += [f"      - {step}" for step in steps.get(p.host, ())]
    return "\n".join(lines)


_QUOTED = re.compile(r"[\"']([^\"']+)[\"']")


def parse_revisions(grep_output: str) -> tuple[set[str], set[str]]:
    """(all revision ids, head ids) of a migrations directory, from `grep -H` lines."""
    revisions, parents = set(), set()
    for line in grep_output.splitlines():
        _, _, source = line.partition(":")
        key, _, value = source.partition("=")
        ids = set(_QUOTED.findall(value))
        if key.strip().startswith("down_revision"):
            parents |= ids
        elif key.strip().startswith("revision"):
            revisions |= ids
    return revisions, revisions - parents


def revisions_by_release(grep_output: str, dirs: dict[str, str]) -> dict[str, tuple]:
    """(all revision ids, head ids) per release, from the `grep -H` lines of several releases'
    migrations directories (``dirs``: release name -> its directory)."""
    lines: dict[str, list[str]] = {name: [] for name in dirs}
    for line in grep_output.splitlines():
        for name, directory in dirs.items():
            if line.startswith(directory.rstrip("/") + "/"):
                lines[name].append(line)
    return {name: parse_revisions("\n".join(found)) for name, found in lines.items()}


def parse_db_revision(output: str) -> str | None:
    """The revision ``python -m app.manage current`` reports, None when it said nothing usable."""
    match = re.search(r"current: (\S+)", output)
    return match.group(1) if match else None


def schema_warning(db_revision: str | None, revisions: set[str], heads: set[str], release: str):
    """Why rolling back to ``release`` may fail its gate: the database is past its migrations."""
    if db_revision in (None, "base") or db_revision in heads:
        return None
    if db_revision in revisions:
        return (
            f"the database is at {db_revision}, which {release} knows but is not its head "
            f"({', '.join(sorted(heads))}); its /readyz will report the mismatch"
        )
    return (
        f"the database has migrations newer than {release}: it is at {db_revision}, "
        f"{release} ends at {', '.join(sorted(heads)) or 'no migrations'}. Its /readyz will "
        "refuse and the rollback stop; to go back, downgrade first from the newer release "
        f"(python -m app.manage downgrade {', '.join(sorted(heads)) or 'base'})"
    )


def parse_readiness_revision(body: str) -> str | None:
    """The database's revision as a readiness answer reports it (the sample app's /readyz says
    ``"schema": "0002"``, read from the database on every call); None when it names none."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    revision = answer.get("schema") if isinstance(answer, dict) else None
    return revision if isinstance(revision, str) and revision else None


def nothing_to_migrate(migrate: str, db_revision: str | None, heads: set[str]) -> str | None:
    """Why the migration unit need not run, or None when it must.

    Sound only where dropstack can read both sides: ``none`` has no migrations, and for
    ``alembic`` (the sample app's ``app/migrations``) the release's single head must be the
    database's revision, when upgrading to head changes nothing. Django and custom commands
    keep running: their state is not something dropstack reads."""
    if migrate == "none":
        return "the app contract has no migrations (migrate: none): nothing to run"
    if migrate != "alembic" or db_revision in (None, "base") or heads != {db_revision}:
        return None
    return f"the database is at {db_revision}, the release's head: nothing to migrate"
