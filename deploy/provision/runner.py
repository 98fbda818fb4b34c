"""One host's provisioning: probe, plan each step, apply it (or, with ``--check``, print it).

Facts are gathered once, in one round trip; a step that changed the host makes the runner
gather them again before the next step plans, so each plan sees the host as it now is. A run
that changes nothing therefore costs one probe. ``--check`` plans every step against the first
probe and changes nothing: it is host drift detection.
"""

from __future__ import annotations

import time
from dataclasses import replace

import paramiko
import psycopg
from fabric import Connection
from invoke.exceptions import Exit, Failure, ThreadException, UnexpectedExit

from deploy import host_model
from deploy.backup.settings import BackupSettings
from deploy.inventory import Inventory, WebHost
from deploy.provision import apply, operations
from deploy.provision import facts as f
from deploy.steps import HostLog, StepFailed, last_words, run_on_hosts, say
from deploy.targets import connect, resolve_inventory, select_hosts


def plan_target(config, inv: Inventory, web: WebHost, resolv_conf: str = "") -> operations.Target:
    settings = host_model.for_host(config, inv, web, f.nameservers(resolv_conf))
    return operations.Target(
        web.name, settings, inv, connecting_key=connecting_key(inv),
        backup=BackupSettings.from_config(config),
    )  # fmt: skip


def connecting_key(inv: Inventory) -> str | None:
    """The public half ("type base64") of the inventory's private key; None with ssh-agent."""
    path = inv["ssh_key_path"]
    if not path:
        return None
    try:
        key = paramiko.PKey.from_path(path)
    except (OSError, paramiko.SSHException):
        return None
    return f"{key.get_name()} {key.get_base64()}"


def provision_host(
    c: Connection, config, inv: Inventory, web: WebHost, log: HostLog, check: bool = False,
    only: frozenset[str] = frozenset(),
) -> HostLog:  # fmt: skip
    """Every step, in order, for one connected host."""
    target = plan_target(config, inv, web)
    probe = operations.facts_for(target)
    first = web.name == inv.web_hosts[0].name
    # The database is shared: its privileges are read from the first host, when that step runs.
    db = inv if first and (not only or "database privileges" in only) else None
    # A fact only one step reads is read right before that step (all of them for --check,
    # which plans every step from the first reading).
    shared = probe if check else [fact for fact in probe if fact.read_by is None]
    facts = gather(c, shared, db, log.host)
    # The host's resolvers reach the units' IPAddressAllow, so the settings are built again
    # with them; paths do not depend on them, so the probe above already covered every file.
    target = plan_target(config, inv, web, facts.resolv_conf)
    if check:
        wanted = [p for p in operations.wanted_paths(target) if p != target.settings.env_file]
        stale = [p for p in wanted if facts.files.get(p, "absent") != "absent"]
        target = replace(target, contents=apply.current_contents(c, stale))
    for name, operation in operations.steps_for(target.settings, first):
        if only and name not in only:
            continue
        own = [fact for fact in probe if fact.read_by == name]
        if own and not check:
            facts = gather(c, own, None, log.host, facts)
        started = time.monotonic()
        try:
            changes = operation(target, facts)
        except operations.Unsupported as exc:
            log.failed(name, started, str(exc))
            raise StepFailed(log.host, name, str(exc)) from None
        if check:
            details = [line for change in changes for line in change.detail]
            log.finish(name, "would change" if changes else "ok", started, details)
            continue
        log.step(name, lambda n=name, todo=changes: _apply(c, log.host, n, todo, inv))
        if changes:
            # The host's facts again (a step changes what the next ones see), but not those
            # one step reads (read before it); the database's privileges only after the step
            # that grants them (an SSH tunnel and a login; no other step touches the database).
            granted = any(change.grant_schema for change in changes)
            facts = gather(c, shared, db if granted else None, log.host, facts)
    return log


def reconnecting(c: Connection, action):
    """``action()``; if it failed because the SSH connection itself died (seen, rarely, right
    after an SSH tunnel to the database closed: a broken pipe, then "Socket is closed"), open
    the connection again and run it once more. Steps are idempotent, so once more is safe;
    any other failure, or a second one, is raised as it is."""
    try:
        return action()
    except (paramiko.SSHException, EOFError, OSError, ThreadException):
        if c.transport is not None and c.transport.is_active():
            raise
        say(f"[{c.host}]   the SSH connection was lost; connecting again")
        c.close()
        c.open()
        return action()


def gather(c: Connection, probe, db: Inventory | None, host: str, previous=None):
    try:
        return reconnecting(c, lambda: apply.gather(c, probe, db, previous))
    except (psycopg.Error, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StepFailed(
            host, "database privileges", f"cannot reach the database as its admin: {reason}"
        ) from None


def _apply(c: Connection, host: str, name: str, changes, inv: Inventory) -> bool:
    try:
        return reconnecting(c, lambda: apply.apply_changes(c, changes, inv))
    except apply.ValidationFailed as exc:
        raise StepFailed(host, name, str(exc)) from None


def provision_targets(
    c, stack, inventory, hosts, serial: bool, check: bool = False,
    only: frozenset[str] = frozenset(), task: str = "provision",
) -> dict[str, HostLog]:  # fmt: skip
    """Provision (or check) every selected host, in parallel unless ``serial``; a summary
    line per host. ``check`` exits 1 when any host would change, 0 when all match. ``only``
    names the steps to run (all when empty)."""
    inv = resolve_inventory(stack, inventory)
    targets = {h.name: h for h in select_hosts(inv, hosts)}
    task = f"{task} --check" if check else task
    say(f"{'checking' if check else 'provisioning'} {', '.join(targets)} from {inv.source}")

    def work(name: str) -> HostLog:
        conn = connect(inv, targets[name], c.config)
        try:
            log = HostLog(name, task)
            return provision_host(conn, c.config, inv, targets[name], log, check, only)
        except (UnexpectedExit, Failure) as exc:
            reason = last_words(exc.result.stderr or exc.result.stdout)
            raise StepFailed(name, "probe", reason) from None
        finally:
            conn.close()

    outcomes = run_on_hosts(list(targets), work, parallel=not serial)
    failures = [str(o) for o in outcomes.values() if isinstance(o, Exception)]
    for name, outcome in outcomes.items():
        say(outcome.summary() if isinstance(outcome, HostLog) else f"{name}: FAILED")
    if failures:
        raise Exit("\n".join(f"provision failed: {f}" for f in failures), code=1)
    drifted = [n for n, o in outcomes.items() if isinstance(o, HostLog) and o.changed]
    if check and drifted:
        raise Exit(f"{task}: {', '.join(drifted)} differ from the desired state; "
                   f"`fab {task.removesuffix(' --check')}` repairs them", code=1)  # fmt: skip
    return outcomes
