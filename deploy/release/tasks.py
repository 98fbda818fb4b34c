"""The release tasks: ``fab deploy`` and ``fab rollback``.

Thin on purpose: they resolve the target, open connections and run the steps in ``host.py``;
every decision is a pure function in ``plan.py``, ``lock.py`` or ``build.py``. A dry-run prints
the very step list a run would execute, per host, without running it.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from fabric import task
from invoke.exceptions import Exit

from deploy import notify
from deploy.release import commands as cmd
from deploy.release import plan
from deploy.release.build import (
    Artifact,
    build_artifact,
    parse_target,
    read_source,
    target_probe_command,
    venv_key,
    wheelhouse_key,
)
from deploy.release.host import (
    UNPACK_STEP,
    Interrupted,
    ReleaseHost,
    database_revision,
    ensure_venv,
    mark_failed,
    prune,
    release_lock,
    unpack_release,
    upload_release,
)
from deploy.release.lock import Holder, new_holder
from deploy.release.rollout import (
    INTERRUPTED_EXIT,
    TARGET_HELP,
    finish,
    interrupts_cancel,
    lock_all,
    open_hosts,
    record_audit,
    rollout,
    run_rollout,
    settings_of,
)
from deploy.release.settings import (
    RELEASE_NAME,
    ReleaseError,
    free_release_name,
    release_name,
)
from deploy.release.state import HostState
from deploy.release.switch import Switch
from deploy.steps import StepFailed, say

# A step's name, what it does, and whether the run fails with it (pruning is housekeeping:
# the release is live by then).
Steps = list[tuple[str, Callable[[], bool], bool]]


# --- deploy ---


def deploy_steps(
    h: ReleaseHost, switch: Switch, first: bool, venv: str | None, reuse: bool | None,
    art: Artifact | None = None, holder: Holder | None = None,
) -> Steps:  # fmt: skip
    """Every deploy step on one host, in order. ``--dry-run`` prints these names; a run runs
    them (``art`` and ``holder`` are needed only then)."""
    deployer = f"{holder.user}@{holder.machine}" if holder else ""
    return [
        ("upload release", lambda: upload_release(h, art, with_wheels=not reuse), True),
        (UNPACK_STEP, lambda: unpack_release(h, art, deployer), True),
        (f"python environment {venv or '(to build)'}", lambda: ensure_venv(h, art), True),
        *((name, action, True) for name, action in switch.steps(migrate_first=first)),
        (f"prune old releases (keep {h.settings.keep})", lambda: prune(h, [art.name]), False),
    ]


def run_steps(h: ReleaseHost, steps: Steps) -> None:
    for name, action, required in steps:
        try:
            h.step(name, action)
        except StepFailed as exc:
            if required:
                raise
            say(f"[{h.name}]   warning: {name} failed, the release is live: {exc.reason}")


def deploy_host(h: ReleaseHost, art: Artifact, first: bool, holder: Holder) -> str:
    """Every deploy step on one host; on failure or interruption, the old release serves on."""
    started = time.monotonic()
    state = h.state()
    switch = Switch.plan(h, art.name, state)
    key = art.wheelhouse.venv_key
    steps = deploy_steps(h, switch, first, key, state.venvs.get(key, False), art, holder)
    result, detail = "failed", ""
    try:
        run_steps(h, steps)
        result, detail = "ok", f"slot {switch.idle}"
        return art.name
    except KeyboardInterrupt:
        result, detail = "interrupted", "cleaned up"
        say(f"[{h.name}] interrupted: cleaning up")
        switch.abandon()
        raise
    except StepFailed as exc:
        detail = f"{exc.step}: {exc.reason}"
        switch.abandon()
        # Only a release this run unpacked is marked: one already on the host under the same
        # name (a deploy of the same commit in the same second, now over) is another run's.
        if not switch.routed and (UNPACK_STEP, "changed") in h.log.results:
            mark_failed(h, art.name, exc.step, exc.reason)
        raise
    finally:
        record_audit(h, holder, "deploy", art.name, art.source.revision, result, started, detail)


@task(
    help={
        **TARGET_HELP,
        "batch": "hosts switched at once after the first (default 1: one at a time)",
        "dry_run": "print the plan (hosts, slots, steps, release name) and change nothing",
        "allow_dirty": "deploy the work tree's tracked files even if they differ from HEAD",
        "wait": "seconds to wait for another deploy's lock (default: fail at once)",
    }
)
def deploy(c, stack="", inventory="", hosts="", batch=1, dry_run=False, allow_dirty=False, wait=-1):
    """Build the release once, then roll it out host by host behind a /readyz gate."""
    started = time.monotonic()
    settings = settings_of(c)
    try:
        src = read_source(Path(settings.source), allow_dirty)
    except ReleaseError as exc:
        raise Exit(f"dropstack: {exc}", code=1) from None
    if src.dirty:
        say(f"warning: deploying uncommitted changes ({', '.join(src.changed)}) on top of "
            f"{src.revision[:7]}; the release is named -dirty")  # fmt: skip
    cancel = threading.Event()
    # notify: one webhook event when the block ends, however it ends (none for a dry-run).
    announced = notify.announce(c, "deploy", dry_run, revision=src.revision)
    with interrupts_cancel(cancel), announced as event:
        notify.pre_deploy_hook(c, dry_run, src.revision, hosts)  # before any host is contacted
        hosts = open_hosts(c, stack, inventory, hosts, cancel, task="deploy")
        event.update(hosts=[h.name for h in hosts])  # notify
        try:
            target = parse_target(hosts[0].run(target_probe_command()).stdout)
            if dry_run:
                return print_deploy_plan(settings, src, target, hosts, batch)
            with tempfile.TemporaryDirectory(prefix="dropstack-release-") as work:
                art = build_artifact(settings, src, target, Path(work), datetime.now(UTC))
                w = art.wheelhouse
                say(
                    f"release {art.name}: revision {src.revision[:12]}, archive "
                    f"{art.archive.stat().st_size // 1024} KiB, {len(w.wheels)} wheels for "
                    f"{target.tag} ({'cached' if w.cached else 'downloaded'}), venv {w.venv_key}"
                )
                holder = new_holder("deploy", src.revision, art.name)
                event.update(release=art.name)  # notify
                locked = lock_all(hosts, holder, settings.lock_wait if wait < 0 else wait)
                try:
                    art = unique_name(art, locked)
                    event.update(release=art.name)  # notify
                    failures = run_rollout(
                        hosts, batch, lambda h, first: deploy_host(h, art, first, holder)
                    )
                finally:
                    for h in locked:
                        release_lock(h, holder)
        except Interrupted:
            raise Exit("dropstack: deploy interrupted; locks released", INTERRUPTED_EXIT) from None
        except (ReleaseError, StepFailed) as exc:
            raise Exit(f"dropstack: {exc}", code=1) from None
        finish(f"deploy of {art.name}", failures, started)  # inside: its failure is an event


def unique_name(art: Artifact, locked: list[ReleaseHost]) -> Artifact:
    """The artifact under a name no locked host has yet. The names come from the state each
    lock was taken with (no extra round trip); a deploy of the same commit begun in the same
    second and over before this one took the lock left a release of this very name."""
    taken = {r.name for h in locked for r in h.state(keep=True).releases}
    name = free_release_name(art.name, taken)
    if name == art.name:
        return art
    say(f"release {name}: renamed from {art.name}, which a host already has (another deploy "
        "of this commit in the same second)")  # fmt: skip
    return replace(art, name=name)


def print_deploy_plan(settings, src, target, hosts, batch) -> None:
    source = Path(settings.source)
    key = wheelhouse_key(
        (source / settings.requirements).read_text(),
        (source / settings.constraints).read_text(),
        target,
    )
    cached = Path(settings.cache_dir).expanduser() / "wheelhouses" / key
    wheels = sorted(p.name for p in cached.glob("*.whl")) if (cached / ".complete").exists() else []
    vkey = venv_key(wheels, target) if wheels else None
    states = {h.name: h.state() for h in hosts}
    taken = {r.name for state in states.values() for r in state.releases}
    name = free_release_name(release_name(datetime.now(UTC), src.revision, src.dirty), taken)
    first = hosts[0].name
    steps = {}
    for h in hosts:
        reuse = states[h.name].venvs.get(vkey, False) if vkey else None
        switch = Switch.plan(h, name, states[h.name])
        steps[h.name] = [s[0] for s in deploy_steps(h, switch, h.name == first, vkey, reuse)]
    groups = [
        [plan.host_plan(n, states[n], vkey) for n in group]
        for group in rollout([h.name for h in hosts], batch)
    ]
    notes = [f"wheelhouse {key} for {target.tag}: {'cached' if wheels else 'to download'}"]
    notes += [
        f"{n}: locked by {s.lock.describe()}" for n, s in states.items() if s.locked and s.lock
    ]
    say(plan.render_plan("deploy", name, src.revision, groups, steps, notes))


# --- rollback ---


def schema_note(h: ReleaseHost, state: HostState, target: str) -> str | None:
    """A warning when the database is past the target release's migrations.

    The target's migration files are read with the live release's, in one command: when they
    are the same, the schema is no reason for the target to fail where the live release
    serves, and the database is not asked (about 45 ms of every such rollback, the usual one
    after a code-only deploy). Otherwise the live slot is asked the database's revision."""
    if not state.live_slot:
        return None
    live = state.slots.get(state.live_slot)
    names = [target, *([live] if live and live != target else [])]
    found = h.run(cmd.migration_revisions_command(h.layout, *names)).stdout
    by_release = plan.revisions_by_release(
        found, {name: cmd.migrations_dir(h.layout, name) for name in names}
    )
    revisions, heads = by_release[target]
    if live in by_release and by_release[live] == by_release[target]:
        return None
    revision = database_revision(h, state.live_slot)
    if revision is None:
        return "could not read the database's revision"
    return plan.schema_warning(revision, revisions, heads, target)


