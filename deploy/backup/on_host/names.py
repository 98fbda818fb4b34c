"""Backup ids, the bucket's object names, and the databases a restore may create."""

from __future__ import annotations

import datetime
import re

from .errors import JobError

DUMP_SUFFIX = ".dump.age"
MANIFEST_SUFFIX = ".manifest.json"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z")
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Databases a restore may never target, whatever the app's is called.
RESERVED_DATABASES = frozenset({"postgres", "defaultdb", "template0", "template1", "_dodb"})
ALEMBIC_TABLE = "public.alembic_version"  # its rows are a database's schema revision


def unused_id(now: datetime.datetime, taken: set[str]) -> str:
    """The id of a backup started at ``now``: its UTC second, or the first later second that
    no object in the bucket has. Two backups in one second (the timer and a `fab db.backup`)
    must never share a name: the second would overwrite the first's dump, and on failure
    delete it as its own orphan."""
    second = now.replace(microsecond=0)
    while (backup_id := second.strftime(ID_FORMAT)) in taken:
        second += datetime.timedelta(seconds=1)
    return backup_id


def check_id(backup_id: str) -> str:
    if not ID_PATTERN.fullmatch(backup_id):
        raise JobError(f"backup id: {backup_id!r} is not one; ids look like 20261202T031500Z")
    return backup_id


def check_target_database(name: str, forbidden: set[str]) -> str:
    if not DATABASE_NAME.fullmatch(name):
        raise JobError(f"database name: {name!r} is not allowed; a-z, 0-9, _ (max 63)")
    if name in RESERVED_DATABASES or name in forbidden:
        raise JobError(f"database name: {name!r} is the app's or a system database; refused")
    return name
