"""The app user's privileges in its database, granted once through the cluster's admin.

On DigitalOcean's managed PostgreSQL 15+, a database made through the API belongs to ``doadmin``
and a user made through the API has nothing but its login; PostgreSQL 15 lets only a database's
owner create objects in schema ``public``. So the app user's first migration fails with
"permission denied for schema public" until the admin grants it USAGE and CREATE there.

The admin's credentials (the inventory's ``db_admin_uri``) never reach a host: the operator's
machine connects to the database through an SSH tunnel via the first web host (the database
trusts only the web tier), verifying the server's certificate against the cluster's CA for the
database's own name (libpq's ``host`` is checked, ``hostaddr`` is the tunnel's end).
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from fabric import Connection
from invoke.exceptions import ThreadException
from psycopg import sql

from deploy.inventory import Inventory

# What the app user may do in schema public: (USAGE, CREATE).
PRIVILEGES_QUERY = (
    "SELECT has_schema_privilege(%(user)s, 'public', 'USAGE'), "
    "has_schema_privilege(%(user)s, 'public', 'CREATE')"
)


def grant_statement(user: str) -> sql.Composed:
    return sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(user))


def missing_privileges(have: tuple[bool, bool]) -> list[str]:
    """The privileges on schema public the app user lacks, by name."""
    return [name for name, granted in zip(("USAGE", "CREATE"), have, strict=True) if not granted]


def connection_kwargs(admin_uri: str, local_port: int, ca_file: str) -> dict:
    """libpq parameters for the admin, through the tunnel, verifying the real server name."""
    uri = urlsplit(admin_uri)
    return {
        "host": uri.hostname,  # what the certificate must name
        "hostaddr": "127.0.0.1",  # where the tunnel listens
        "port": local_port,
        "user": unquote(uri.username or ""),
        "password": unquote(uri.password or ""),
        "dbname": unquote(uri.path.lstrip("/")),
        "sslmode": "verify-full",
        "sslrootcert": ca_file,
        "connect_timeout": 10,
        "application_name": "dropstack-provision",
    }


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, seconds: float = 5.0) -> None:
    """Fabric starts the tunnel's listener in a thread and returns at once: wait until it
    accepts, or libpq's first connect would be refused."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# What Fabric's tunnel thread raises when the client closes its end abruptly (psycopg after the
# server refused a login, or at the end of a session): the client's business, not a failure.
CLIENT_HANG_UPS = (ConnectionResetError, BrokenPipeError, EOFError)


@contextlib.contextmanager
def tunnel(c: Connection, local_port: int, remote_host: str, remote_port: int) -> Iterator[None]:
    """``c.forward_local`` from 127.0.0.1:``local_port``, without its one false alarm: Fabric
    raises a ThreadException at exit when the client hung up abruptly, which would replace the
    error that made it hang up (a refused password) or fail a session that went well. Any
    other trouble in the tunnel is raised as Fabric raises it."""
    try:
        with c.forward_local(local_port, remote_port=remote_port, remote_host=remote_host,
                             local_host="127.0.0.1"):  # fmt: skip
            yield
    except ThreadException as exc:
        if not all(isinstance(e.value, CLIENT_HANG_UPS) for e in exc.exceptions):
            raise
        if exc.__context__ is not None:
            raise exc.__context__ from None


@contextlib.contextmanager
def admin_session(c: Connection, inv: Inventory) -> Iterator[psycopg.Connection]:
    """A connection to the app database as the cluster's admin, through ``c``'s host."""
    uri = urlsplit(inv["db_admin_uri"])
    local_port = free_local_port()
    with tempfile.TemporaryDirectory(prefix="dropstack-db-") as tmp:
        ca_file = Path(tmp) / "ca.crt"
        ca_file.write_text(inv["db_ca_cert"])
        with tunnel(c, local_port, uri.hostname or "", uri.port or 25060):
            wait_listening(local_port)
            kwargs = connection_kwargs(inv["db_admin_uri"], local_port, str(ca_file))
            with psycopg.connect(**kwargs, autocommit=True) as conn:
                yield conn


def read_privileges(c: Connection, inv: Inventory) -> tuple[bool, bool]:
    with admin_session(c, inv) as conn:
        row = conn.execute(PRIVILEGES_QUERY, {"user": inv["db_user"]}).fetchone()
    return bool(row[0]), bool(row[1])


def grant(c: Connection, inv: Inventory) -> None:
    with admin_session(c, inv) as conn:
        conn.execute(grant_statement(inv["db_user"]))