def rollback_steps(switch: Switch) -> Steps:
    """A rollback reuses a release already on the host: no upload, build, migration or prune."""
    return [(name, action, True) for name, action in switch.steps(migrate_first=False)]


def rollback_host(h: ReleaseHost, target: str, revision: str, holder: Holder) -> str:
    started = time.monotonic()
    switch = Switch.plan(h, target, h.state(), rollback=True)
    result, detail = "failed", ""
    try:
        run_steps(h, rollback_steps(switch))
        result, detail = "ok", f"slot {switch.idle}"
        return target
    except KeyboardInterrupt:
        result, detail = "interrupted", "cleaned up"
        switch.abandon()
        raise
    except StepFailed as exc:
        detail = f"{exc.step}: {exc.reason}"
        switch.abandon()
        raise
    finally:
        record_audit(h, holder, "rollback", target, revision, result, started, detail)


def rollback_target(hosts: list[ReleaseHost], states: dict[str, HostState], release: str):
    """The release every host goes back to (the first host's previous good one, or
    ``release``), checked on each host, and its revision; a warning when the database is past
    it."""
    target = plan.rollback_target(states[hosts[0].name], release or None)
    for h in hosts[1:]:
        plan.rollback_target(states[h.name], target)
    note = schema_note(hosts[0], states[hosts[0].name], target)
    if note:
        say(f"warning: {note}")
    return target, RELEASE_NAME.fullmatch(target).group("sha")


