"""`fab local.*`: the local droplet, a DigitalOcean stand-in on this machine (run as root).

fab local.up [--web-count N] [--domain NAME]
                               boot web-1..web-N and the database, write the inventory; with a
                               domain, a local ACME CA (pebble) answering for it
fab local.status               hosts, addresses, running or not, SSH reachable or not
fab local.ssh [--host web-1]   a shell on a host as the deploy user
fab local.reboot --host NAME   reboot a host like a droplet (its disk stays)
fab local.poweroff --host NAME pull its plug; `fab local.up` boots it again on its disk
fab local.down                 stop and remove everything but the image cache and the SSH key
"""

from __future__ import annotations

import os
import shutil

from invoke import task
from invoke.exceptions import Exit

from deploy.local import preflight
from deploy.local.image_cache import ImageBuildError
from deploy.local.network import MAX_WEB_COUNT
from deploy.local.state import LocalStackError

# The modules that do the work (lifecycle, teardown, operate, hosts; Pulumi's settings for the
# domain check) are imported inside each task: `fab` imports this module on every run, a
# `fab rollback` included, and they cost about a tenth of a second (deploy/tasks.py).

# The largest pool the local database's 100 connections leave room for (DigitalOcean's
# limit per plan is checked for real stacks in infra/settings.py).
MAX_POOL_SIZE = 90


def say(line: str) -> None:
    print(f"local: {line}", flush=True)


def _preflight(task_name: str, commands: dict[str, str] = preflight.REQUIRED_COMMANDS) -> None:
    found = preflight.problems(os.geteuid(), shutil.which, task_name, commands)
    if found:
        raise Exit(found[0], code=1)


def _web_count(value: str | int | None) -> int:
    chosen = value if value is not None else os.environ.get("DROPSTACK_WEB_COUNT") or 1
    try:
        count = int(chosen)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WEB_COUNT:
        raise Exit(
            f"--web-count / DROPSTACK_WEB_COUNT: {chosen!r} is not 1..{MAX_WEB_COUNT}", code=1
        )
    return count


def _db_pool(value: str | int | None) -> int:
    chosen = value if value is not None else os.environ.get("DROPSTACK_DB_POOL") or 0
    try:
        size = int(chosen)
    except ValueError:
        size = -1
    if not 0 <= size <= MAX_POOL_SIZE:
        raise Exit(f"--db-pool / DROPSTACK_DB_POOL: {chosen!r} is not 0..{MAX_POOL_SIZE}", code=1)
    return size


def _domain(value: str | None) -> str | None:
    from infra.settings import domain_name

    chosen = value if value is not None else os.environ.get("DROPSTACK_DOMAIN") or ""
    try:
        return domain_name(chosen)
    except ValueError as exc:
        raise Exit(f"--domain / DROPSTACK_DOMAIN: {exc}", code=1) from None


@task(
    help={
        "web_count": f"web hosts, 1..{MAX_WEB_COUNT} (default $DROPSTACK_WEB_COUNT or 1)",
        "db_pool": "server connections of a PgBouncer pool on 25061, transaction mode, like "
        "dbPoolSize (default $DROPSTACK_DB_POOL or 0: no pool, the app connects directly)",
        "load_balancer": "a load balancer (HAProxy) even with one web host; with more there is "
        "always one, as on DigitalOcean",
        "domain": "the site's domain (e.g. app.dropstack.test; default $DROPSTACK_DOMAIN): a "
        "local ACME CA (pebble) answers for it, provisioning gets HTTPS, and a load balancer "
        "ends TLS",
    }
)
def up(c, web_count=None, db_pool=None, load_balancer=False, domain=None):
    """Boot the local stack (web hosts + managed-style PostgreSQL) and write its inventory."""
    count, pool, name = _web_count(web_count), _db_pool(db_pool), _domain(domain)
    commands = preflight.REQUIRED_COMMANDS
    if name:
        commands = {**commands, **preflight.ACME_COMMANDS}
    _preflight("fab local.up", commands)
    from deploy.local import lifecycle

    try:
        lifecycle.up(
            count, say, db_pool=pool, load_balancer=True if load_balancer else None, domain=name
        )
    except (LocalStackError, ImageBuildError) as exc:
        raise Exit(f"local.up: {exc}", code=1) from None


@task(
    help={"if_owner": "only a stack this owner made ($DROPSTACK_STACK_OWNER at up); refuse others"}
)
def down(c, if_owner=""):
    """Stop the hosts and remove their roots, namespaces, firewall table and inventory."""
    # Only root: down must clean up whatever exists, even on a machine missing a tool.
    _preflight("fab local.down", commands={})
    from deploy.local import teardown

    try:
        teardown.down(say, if_owner)
    except LocalStackError as exc:
        raise Exit(f"local.down: {exc}", code=1) from None


@task
def status(c):
    """Print each host, its addresses, whether it runs and whether SSH answers."""
    _preflight("fab local.status", commands={})  # the state directory is root's alone
    from deploy.local import operate

    rows, leftovers, paths = operate.status()
    if not rows:
        if leftovers:
            raise Exit(
                f"local.status: a half-made local stack exists ({', '.join(leftovers[:3])}); "
                "run `fab local.down`",
                code=1,
            )
        say("no local stack; `fab local.up` starts one")
        return
    print(f"{'HOST':<8} {'PUBLIC':<15} {'PRIVATE':<15} {'CONTAINER':<10} SSH")
    for row in rows:
        print(
            f"{row.host.name:<8} {row.host.public_ip or '-':<15} {row.host.private_ip:<15} "
            f"{'running' if row.running else 'stopped':<10} {'ok' if row.ssh else 'no answer'}"
        )
    inventory = paths.inventory if paths.inventory.exists() else "(not written)"
    print(f"inventory: {inventory}")
    if not all(r.running and r.ssh for r in rows):
        raise Exit(
            "local.status: not every host is up; `fab local.up` boots stopped hosts again", 1
        )


@task(help={"host": "web-N or db"})
def reboot(c, host):
    """Reboot a host as a droplet reboots (systemctl reboot inside it): its disk stays."""
    _preflight("fab local.reboot")
    from deploy.local import operate

    try:
        operate.reboot(host, say)
    except (LocalStackError, KeyError) as exc:
        raise Exit(f"local.reboot: {exc.args[0]}", code=1) from None


@task(help={"host": "web-N or db"})
def poweroff(c, host):
    """Pull a host's plug (SIGKILL its container, no shutdown); `fab local.up` boots it again."""
    _preflight("fab local.poweroff", commands={})
    from deploy.local import operate

    try:
        operate.poweroff(host, say)
    except (LocalStackError, KeyError) as exc:
        raise Exit(f"local.poweroff: {exc.args[0]}", code=1) from None


@task(help={"host": "web-N or db (default web-1)", "command": "run this instead of a shell"})
def ssh(c, host="web-1", command=None):
    """Open SSH to a host as the deploy user with the stack's key (replaces this process)."""
    _preflight("fab local.ssh", commands={"ssh": "openssh-client"})
    from deploy.local import hosts, operate

    try:
        plan, paths = operate.running_plan()
        target = plan.host(host)
    except (LocalStackError, KeyError) as exc:
        raise Exit(f"local.ssh: {exc.args[0]}", code=1) from None
    argv = hosts.ssh_command(
        target, key_path=paths.key, known_hosts=paths.known_hosts, command=command
    )
    os.execvp(argv[0], argv)  # noqa: S606 (becoming ssh is the point)
