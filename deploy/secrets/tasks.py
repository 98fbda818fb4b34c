"""`fab secrets.rotate`: the app's SECRET_KEY and the database password, rolled through the
blue/green switch (registered as the `secrets` namespace in deploy/tasks.py)."""

from __future__ import annotations

import threading
import time

from invoke import task
from invoke.exceptions import Exit

from deploy.host_model import SettingsError
from deploy.inventory import InventoryError
from deploy.release.host import Interrupted, release_lock
from deploy.release.lock import new_holder
from deploy.release.rollout import (
    INTERRUPTED_EXIT,
    TARGET_HELP,
    interrupts_cancel,
    lock_all,
    open_hosts,
    settings_of,
)
from deploy.secrets import plan
from deploy.steps import StepFailed, say
from deploy.targets import HostUnreachable, resolve_inventory


@task(
    help={
        **TARGET_HELP,
        "secret_key": "rotate the app's SECRET_KEY (stages: accept, sign, retire)",
        "db_password": "rotate the app user's database password (all hosts; not with --hosts)",
        "keep_old_key": "stop before the retire stage: old sessions stay valid until --retire",
        "retire": "only drop SECRET_KEY_FALLBACKS left by --keep-old-key or an unfinished run",
        "wait": "seconds to wait for another deploy's lock (default: fail at once)",
    }
)
def rotate(c, secret_key=False, db_password=False, keep_old_key=False, retire=False,
           stack="", inventory="", hosts="", wait=-1):  # fmt: skip
    """Rotate secrets with zero failed requests: new values reach each host's env file over
    SFTP, the live release restarts on the idle slot, and the old value is checked dead."""
    if not (secret_key or db_password or retire):
        raise Exit("dropstack: secrets.rotate: say what: --secret-key, --db-password or --retire",
                   code=1)  # fmt: skip
    if db_password and hosts:
        raise Exit("dropstack: --db-password: every host shares the password; --hosts is not "
                   "allowed with it", code=1)  # fmt: skip
    # Here, not at the top: `fab` imports every task module on every run (deploy/tasks.py).
    import psycopg

    from deploy.secrets import rotate as rotation

    started = time.monotonic()
    cancel = threading.Event()
    with interrupts_cancel(cancel):
        selected = open_hosts(c, stack, inventory, hosts, cancel, task="secrets.rotate")
        try:
            inv = resolve_inventory(stack, inventory) if db_password else None
            holder = new_holder("secrets.rotate", "-", "-")
            wait = settings_of(c).lock_wait if wait < 0 else wait
            locked = lock_all(selected, holder, wait)
            try:
                if db_password:
                    rotation.rotate_db_password(selected, inv, holder)
                if secret_key or retire:
                    stages = rotation.rotate_secret_key(
                        selected,
                        holder,
                        keep_old=keep_old_key,
                        retire_only=retire and not secret_key,
                    )
                    say(f"secret key: stages {', '.join(stages)} done")
            finally:
                for h in locked:
                    release_lock(h, holder)
        except Interrupted:
            raise Exit(
                "dropstack: rotation interrupted; locks released", INTERRUPTED_EXIT
            ) from None
        except (plan.RotationError, StepFailed, InventoryError, HostUnreachable,
                SettingsError) as exc:  # fmt: skip
            raise Exit(f"dropstack: {exc}", code=1) from None
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())[-300:] or type(exc).__name__
            raise Exit(f"dropstack: database: {reason}", code=1) from None
    say(f"rotation done in {time.monotonic() - started:.1f}s")
