"""Recovery point and recovery time of the logical backups, measured on this machine.

``python -m bench.backup [--megabytes N]`` fills an app database (the real migrations) with about
N MB of task rows, takes a backup with the real job (pg_dump | age | rclone into moto on
loopback, read back and checked), then restores it into a scratch database with the real
restore (download | age --decrypt | pg_restore, then exact row counts against the manifest).
It needs no droplet: PostgreSQL 15, moto, age and rclone all run here, as in tests/backup.
Prints one JSON document: sizes, backup seconds, restore seconds, and the recovery point.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from deploy.backup import restore
from tests.backup.conftest import S3Server, make_stack
from tests.postgres_cluster import PostgresCluster

BATCH_ROWS = 200_000


def fill(url: str, megabytes: int) -> int:
    """Insert rows until the tasks table is ~``megabytes`` on disk; titles are 192 characters
    of independent random hex, which compresses about as well as prose (~2x), not like
    repeated text would."""
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            conn.execute(
                "INSERT INTO tasks (title) SELECT concat(md5(random()::text), md5(random()::text),"
                " md5(random()::text), md5(random()::text), md5(random()::text), md5(g::text))"
                " FROM generate_series(1, %s) g",
                (BATCH_ROWS,),
            )
            size = conn.execute("SELECT pg_total_relation_size('tasks')").fetchone()[0]
            if size >= megabytes * 1024 * 1024:
                conn.execute("VACUUM ANALYZE tasks")
                return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]


def measure(megabytes: int) -> dict:
    with tempfile.TemporaryDirectory() as work, PostgresCluster() as postgres:
        work_dir = Path(work)
        server = S3Server(work_dir / "moto.log")
        try:
            key = work_dir / "backup.key"
            subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
            public = subprocess.run(["age-keygen", "-y", str(key)], check=True,
                                    capture_output=True).stdout.decode().strip()  # fmt: skip
            (work_dir / "host").mkdir()
            stack = make_stack(work_dir / "host", postgres, server, (key, public), "bench-backups")
            started = time.monotonic()
            rows = fill(stack.url, megabytes)
            fill_seconds = time.monotonic() - started
            with psycopg.connect(stack.url) as conn:
                db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            started = time.monotonic()
            done = stack.backup()
            backup_seconds = time.monotonic() - started
            if done.returncode != 0:
                raise SystemExit(f"backup failed: {done.stderr.strip()}")
            backups = restore.job_json(stack.site, stack.command("list"))
            newest = max(b["id"] for b in backups if b["complete"])
            manifest = restore.job_json(stack.site, stack.command("manifest", newest))
            result = restore.restore(stack.site, stack.command, str(key), newest, "bench_restore",
                                     stack.admin_url)  # fmt: skip
            if not result.ok:
                raise SystemExit(f"restore failed: {result.reason}")
            age_at_end = time.time() - restore.backup_time(newest).timestamp()
        finally:
            server.stop()
    return {
        "rows": rows,
        "database_bytes": db_bytes,
        "fill_seconds": round(fill_seconds, 1),
        "encrypted_dump_bytes": manifest["size"],
        "backup_seconds": round(backup_seconds, 1),
        "backup_job_seconds": manifest["seconds"],
        "restore_seconds": result.seconds,
        "restored_rows_match": result.differences == [],
        "newest_restorable_backup_age_seconds_at_end": round(age_at_end, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024, help="table size to generate")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.megabytes), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
