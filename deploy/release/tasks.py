"""The release tasks: ``fab deploy``, ``rollback``, ``releases``, ``status``, ``logs``, ``unlock``.

Thin on purpose: they resolve the target, open connections and call the steps in ``host.py``;
every decision is a pure function in ``plan.py``, ``lock.py`` or ``build.py``. Host selection
is the same as provisioning's: ``--stack``, ``--inventory``, ``--hosts web-1,web-2``.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from fabric import Config, task
from invoke.exceptions import Exit

from deploy.inventory import InventoryError
from deploy.release import audit, plan
from deploy.release import commands as cmd
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
    Interrupted,
    LockHeld,
    ReleaseHost,
    Switch,
    acquire_lock,
    append_audit,
    ensure_venv,
    mark_failed,
    prune,
    release_lock,
    take_over_lock,
    unpack_release,
    upload_release,
)
from deploy.release.layout import RELEASE_NAME, ReleaseError, ReleaseSettings, release_name
from deploy.release.lock import Holder, is_stale, new_holder
from deploy.release.state import HostState
from deploy.steps import StepFailed, last_words, run_on_hosts, say
from deploy.targets import HostUnreachable, connect, resolve_inventory, select_hosts

TARGET_HELP = {
    "stack": "Pulumi stack whose outputs name the hosts (default: the local droplet)",
    "inventory": "inventory JSON file instead of a stack",
    "hosts": "comma-separated web host names (default: all, in inventory order)",
}
LOCK_POLL_SECONDS = 2
INTERRUPTED_EXIT = 130


def settings_of(c) -> ReleaseSettings:
    return ReleaseSettings.from_config(_plain(c.config.get("dropstack")))


def _plain(value):
    """Invoke's config proxies as plain dicts."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value


def open_hosts(c, stack: str, inventory: str, hosts: str, cancel: threading.Event):
    """The selected hosts, connected, in rollout order."""
    settings = settings_of(c)
    try:
        inv = resolve_inventory(stack, inventory)
        selected = select_hosts(inv, hosts)
        connected = []
        for host in selected:
            conn = connect(inv, host, c.config if isinstance(c.config, Config) else None)
            connected.append(ReleaseHost(conn, host.name, settings, cancel))
        return connected
    except (InventoryError, HostUnreachable, ReleaseError) as exc:
        raise Exit(f"dropstack: {exc}", code=1) from None


