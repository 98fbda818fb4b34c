"""The task namespace `fab` sees (`fab --list`). Tasks stay thin: they parse flags, then call
the module that does the work. Errors reach the user as one line, never a traceback.

`fab` imports this module, and with it every task module, on every run, whatever the task: a
task module imports the heavy parts of its work (provisioning's operations, the local droplet,
psycopg, Pulumi's settings) inside its tasks, so that `fab rollback` starts in a quarter second
rather than half a second (docs/benchmarks.md)."""

from __future__ import annotations

import functools

from invoke import Collection, task
from invoke.exceptions import Exit

from deploy import maintenance, notify
from deploy.backup import tasks as backup_tasks
from deploy.host_model import SettingsError
from deploy.inventory import InventoryError
from deploy.local import tasks as local_tasks
from deploy.release import reports
from deploy.release import tasks as release_tasks
from deploy.secrets import tasks as secret_tasks
from deploy.steps import exit_quietly_on_closed_pipe
from deploy.targets import HostUnreachable

exit_quietly_on_closed_pipe()

TARGET_HELP = {
    "stack": "read hosts from this Pulumi stack's outputs instead of the local droplet",
    "inventory": "read hosts from this inventory JSON file instead of the local droplet",
    "hosts": "comma-separated web host names to act on (default: all)",
}


def one_line_errors(func):
    """Turn the errors users cause (bad target, unreachable host, bad settings) into one line."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InventoryError, HostUnreachable, SettingsError) as exc:
            raise Exit(f"error: {exc}", code=1) from None

    return wrapper


@task(
    help={
        **TARGET_HELP,
        "serial": "one host at a time instead of all in parallel",
        "check": "print what would change (diffs, packages, units, rules), change nothing, "
        "exit 1 if anything would: drift detection",
    }
)
@one_line_errors
def provision(c, stack=None, inventory=None, hosts=None, serial=False, check=False):
    """Bring web hosts to the desired state; prints each step as changed/ok. Idempotent."""
    from deploy.provision import runner as provisioning

    provisioning.provision_targets(c, stack, inventory, hosts, serial, check)


@task(
    help={
        **TARGET_HELP,
        "check": "only report the hosts whose deploy user accepts a key not in ssh_public_keys "
        "(or lacks one), exit 1 if any",
    }
)
@one_line_errors
def rotate(c, stack=None, inventory=None, hosts=None, check=False):
    """Make each host's deploy user accept exactly the stack's ssh_public_keys (sshPublicKeys):
    new keys added, old ones removed, no droplet replaced. Refuses to drop the key it uses."""
    from deploy.provision import runner as provisioning

    provisioning.provision_targets(
        c, stack, inventory, hosts, serial=False, check=check,
        only=frozenset({"deploy user's ssh keys"}), task="keys.rotate",
    )  # fmt: skip


namespace = Collection(
    provision,
    release_tasks.deploy,
    release_tasks.rollback,
    reports.releases,
    reports.status,
    reports.logs,
    reports.unlock,
)
namespace.add_collection(Collection.from_module(local_tasks), name="local")
namespace.add_collection(Collection(rotate), name="keys")
namespace.add_collection(Collection.from_module(backup_tasks), name="db")
namespace.add_collection(Collection(secret_tasks.rotate), name="secrets")
namespace.add_collection(
    Collection(maintenance.maintenance_on, maintenance.maintenance_off), name="maintenance"
)
# Invoke maps FABRIC_DROPSTACK_NOTIFY_* onto keys that exist: declare them with their defaults.
namespace.configure(notify.CONFIG_DEFAULTS)
