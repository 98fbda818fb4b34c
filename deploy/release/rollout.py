"""What every release task shares: the selected hosts, connected and modelled; Ctrl-C; the
deploy locks of all hosts; the rolling order; the audit record; the closing line.

Host selection is the same as provisioning's: ``--stack``, ``--inventory``, ``--hosts``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fabric import Config
from invoke.exceptions import Exit

from deploy import host_model, settings_checks
from deploy.host_model import SettingsError
from deploy.inventory import InventoryError
from deploy.release import audit, plan
from deploy.release.host import (
    Interrupted,
    LockHeld,
    ReleaseHost,
    acquire_lock,
    append_audit,
    release_lock,
    take_over_lock,
)
from deploy.release.lock import Holder, is_stale
from deploy.release.settings import ReleaseError, ReleaseSettings
from deploy.steps import run_on_hosts, say
from deploy.targets import HostUnreachable, connect, resolve_inventory, select_hosts

TARGET_HELP = {
    "stack": "Pulumi stack whose outputs name the hosts (default: the local droplet)",
    "inventory": "inventory JSON file instead of a stack",
    "hosts": "comma-separated web host names (default: all, in inventory order)",
}
LOCK_POLL_SECONDS = 2
INTERRUPTED_EXIT = 130


def settings_of(c) -> ReleaseSettings:
    return ReleaseSettings.from_config(settings_checks.plain(c.config.get("dropstack")))


def open_hosts(c, stack: str, inventory: str, hosts: str, cancel: threading.Event, task=""):
    """The selected hosts, connected and modelled (``deploy.host_model.for_host``, the same
    object provisioning builds), in rollout order."""
    try:
        settings = settings_of(c)
        inv = resolve_inventory(stack, inventory)
        selected = select_hosts(inv, hosts)
        connected = []
        for web in selected:
            model = host_model.for_host(c.config, inv, web)
            conn = connect(inv, web, c.config if isinstance(c.config, Config) else None)
            connected.append(ReleaseHost(conn, web.name, settings, model, cancel, task=task))
        return connected
    except (InventoryError, HostUnreachable, ReleaseError, SettingsError) as exc:
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
