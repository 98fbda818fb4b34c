"""The backup itself, its read-back check, and what the bucket holds.

A dump without a manifest is not a backup: the manifest is written last, only after the object
in the bucket was read back and found to be exactly the bytes sent.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import subprocess
import time

from .environment import (
    base_environment,
    libpq_environment,
    need,
    rclone_command,
    rclone_environment,
    remote_path,
    url_database,
)
from .errors import JobError
from .names import ALEMBIC_TABLE, DUMP_SUFFIX, ID_PATTERN, MANIFEST_SUFFIX, unused_id
from .processes import Stage, in_thread, pump, run

# COPY blocks of `pg_restore --data-only`: each data line is one row (newlines are escaped).
COPY_LINE = re.compile(rb"^COPY (.+?) \(.*\) FROM stdin;$")


def count_rows(stream) -> dict:
    """Rows per table, and the alembic revision, from `pg_restore --data-only` SQL."""
    counts: dict[str, int] = {}
    revisions: list[str] = []
    table = None
    for line in stream:
        line = line.rstrip(b"\n")
        if table is None:
            match = COPY_LINE.match(line)
            if match:
                table = match.group(1).decode()
                counts.setdefault(table, 0)
        elif line == b"\\.":
            table = None
        else:
            counts[table] += 1
            if table == ALEMBIC_TABLE:
                revisions.append(line.decode())
    return {"tables": counts, "schema_revision": ",".join(sorted(revisions)) or None}


def backup(env: dict[str, str], work_dir: str, now: datetime.datetime) -> dict:
    """pg_dump -Fc | age | rclone rcat, with the dump also read back by pg_restore (row counts,
    and proof it parses); then the object is downloaded again and compared byte for byte
    (size and sha256) before the manifest is written. No manifest: no backup.

    The caller holds the host's backup lock (``cli``), so the id chosen here from the bucket's
    listing stays this backup's alone."""
    started = time.monotonic()
    backup_id = unused_id(now, bucket_ids(env))
    obj = backup_id + DUMP_SUFFIX
    pg = {**base_environment(env), **libpq_environment(need(env, "DATABASE_URL"), work_dir)}
    s3 = rclone_environment(env)
    recipients = need(env, "BACKUP_RECIPIENTS_FILE")
    dump = Stage("pg_dump", ["pg_dump", "--format=custom", "--no-password"], pg,
                 stdout=subprocess.PIPE)  # fmt: skip
    plain = base_environment(env)
    reader = Stage("pg_restore (reading the dump back)", ["pg_restore", "--data-only", "-f", "-"],
                   plain, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    encrypt = Stage("age", ["age", "--encrypt", "-R", recipients], base_environment(env),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    upload = Stage("rclone rcat", rclone_command(env, "rcat", remote_path(env, obj)), s3,
                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)  # fmt: skip
    digest = hashlib.sha256()
    threads = [
        in_thread(pump, dump.proc.stdout, [encrypt.proc.stdin, reader.proc.stdin]),
        in_thread(pump, encrypt.proc.stdout, [upload.proc.stdin], digest),
        in_thread(count_rows, reader.proc.stdout),
    ]
    for thread, _ in threads:
        thread.join()
    # pipefail: every stage must have succeeded, the first failure is the reason.
    failures = [f for f in (s.failure() for s in (dump, reader, encrypt, upload)) if f]
    if failures:
        remove_orphan(env, obj)
        raise JobError(failures[0])
    uploaded = threads[1][1]["value"]
    contents = threads[2][1]["value"]
    size, sha256 = uploaded["size"], digest.hexdigest()
    try:
        verify_object(env, obj, size, sha256)
    except JobError:
        remove_orphan(env, obj)
        raise
    manifest = {
        "id": backup_id,
        "created": now.isoformat(timespec="seconds"),
        "object": obj,
        "size": size,
        "sha256": sha256,
        "database": url_database(env["DATABASE_URL"]),
        "schema_revision": contents["schema_revision"],
        "tables": dict(sorted(contents["tables"].items())),
        "format": "pg_dump --format=custom | age",
        "pg_dump": run("pg_dump --version", ["pg_dump", "--version"], pg).decode().strip(),
        "seconds": round(time.monotonic() - started, 2),
    }
    text = json.dumps(manifest, indent=2).encode() + b"\n"
    manifest_path = remote_path(env, backup_id + MANIFEST_SUFFIX)
    run("rclone rcat (manifest)", rclone_command(env, "rcat", manifest_path), s3, text)
    return manifest


def remove_orphan(env: dict[str, str], obj: str) -> None:
    """Best effort: a dump without a manifest is never listed as a backup anyway, but it
    costs storage (the bucket may be unreachable, which is often why the backup failed)."""
    argv = rclone_command(env, "--low-level-retries", "1", "deletefile", remote_path(env, obj))
    subprocess.run(argv, env=rclone_environment(env), capture_output=True, check=False)


def verify_object(env: dict[str, str], obj: str, size: int, sha256: str) -> None:
    """The bucket holds exactly the bytes sent: listed size, then a full read-back's sha256
    (an S3 ETag is no checksum for multipart uploads, and rclone cannot know one for a stream)."""
    s3 = rclone_environment(env)
    listed = json.loads(run("rclone lsjson", rclone_command(env, "lsjson", remote_path(env)), s3))
    found = {entry["Name"]: entry["Size"] for entry in listed}
    if found.get(obj) != size:
        raise JobError(f"upload check: {obj} is {found.get(obj)} bytes in the bucket, sent {size}")
    reading = Stage("rclone cat (upload check)", rclone_command(env, "cat", remote_path(env, obj)),
                    s3, stdout=subprocess.PIPE)  # fmt: skip
    digest = hashlib.sha256()
    read = pump(reading.proc.stdout, [], digest)
    failure = reading.failure()
    if failure:
        raise JobError(failure)
    if (read["size"], digest.hexdigest()) != (size, sha256):
        raise JobError(f"upload check: {obj} read back differs (sha256 {digest.hexdigest()})")


def bucket_ids(env: dict[str, str]) -> set[str]:
    """Every backup id that has an object in the bucket: a dump, a manifest, or both. Asked
    before pg_dump starts, so a bucket that is down fails the backup at once: three quick
    tries, not rclone's low-level retries with back-off (minutes against a refused port)."""
    argv = rclone_command(env, "--low-level-retries", "1", "lsjson", remote_path(env))
    listed = json.loads(run("rclone lsjson", argv, rclone_environment(env)))
    suffixes = (DUMP_SUFFIX, MANIFEST_SUFFIX)
    return {
        entry["Name"].removesuffix(suffix)
        for entry in listed
        for suffix in suffixes
        if entry["Name"].endswith(suffix)
    }


def list_backups(env: dict[str, str]) -> list[dict]:
    """Every dump object with its size, time and whether its manifest exists (complete)."""
    s3 = rclone_environment(env)
    listed = json.loads(run("rclone lsjson", rclone_command(env, "lsjson", remote_path(env)), s3))
    names = {entry["Name"] for entry in listed}
    backups = []
    for entry in sorted(listed, key=lambda e: e["Name"]):
        backup_id = entry["Name"].removesuffix(DUMP_SUFFIX)
        if entry["Name"].endswith(DUMP_SUFFIX) and ID_PATTERN.fullmatch(backup_id):
            complete = backup_id + MANIFEST_SUFFIX in names
            backups.append({"id": backup_id, "size": entry["Size"], "complete": complete})
    return backups


def copy_object(env: dict[str, str], name: str, out) -> None:
    """An object's bytes (a manifest, or an encrypted dump) from the bucket to ``out``."""
    cat = Stage("rclone cat", rclone_command(env, "cat", remote_path(env, name)),
                rclone_environment(env), stdout=subprocess.PIPE)  # fmt: skip
    pump(cat.proc.stdout, [out], close=False)
    failure = cat.failure()
    if failure:
        raise JobError(failure)
