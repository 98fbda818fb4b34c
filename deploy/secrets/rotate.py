"""Running a rotation: read and write each host's env file, restart the current release
through the blue/green switch, change the role's password, check the old secret is dead.

The env file travels over SFTP through provisioning's upload (deploy/provision/apply.py),
never on a command line; it is read with ``cat`` as root into memory and never printed. The
restart is a switch to the release already live, on the idle slot (deploy/release/host.py):
the idle slot starts with the new env file, answers /readyz, takes the traffic, and the old
slot is stopped once drained, so no request meets a process that is going away.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from deploy import shell
from deploy.host_model import HostSettings
from deploy.inventory import Inventory
from deploy.provision import apply, database, desired
from deploy.provision.files import RemoteFile
from deploy.release.host import ReleaseHost
from deploy.release.lock import Holder
from deploy.release.rollout import record_audit
from deploy.release.switch import Switch
from deploy.secrets import plan, scram
from deploy.steps import StepFailed, say

KEY_BYTES = 48  # as provisioning makes SECRET_KEY
PASSWORD_BYTES = 32


def env_file(settings: HostSettings, content: str) -> RemoteFile:
    """The app's env file as provisioning writes it (operations.env_files): same mode, owner."""
    return RemoteFile(settings.paths.env_file, content, "0640", "root", settings.app_user,
                      secret=True)  # fmt: skip


def read_env(h: ReleaseHost) -> str:
    return h.run(shell.as_root(["cat", h.layout.env_file])).stdout


def write_env(h: ReleaseHost, content: str) -> bool:
    apply.upload(h.c, env_file(h.host, content))
    return True


def restart(h: ReleaseHost, holder: Holder, action: str) -> bool:
    """Switch the live release to the idle slot, so it starts with the env file as it now is.
    False when nothing is live (the next deploy starts with the new file)."""
    state = h.state()
    if not state.current or not state.live_slot:
        say(f"[{h.name}]   no release live: the next deploy starts with the new env file")
        return False
    started = time.monotonic()
    switch = Switch.plan(h, state.current, state)
    result, detail = "failed", ""
    try:
        for name, step in switch.steps(migrate_first=False):
            h.step(name, step)
        result, detail = "ok", f"slot {switch.idle}"
        return True
    except (StepFailed, KeyboardInterrupt) as exc:
        detail = f"{getattr(exc, 'step', 'interrupted')}: {getattr(exc, 'reason', '')}"
        switch.abandon()
        raise
    finally:
        record_audit(h, holder, action, state.current, holder.revision, result, started, detail)


def update_and_restart(h: ReleaseHost, holder: Holder, action: str, updates) -> bool:
    """Write the new values (when they differ) and restart; the step names say what ran."""
    current = read_env(h)
    content = plan.edited(current, updates)
    if content == current:
        say(f"[{h.name}]   env file already as wanted")
        return False
    h.step("write env file (values never shown)", lambda: write_env(h, content))
    restart(h, holder, action)
    return True


# --- SECRET_KEY ---


def rotate_secret_key(hosts: list[ReleaseHost], holder: Holder, keep_old: bool = False,
                      retire_only: bool = False) -> list[str]:  # fmt: skip
    """Every stage on every host, in rollout order; returns the stages run."""
    envs = {h.name: desired.parse_env_file(read_env(h)) for h in hosts}
    if not retire_only:
        refusal = plan.refuse_to_start(envs)
        if refusal:
            raise plan.RotationError(refusal)
    old = {name: env.get("SECRET_KEY", "") for name, env in envs.items()}
    # One new key for every host, so any host verifies what another signed; retiring keeps
    # the key each host signs with and drops its fallbacks.
    shared = secrets.token_urlsafe(KEY_BYTES)
    new = dict(old) if retire_only else dict.fromkeys(envs, shared)
    stages = plan.secret_key_stages(len(hosts), keep_old, retire_only)
    for stage in stages:
        for h in hosts:
            say(f"[{h.name}] secret key: {stage} stage")
            updates = plan.secret_key_values(stage, old[h.name], new[h.name])
            update_and_restart(h, holder, f"rotate-secret-key-{stage}", updates)
    for h in hosts:
        problem = plan.secret_key_check(
            desired.parse_env_file(read_env(h)), old[h.name], new[h.name], stages[-1]
        )
        if problem:
            raise plan.RotationError(f"{h.name}: after the rotation, {problem}")
    return stages


# --- the database password ---


def alter_role_statement(user: str, verifier: str) -> sql.Composed:
    return sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier))


@contextlib.contextmanager
def app_login(c, inv: Inventory, password: str) -> Iterator[psycopg.Connection]:
    """A login as the app's user with ``password``, through ``c``'s host, to the database (or
    pool) the app's URI names, verifying the server's certificate like the admin session."""
    uri = plan.with_password(inv["db_uri"], password)
    target = urlsplit(uri)
    local_port = database.free_local_port()
    with tempfile.TemporaryDirectory(prefix="dropstack-db-") as tmp:
        ca_file = Path(tmp) / "ca.crt"
        ca_file.write_text(inv["db_ca_cert"])
        with database.tunnel(c, local_port, target.hostname or "", target.port or 25060):
            database.wait_listening(local_port)
            kwargs = database.connection_kwargs(uri, local_port, str(ca_file))
            with psycopg.connect(**kwargs, autocommit=True) as conn:
                yield conn


def login_works(c, inv: Inventory, password: str) -> tuple[bool, str]:
    """(logged in, why not): a refused password is (False, reason); any other failure raises."""
    try:
        with app_login(c, inv, password) as conn:
            conn.execute("SELECT 1")
        return True, ""
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        if plan.login_refused(reason):
            return False, reason
        raise plan.RotationError(f"cannot check the login: {reason[-200:]}") from None


def rotate_db_password(hosts: list[ReleaseHost], inv: Inventory, holder: Holder) -> None:
    """*accept* on every host (the new password as the app's fallback, a switch), then ALTER
    ROLE (existing connections stay: PostgreSQL checks passwords at login only), then *use*
    (the new DATABASE_URL, a switch); then the old password must be refused. A run that
    stopped after *accept* is finished with the password it had chosen."""
    first = hosts[0]
    envs = {h.name: desired.parse_env_file(read_env(h)) for h in hosts}
    old_password = plan.password_of(envs[first.name].get("DATABASE_URL", ""))
    password = plan.pending_password(envs) or secrets.token_urlsafe(PASSWORD_BYTES)
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for h in hosts:  # every env file is usable before anything changes
        plan.database_url_values(plan.env_content(envs[h.name]), password, when)
    for h in hosts:
        say(f"[{h.name}] database password: accept stage")
        update_and_restart(h, holder, "rotate-db-password-accept",
                           plan.accept_password_values(password))  # fmt: skip
    verifier = scram.verifier(password)

    def alter() -> bool:
        with database.admin_session(first.c, inv) as conn:
            conn.execute(alter_role_statement(inv["db_user"], verifier))
        return True

    first.step(f"new password for role {inv['db_user']} (SCRAM verifier)", alter)
    for h in hosts:
        say(f"[{h.name}] database password: use stage")
        updates = plan.database_url_values(read_env(h), password, when)
        update_and_restart(h, holder, "rotate-db-password", updates)
    works, _ = login_works(first.c, inv, password)
    if not works:
        raise plan.RotationError("the new database password is refused; the hosts use it now")
    if old_password:
        still, _ = login_works(first.c, inv, old_password)
        if still:
            raise plan.RotationError("the old database password still logs in")
        say(f"[{first.name}] old database password refused, new one accepted")
