"""The host's side of a restore: create and load a new database, inspect it, drop it.

Each command reads the admin URL on the first line of stdin (never a command line); a restore's
dump follows it on the same stream.
"""

from __future__ import annotations

import subprocess

from .environment import base_environment, libpq_environment, url_database
from .errors import JobError, NotCreated
from .names import ALEMBIC_TABLE, check_target_database
from .processes import Stage, pump, run

COUNT_SQL = """\
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       (xpath('/row/c/text()', query_to_xml(
           format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')
       ))[1]::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1;
"""


def admin_url_from(stream) -> str:
    line = stream.readline().decode().strip()
    if not line:
        raise JobError("admin URL: expected on the first line of stdin")
    return line


def psql(env: dict[str, str], sql: str, variables: dict[str, str] | None = None) -> str:
    """SQL on stdin, so psql interpolates :"name" variables (it does not in -c strings)."""
    argv = ["psql", "--no-psqlrc", "--no-password", "--quiet", "-X", "-At", "-F", "\t",
            "-v", "ON_ERROR_STOP=1"]  # fmt: skip
    for key, value in (variables or {}).items():
        argv += ["-v", f"{key}={value}"]
    return run("psql", argv, env, sql.encode()).decode()


def forbidden_names(env: dict[str, str], admin_url: str) -> set[str]:
    names = {url_database(admin_url)}
    if env.get("DATABASE_URL"):
        names.add(url_database(env["DATABASE_URL"]))
    return names


def restore(env: dict[str, str], work_dir: str, name: str, stream) -> None:
    """CREATE DATABASE name (never an existing one), then pg_restore the dump from ``stream``
    in one transaction: a broken dump leaves an empty database, never half of one."""
    admin_url = admin_url_from(stream)
    try:
        check_target_database(name, forbidden_names(env, admin_url))
    except JobError as exc:
        raise NotCreated(str(exc)) from None
    admin = {**base_environment(env), **libpq_environment(admin_url, work_dir)}
    try:
        psql(admin, 'CREATE DATABASE :"name";\n', {"name": name})
    except JobError as exc:
        raise NotCreated(f"create database {name}: {exc}") from None
    argv = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
            "--single-transaction", "--no-password", f"--dbname={name}"]  # fmt: skip
    loader = Stage("pg_restore", argv, admin, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    copied = pump(stream, [loader.proc.stdin])
    failure = loader.failure()
    if failure:
        raise JobError(failure)
    if copied["error"]:
        raise JobError(f"pg_restore: input broke off ({copied['error']})")


def inspect(env: dict[str, str], work_dir: str, name: str, stream) -> dict:
    """Exact row counts of every table and the alembic revision of database ``name``."""
    admin_url = admin_url_from(stream)
    check_target_database(name, set())
    pg = {**base_environment(env), **libpq_environment(admin_url, work_dir, database=name)}
    tables = {}
    for line in psql(pg, COUNT_SQL).splitlines():
        table, _, count = line.partition("\t")
        tables[table] = int(count)
    revision = None
    if ALEMBIC_TABLE in tables:
        rows = psql(pg, "SELECT version_num FROM public.alembic_version ORDER BY 1;\n")
        revision = ",".join(rows.split()) or None
    return {"database": name, "schema_revision": revision, "tables": tables}


def drop(env: dict[str, str], work_dir: str, name: str, stream) -> None:
    admin_url = admin_url_from(stream)
    check_target_database(name, forbidden_names(env, admin_url))
    admin = {**base_environment(env), **libpq_environment(admin_url, work_dir)}
    psql(admin, 'DROP DATABASE IF EXISTS :"name" WITH (FORCE);\n', {"name": name})