@task(
    help={
        **TARGET_HELP,
        "release": "release to go back to (default: the previous good one)",
        "batch": "hosts switched at once after the first (default 1)",
        "dry_run": "print the plan and change nothing",
        "wait": "seconds to wait for another deploy's lock (default: fail at once)",
    }
)
def rollback(c, release="", stack="", inventory="", hosts="", batch=1, dry_run=False, wait=-1):
    """Move traffic back to the previous good release (or --release), behind the same gate."""
    started = time.monotonic()
    settings = settings_of(c)
    cancel = threading.Event()
    # notify: one webhook event when the block ends, however it ends (none for a dry-run).
    with interrupts_cancel(cancel), notify.announce(c, "rollback", dry_run) as event:
        hosts = open_hosts(c, stack, inventory, hosts, cancel, task="rollback")
        event.update(hosts=[h.name for h in hosts])  # notify
        try:
            if dry_run:
                states = {h.name: h.state() for h in hosts}
                target, revision = rollback_target(hosts, states, release)
                groups = [
                    [plan.host_plan(n, states[n], None) for n in group]
                    for group in rollout([h.name for h in hosts], batch)
                ]
                switches = {h.name: Switch.plan(h, target, states[h.name], rollback=True)
                            for h in hosts}  # fmt: skip
                steps = {n: [s[0] for s in rollback_steps(sw)] for n, sw in switches.items()}
                say(plan.render_plan("rollback to", target, revision, groups, steps))
                return
            # The locks first: each host's state comes back in the same round trip (no probe
            # before it: a rollback is what people run when the site is on fire), and the target
            # is resolved from the state as it is under the lock.
            holder = new_holder("rollback", "", release or "the previous release")
            locked = lock_all(hosts, holder, settings.lock_wait if wait < 0 else wait)
            try:
                states = {h.name: h.state(keep=True) for h in hosts}
                target, revision = rollback_target(hosts, states, release)
                event.update(release=target, revision=revision)  # notify
                failures = run_rollout(
                    hosts, batch, lambda h, _: rollback_host(h, target, revision, holder)
                )
            finally:
                for h in locked:
                    release_lock(h, holder)
        except Interrupted:
            raise Exit(
                "dropstack: rollback interrupted; locks released", INTERRUPTED_EXIT
            ) from None
        except (ReleaseError, StepFailed) as exc:
            raise Exit(f"dropstack: {exc}", code=1) from None
        finish(f"rollback to {target}", failures, started)  # inside: its failure is an event
