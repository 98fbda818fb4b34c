"""`fab db.*`: the stack's logical backups (registered as the `db` namespace in deploy/tasks.py).

The job runs on the stack's first web host; restores and drills decrypt here, with the
operator's private key (``dropstack.backup.identity_file``). Errors are one line.
"""

from __future__ import annotations

import datetime
import functools
import json
import sys

from invoke import task
from invoke.exceptions import Exit

from deploy.backup import restore
from deploy.backup.on_host.errors import JobError
from deploy.backup.on_host.names import check_target_database
from deploy.backup.settings import BackupLayout, BackupSettings
from deploy.backup.sites import HostSite, run
from deploy.host_model import SettingsError, for_host
from deploy.inventory import InventoryError
from deploy.provision.desired import app_database_url
from deploy.targets import HostUnreachable, connect, resolve_inventory

TARGET_HELP = {
    "stack": "read hosts from this Pulumi stack's outputs instead of the local droplet",
    "inventory": "read hosts from this inventory JSON file instead of the local droplet",
}


class _Target:
    """The first web host, its backup layout, and what a restore needs from the inventory."""

    def __init__(self, c, stack, inventory) -> None:
        self.inv = resolve_inventory(stack, inventory)
        self.web = self.inv.web_hosts[0]
        self.settings = for_host(c.config, self.inv, self.web)
        self.backup = BackupSettings.from_config(c.config)
        self.layout = BackupLayout(self.settings.paths)
        self.site = HostSite(connect(self.inv, self.web, c.config), self.web.name)

    def command(self, *args: str) -> list[str]:
        return self.layout.job_command(*args)

    def require_job(self) -> None:
        """The job runs on the first web host only where provisioning put it: say why not
        (backups off in the config, or the host not provisioned since) rather than the job's
        own error about a missing file."""
        off = [
            *([] if self.inv.has_backup_bucket else ["the inventory has no backup bucket"]),
            *([] if self.backup.recipient else ["dropstack.backup.recipient is not set"]),
        ]
        if off:
            raise SettingsError(f"backups are off for this stack: {' and '.join(off)} "
                                "(docs/backups.md)")  # fmt: skip
        if run(self.site, ["test", "-f", self.layout.env_file]).code != 0:
            raise SettingsError(
                f"{self.web.name}: the backup job is not installed (no {self.layout.env_file}); "
                f"run fab provision"
            )

    def admin_url(self) -> str:
        uri = self.inv.data.get("db_admin_uri")
        if not uri:
            raise SettingsError("inventory: db_admin_uri is missing; restores need the admin URI")
        return app_database_url(uri, self.settings.paths.db_ca_cert)

    def identity(self) -> str:
        path = self.backup.identity_path(self.inv["stack"])
        if not path.is_file():
            raise SettingsError(
                f"backup.identity_file: {path} does not exist; the stack's age key (age-keygen)"
            )
        return str(path)


def _errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InventoryError, HostUnreachable, SettingsError, restore.BackupError,
                JobError) as exc:  # fmt: skip
            raise Exit(f"error: {exc}", code=1) from None

    return wrapper


@task(help=TARGET_HELP)
@_errors
def backup(c, stack=None, inventory=None):
    """Take a backup now (the timer's unit, on the first web host) and show its status."""
    t = _Target(c, stack, inventory)
    t.require_job()
    done = run(t.site, ["systemctl", "start", t.layout.service])
    status = restore.job_json(t.site, t.command("status"))
    if done.code != 0:
        failure = (status.get("last_failure") or {}).get("reason") or done.last_error()
        raise Exit(f"error: backup failed on {t.web.name}: {failure}", code=1)
    print(f"{t.web.name}: backup {status['last_success']['id']} ok")


@task(help=TARGET_HELP)
@_errors
def backups(c, stack=None, inventory=None):
    """List the bucket's backups with age and size; exit 1 if the newest is stale or the last
    run, or the last drill, failed."""
    t = _Target(c, stack, inventory)
    t.require_job()
    now = datetime.datetime.now(datetime.UTC)
    rows = restore.listing(restore.job_json(t.site, t.command("list")), now)
    for row in rows:
        state = "" if row["complete"] else "  INCOMPLETE (no manifest: not a backup)"
        size = restore.human_size(row["size"])
        print(f"{row['id']}  {row['age_hours']:7.1f} h  {size:>10}{state}")
    status = restore.job_json(t.site, t.command("status"))
    problems = restore.status_problems(status, now, t.backup.stale_hours)
    stale = restore.stale(rows, t.backup.stale_hours)
    problems = ([stale] if stale else []) + problems
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        raise Exit(code=1)


@task(
    name="restore",
    help={
        **TARGET_HELP,
        "backup": "the backup id (fab db.backups lists them)",
        "into": "the new database to restore into (never the app's)",
    },
)
@_errors
def restore_(c, backup, into, stack=None, inventory=None):
    """Restore a backup into a new scratch database and verify it against its manifest."""
    t = _Target(c, stack, inventory)
    t.require_job()
    forbidden = {t.inv["db_name"]}
    check_target_database(into, forbidden)
    result = restore.restore(t.site, t.command, t.identity(), backup, into, t.admin_url())
    _report(result)


@task(help={**TARGET_HELP, "backup": "the backup id (default: the newest complete one)"})
@_errors
def drill(c, backup=None, stack=None, inventory=None):
    """Restore into a throwaway database, verify, drop it, record the result on the host."""
    t = _Target(c, stack, inventory)
    t.require_job()
    result = restore.drill(t.site, t.command, t.identity(), t.admin_url(), backup)
    print(json.dumps(result.record()))
    _report(result)


def _report(result: restore.RestoreResult) -> None:
    if result.ok:
        print(f"{result.backup_id} -> {result.database}: OK ({result.seconds:.1f} s)")
        return
    for difference in result.differences:
        print(f"  {difference}", file=sys.stderr)
    raise Exit(f"error: {result.backup_id} -> {result.database}: FAILED: {result.reason}", code=1)