@contextmanager
def interrupts_cancel(cancel: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM become ``Interrupted`` in the main thread and set ``cancel`` for the
    hosts a batch runs in threads. A second signal while cleaning up is ignored, so the cleanup
    (stop the half-started slot, release the locks) always gets to finish."""

    def handler(signum, frame):
        if cancel.is_set():
            return
        cancel.set()
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def lock_all(hosts: list[ReleaseHost], holder: Holder, wait: int) -> list[ReleaseHost]:
    """Take every host's lock, in order, or none: a second deploy fails before changing any."""
    taken: list[ReleaseHost] = []
    try:
        for h in hosts:
            take_lock(h, holder, wait)
            taken.append(h)
    except BaseException:
        for h in taken:
            release_lock(h, holder)
        raise
    return taken


def take_lock(h: ReleaseHost, holder: Holder, wait: int) -> None:
    deadline = time.monotonic() + max(wait, 0)
    told = False
    while True:
        try:
            return acquire_lock(h, holder)
        except LockHeld as held:
            other = held.holder
            if other and is_stale(other, holder.machine):
                say(
                    f"[{h.name}] warning: taking over the lock of a deploy that is gone: "
                    f"{other.describe()}; its process no longer exists on this machine"
                )
                if take_over_lock(h, other, holder):
                    return None
                continue
            who = other.describe() if other else "a deploy that has not written its record yet"
            if time.monotonic() < deadline:
                if not told:
                    say(f"[{h.name}] waiting up to {wait}s for the deploy lock held by: {who}")
                    told = True
                if h.cancel.wait(LOCK_POLL_SECONDS):
                    raise Interrupted() from None
                continue
            raise Exit(
                f"dropstack: {h.name}: another deploy holds the lock: {who}. Wait for it "
                f"(--wait SECONDS), or if it is dead: fab unlock --hosts {h.name}",
                code=1,
            ) from None


def rollout(names: list[str], batch: int) -> list[list[str]]:
    """The first host alone (it runs the migrations, and a bad release stops there), then
    batches of ``batch`` hosts."""
    return plan.batches(names[:1], 1) + plan.batches(names[1:], batch) if names else []


def run_rollout(
    hosts: list[ReleaseHost], batch: int, work: Callable[[ReleaseHost, bool], object]
) -> list[str]:
    """Run ``work(host, first)`` group by group; stop after the first group with a failure.

    Returns the failure messages; hosts after the failing group are left untouched.
    """
    by_name = {h.name: h for h in hosts}
    first = hosts[0].name
    for group in rollout([h.name for h in hosts], batch):
        outcomes = run_on_hosts(
            group, lambda n: work(by_name[n], n == first), parallel=len(group) > 1
        )
        interrupted = [o for o in outcomes.values() if isinstance(o, KeyboardInterrupt)]
        if interrupted:
            raise interrupted[0]
        failures = [str(o) for o in outcomes.values() if isinstance(o, BaseException)]
        if failures:
            left = [n for n in by_name if n not in outcomes]
            if left:
                failures.append(f"not touched: {', '.join(left)}")
            return failures
    return []


def finish(action: str, failures: list[str], started: float) -> None:
    took = time.monotonic() - started
    if failures:
        for line in failures:
            say(f"FAILED {line}")
        raise Exit(f"dropstack: {action} failed after {took:.1f}s", code=1)
    say(f"{action} done in {took:.1f}s")


# --- deploy ---


def record_audit(
    h: ReleaseHost, holder: Holder, action: str, release: str, revision: str,
    result: str, started: float, detail: str,
) -> None:  # fmt: skip
    """Append one deploy or rollback to the host's audit log, timed from ``started``."""
    entry = audit.record(
        f"{holder.user}@{holder.machine}", action, release, revision,
        result, time.monotonic() - started, detail,
    )  # fmt: skip
    append_audit(h, entry.to_line())


def deploy_host(h: ReleaseHost, art: Artifact, first: bool, holder: Holder) -> str:
    """Every deploy step on one host; on failure or interruption, the old release serves on."""
    started = time.monotonic()
    state = h.state()
    switch = Switch.plan(h, art.name, state)
    reuse = state.venvs.get(art.wheelhouse.venv_key, False)
    result, detail = "failed", ""
    try:
        h.step("upload release", lambda: upload_release(h, art, with_wheels=not reuse))
        h.step("unpack release", lambda: unpack_release(h, art, f"{holder.user}@{holder.machine}"))
        h.step(f"python environment {art.wheelhouse.venv_key}", lambda: ensure_venv(h, art))
        switch.go_live(migrate_first=first)
        result, detail = "ok", f"slot {switch.idle}"
        try:
            h.step(f"prune old releases (keep {h.settings.keep})", lambda: prune(h, [art.name]))
        except StepFailed as exc:
            say(f"[{h.name}]   warning: pruning failed, the release is live: {exc.reason}")
        return art.name
    except KeyboardInterrupt:
        result, detail = "interrupted", "cleaned up"
        say(f"[{h.name}] interrupted: cleaning up")
        switch.abandon()
        raise
    except StepFailed as exc:
        detail = f"{exc.step}: {exc.reason}"
        switch.abandon()
        if not switch.routed:
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
    with interrupts_cancel(cancel):
        hosts = open_hosts(c, stack, inventory, hosts, cancel)
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
                locked = lock_all(hosts, holder, settings.lock_wait if wait < 0 else wait)
                try:
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
    finish(f"deploy of {art.name}", failures, started)


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
    groups = [
        [plan.host_plan(n, states[n], vkey) for n in group]
        for group in rollout([h.name for h in hosts], batch)
    ]
    name = release_name(datetime.now(UTC), src.revision, src.dirty)
    notes = [f"wheelhouse {key} for {target.tag}: {'cached' if wheels else 'to download'}"]
    notes += [
        f"{n}: locked by {s.lock.describe()}" for n, s in states.items() if s.locked and s.lock
    ]
    print(plan.render_plan("deploy", name, src.revision, groups, plan.DEPLOY_STEPS, notes))


# --- rollback ---


def schema_note(h: ReleaseHost, state: HostState, target: str) -> str | None:
    """A warning when the database is past the target release's migrations."""
    revisions, heads = plan.parse_revisions(
        h.run(cmd.migration_revisions_command(h.layout, target)).stdout
    )
    if not state.live_slot:
        return None
    answer = h.run(
        cmd.db_revision_command(h.layout, state.live_slot, h.layout.env_file, h.layout.app_user),
        warn=True,
    )
    if answer.failed:
        return f"could not read the database's revision: {last_words(answer.stderr, 1)}"
    return plan.schema_warning(plan.parse_db_revision(answer.stdout), revisions, heads, target)


def rollback_host(h: ReleaseHost, target: str, holder: Holder) -> str:
    started = time.monotonic()
    switch = Switch.plan(h, target, h.state())
    result, detail = "failed", ""
    try:
        switch.go_live(migrate_first=False)
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
        record_audit(h, holder, "rollback", target, holder.revision, result, started, detail)


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
    with interrupts_cancel(cancel):
        hosts = open_hosts(c, stack, inventory, hosts, cancel)
        try:
            states = {h.name: h.state() for h in hosts}
            target = plan.rollback_target(states[hosts[0].name], release or None)
            for h in hosts[1:]:
                plan.rollback_target(states[h.name], target)
            note = schema_note(hosts[0], states[hosts[0].name], target)
            if note:
                say(f"warning: {note}")
            revision = RELEASE_NAME.fullmatch(target).group("sha")
            if dry_run:
                groups = [
                    [plan.host_plan(n, states[n], None) for n in group]
                    for group in rollout([h.name for h in hosts], batch)
                ]
                print(plan.render_plan("rollback to", target, revision, groups,
                                       plan.ROLLBACK_STEPS))  # fmt: skip
                return
            holder = new_holder("rollback", revision, target)
            locked = lock_all(hosts, holder, settings.lock_wait if wait < 0 else wait)
            try:
                failures = run_rollout(hosts, batch, lambda h, _: rollback_host(h, target, holder))
            finally:
                for h in locked:
                    release_lock(h, holder)
        except Interrupted:
            raise Exit(
                "dropstack: rollback interrupted; locks released", INTERRUPTED_EXIT
            ) from None
        except (ReleaseError, StepFailed) as exc:
            raise Exit(f"dropstack: {exc}", code=1) from None
    finish(f"rollback to {target}", failures, started)


# --- looking at hosts ---


def release_lines(state: HostState) -> list[str]:
    """The host's releases, newest first, with live / slot / failed markers."""
    lines = []
    by_slot = {release: slot for slot, release in state.slots.items() if release}
    for info in reversed(state.releases):
        marks = []
        if info.name == state.current:
            marks.append("current")
        slot = by_slot.get(info.name)
        if slot:
            running = "live" if state.live_slot == slot else (
                "running" if state.active.get(slot) else "stopped")  # fmt: skip
            marks.append(f"slot {slot} ({running})")
        if info.failed:
            marks.append("FAILED")
        star = "*" if info.name == state.current else " "
        lines.append(f"{star} {info.name}  venv {info.venv or '-':<16}  {', '.join(marks)}")
    return lines or ["(no releases)"]


@task(help={**TARGET_HELP, "last": "how many audit log entries to show (default 10)"})
def releases(c, stack="", inventory="", hosts="", last=10):
    """List each host's releases (current, slots, failed) and its recent deploys."""
    for h in open_hosts(c, stack, inventory, hosts, threading.Event()):
        state = h.state()
        say(f"[{h.name}] releases, newest first:")
        for line in release_lines(state):
            say(f"[{h.name}]   {line}")
        say(f"[{h.name}] recent deploys and rollbacks:")
        records = audit.parse_lines(h.run(cmd.audit_tail_command(h.layout, last)).stdout)
        for line in audit.render(records):
            say(f"[{h.name}]   {line}")


@task(help=TARGET_HELP)
def status(c, stack="", inventory="", hosts=""):
    """Per host: the live release and slot, both slots' state, /readyz, Nginx, any lock."""
    for h in open_hosts(c, stack, inventory, hosts, threading.Event()):
        state = h.state()
        live = state.live_slot
        say(f"[{h.name}] current release: {state.current or '(none)'}")
        for slot, rel in state.slots.items():
            running = "active" if state.active.get(slot) else "inactive"
            serving = "  <- nginx (live.sock)" if state.routed_slot == slot else ""
            say(f"[{h.name}]   slot {slot:<5} {running:<8} {rel or '(no release)'}{serving}")
        if live:
            probe = h.run(cmd.health_wait_command(h.layout, live, "/readyz", 0), warn=True)
            say(f"[{h.name}]   /readyz on {live}: {' '.join(probe.stdout.split()) or 'no answer'}")
        else:
            where = f"slot {state.routed_slot}, which is not running" if state.routed_slot else (
                "no slot: no release deployed yet")  # fmt: skip
            say(f"[{h.name}]   no live slot: live.sock names {where}")
        say(f"[{h.name}]   nginx: {'active' if state.nginx_active else 'NOT active'}")
        if state.locked:
            who = state.lock.describe() if state.lock else "unreadable holder record"
            say(f"[{h.name}]   deploy lock held: {who}")


@task(
    help={
        **TARGET_HELP,
        "follow": "keep printing new lines (one host at a time)",
        "since": "journalctl --since, e.g. '10 min ago' or '2026-11-21 15:00'",
        "lines": "lines to show per host (default 100)",
        "nginx": "Nginx's journal and the site's access and error logs instead of the app's",
    }
)
def logs(c, stack="", inventory="", hosts="", follow=False, since="", lines=100, nginx=False):
    """The app's journal (both slots and migrations), or Nginx's with --nginx."""
    selected = open_hosts(c, stack, inventory, hosts, threading.Event())
    if follow and len(selected) > 1:
        raise Exit("dropstack: --follow reads one host; pick it with --hosts", code=1)
    for h in selected:
        app = h.layout.app_name
        units = ["nginx"] if nginx else [f"{app}@blue", f"{app}@green", f"{app}-migrate@*"]
        say(f"[{h.name}] journal of {', '.join(units)}:")
        command = cmd.as_root(logs_command(units, lines, since, follow))
        if nginx:
            command += "; " + cmd.as_root(nginx_files_command(app, lines, follow))
        h.c.run(command, warn=True, in_stream=False, pty=follow)


def logs_command(units: list[str], lines: int, since: str, follow: bool) -> str:
    parts = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(int(lines))]
    for unit in units:
        parts += ["-u", unit]
    if since:
        parts += ["--since", since]
    if follow:
        parts.append("-f")
    return " ".join(cmd.q(p) for p in parts)


def nginx_files_command(app: str, lines: int, follow: bool) -> str:
    files = [f"/var/log/nginx/{app}.access.log", f"/var/log/nginx/{app}.error.log"]
    flag = "-F" if follow else ""
    return f"tail -n {int(lines)} {flag} " + " ".join(cmd.q(f) for f in files)


@task(help=TARGET_HELP)
def unlock(c, stack="", inventory="", hosts=""):
    """Remove a deploy lock left behind by a deploy that died, showing whose it was."""
    from deploy.release import lock

    for h in open_hosts(c, stack, inventory, hosts, threading.Event()):
        state = h.state()
        if not state.locked:
            say(f"[{h.name}] not locked")
            continue
        who = state.lock.describe() if state.lock else "unreadable holder record"
        say(f"[{h.name}] warning: removing the deploy lock held by {who}; if that deploy is "
            "still running it is no longer protected from another one")  # fmt: skip
        h.run(lock.force_remove_command(h.layout.lock))
