"""The command line of job.py: settings from ``--env-file``s over the environment, one command.

Exit status: 0 done, 1 a one-line ``error:`` on stderr, 2 usage, ``NOT_CREATED_EXIT`` when a
restore's target database was not created (the operator's side then has nothing to drop).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import sys
import tempfile

from . import databases, dump, status
from .environment import parse_env_file
from .errors import NOT_CREATED_EXIT, JobError, NotCreated
from .names import DUMP_SUFFIX, MANIFEST_SUFFIX, check_id

USAGE = """\
    job.py [--env-file FILE]... backup          dump, encrypt, upload, verify, write the manifest
    job.py ... list                             the bucket's backups (JSON)
    job.py ... manifest ID | cat ID             a backup's manifest / its encrypted bytes
    job.py ... restore NAME                     stdin: admin URL line, then the decrypted dump
    job.py ... inspect NAME | drop NAME         stdin: admin URL line
    job.py ... record-drill                     stdin: a drill result (JSON) for the state dir
    job.py ... status                           the state dir's status.json and drill.json
"""


def take_backup(env: dict[str, str], work_dir: str, now: datetime.datetime) -> None:
    """The unit's command: the backup, its outcome recorded in status.json either way.

    One backup at a time per host: a second one (the timer while `fab db.backup` runs) waits
    for the first to end, then takes its own id."""
    try:
        with open(status.state_file(env, "backup.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            manifest = dump.backup(env, work_dir, now)
    except JobError as exc:
        status.record_outcome(env, now, reason=str(exc))
        raise
    status.record_outcome(env, now, manifest=manifest)
    print(f"backup {manifest['id']}: {manifest['size']} bytes, sha256 "
          f"{manifest['sha256']}, verified in the bucket")  # fmt: skip


def main(argv: list[str]) -> int:
    env_files = []
    while len(argv) >= 2 and argv[0] == "--env-file":
        env_files.append(argv[1])
        argv = argv[2:]
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    env = dict(os.environ)
    for path in env_files:
        with open(path) as handle:
            env.update(parse_env_file(handle.read()))
    command, args = argv[0], argv[1:]
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017  (datetime.UTC: 3.11+)
    out = sys.stdout.buffer
    with tempfile.TemporaryDirectory(prefix="dropstack-backup-") as work_dir:
        env.setdefault("BACKUP_WORK_DIR", work_dir)
        try:
            if command == "backup":
                take_backup(env, work_dir, now)
            elif command == "list":
                out.write(json.dumps(dump.list_backups(env)).encode() + b"\n")
            elif command in ("manifest", "cat"):
                suffix = MANIFEST_SUFFIX if command == "manifest" else DUMP_SUFFIX
                dump.copy_object(env, check_id(args[0]) + suffix, out)
            elif command == "restore":
                databases.restore(env, work_dir, args[0], sys.stdin.buffer)
            elif command == "inspect":
                found = databases.inspect(env, work_dir, args[0], sys.stdin.buffer)
                out.write(json.dumps(found).encode() + b"\n")
            elif command == "drop":
                databases.drop(env, work_dir, args[0], sys.stdin.buffer)
            elif command == "record-drill":
                status.record_drill(env, json.load(sys.stdin))
            elif command == "status":
                out.write(json.dumps(status.status_with_drill(env)).encode() + b"\n")
            else:
                raise JobError(f"command: {command!r} is not one; see job.py without arguments")
        except NotCreated as exc:
            print(f"error: {exc}", file=sys.stderr)
            return NOT_CREATED_EXIT
        except (JobError, IndexError) as exc:
            reason = str(exc) if isinstance(exc, JobError) else f"{command}: argument missing"
            print(f"error: {reason}", file=sys.stderr)
            return 1
    out.flush()
    return 0
