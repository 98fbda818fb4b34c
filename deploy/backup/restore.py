"""Restores, drills and listings, run from the operator's machine (where the private key is).

A restore streams three processes together: job.py ``cat`` on the host (the encrypted object)
-> ``age --decrypt`` here, with the operator's private key, hashing the ciphertext as it passes
-> job.py ``restore`` on the host (pg_restore into a new database). Plaintext exists only in
those pipes. Then job.py ``inspect`` counts the rows and ``compare`` holds them against the
manifest. Any stage failing, or the checksum differing, is a failed restore, never a good one.

``compare``, ``listing``, ``stale`` and ``status_problems`` are pure; the rest runs on a
``Site`` (deploy/backup/sites.py), which is a host over SSH or this machine in the tests.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from deploy.backup.on_host import names
from deploy.backup.on_host.errors import NOT_CREATED_EXIT
from deploy.backup.sites import Completed, Site, run

JobCommand = Callable[..., list[str]]


class BackupError(Exception):
    """A backup operation could not run; one line."""


@dataclass
class RestoreResult:
    backup_id: str
    database: str
    outcome: str = "failed"  # "ok" or "failed"
    reason: str | None = None
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0
    time: str = ""
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def record(self) -> dict:
        """The drill record: time, backup id, outcome, seconds, differences."""
        return asdict(self)


# --- pure ---


def compare(manifest: dict, observed: dict) -> list[str]:
    """Every way the restored database differs from the manifest, one line each."""
    differences = []
    if manifest.get("schema_revision") != observed.get("schema_revision"):
        differences.append(
            f"schema revision: backup {manifest.get('schema_revision')}, "
            f"restored {observed.get('schema_revision')}"
        )
    want, have = manifest.get("tables", {}), observed.get("tables", {})
    for table in sorted(set(want) | set(have)):
        if table not in have:
            differences.append(f"{table}: missing (backup has {want[table]} rows)")
        elif table not in want:
            differences.append(f"{table}: not in the backup ({have[table]} rows restored)")
        elif want[table] != have[table]:
            differences.append(f"{table}: backup {want[table]} rows, restored {have[table]}")
    return differences


def backup_time(backup_id: str) -> datetime.datetime:
    return datetime.datetime.strptime(backup_id, names.ID_FORMAT).replace(tzinfo=datetime.UTC)


def listing(backups: list[dict], now: datetime.datetime) -> list[dict]:
    """The bucket's backups, newest first, each with its age in hours."""
    rows = []
    for entry in sorted(backups, key=lambda e: e["id"], reverse=True):
        age = (now - backup_time(entry["id"])).total_seconds() / 3600
        rows.append({**entry, "age_hours": round(age, 2)})
    return rows


def stale(rows: list[dict], stale_hours: float) -> str | None:
    """None when the newest complete backup is young enough, else the error (one line)."""
    complete = [r for r in rows if r["complete"]]
    if not complete:
        return "no complete backup in the bucket"
    newest = complete[0]
    if newest["age_hours"] > stale_hours:
        return (
            f"newest backup {newest['id']} is {newest['age_hours']:.1f} h old "
            f"(stale after {stale_hours:g} h)"
        )
    return None


def status_problems(status: dict, now: datetime.datetime, stale_hours: float) -> list[str]:
    """What ``fab status`` should call an error, from the host's status.json."""
    problems = []
    success, failure = status.get("last_success"), status.get("last_failure")
    if failure and (not success or failure["time"] > success["time"]):
        problems.append(f"last backup failed at {failure['time']}: {failure['reason']}")
    if not success:
        problems.append("no backup has succeeded on this host")
    else:
        age = (now - datetime.datetime.fromisoformat(success["time"])).total_seconds() / 3600
        if age > stale_hours:
            problems.append(f"last good backup {success['id']} is {age:.1f} h old")
    drill = status.get("last_drill")
    if drill and drill.get("outcome") != "ok":
        problems.append(f"last restore drill ({drill.get('backup_id')}) failed: {drill['reason']}")
    return problems


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# --- running ---


def job_json(site: Site, command: list[str], input: bytes = b"") -> dict | list:
    done = run(site, command, input)
    if done.code != 0:
        raise BackupError(f"{site.name}: {done.last_error()}")
    return json.loads(done.stdout)


class _HashingWriter:
    """What the download writes into: hashed and counted on its way to age."""

    def __init__(self, sink) -> None:
        self.sink, self.digest, self.size = sink, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
        self.sink.write(data)


class _Prefixed:
    """The admin URL line, then the decrypted dump: the restore command's stdin."""

    def __init__(self, first: bytes, rest) -> None:
        self.first, self.rest = first, rest

    def read(self, size: int = -1) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        return self.rest.read(size)


def restore(
    site: Site,
    command: JobCommand,
    identity: str,
    backup_id: str,
    into: str,
    admin_url: str,
    *,
    keep: bool = True,
    age: str = "age",
) -> RestoreResult:
    """Restore backup ``backup_id`` into the new database ``into`` and verify it. ``keep``:
    leave the database after a good restore (a drill drops it). A failed restore's database is
    always dropped: it was made for this and holds nothing trustworthy."""
    names.check_id(backup_id)
    names.check_target_database(into, set())
    started = time.monotonic()
    result = RestoreResult(backup_id, into, time=_now().isoformat(timespec="seconds"))
    manifest = job_json(site, command("manifest", backup_id))
    result.size = manifest["size"]
    admin_line = admin_url.encode() + b"\n"
    try:
        decrypt = subprocess.Popen(
            [age, "--decrypt", "-i", identity],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    except FileNotFoundError:
        raise BackupError(f"{age} is not installed here (Debian package age)") from None
    hashing = _HashingWriter(decrypt.stdin)
    outcomes: dict[str, Completed] = {}

    def download() -> None:
        outcomes["download"] = site.stream(command("cat", backup_id), stdout=hashing)
        with contextlib.suppress(OSError):
            decrypt.stdin.close()

    age_errors: list[bytes] = []
    threads = [
        threading.Thread(target=download, daemon=True),
        threading.Thread(target=lambda: age_errors.append(decrypt.stderr.read()), daemon=True),
    ]
    for thread in threads:
        thread.start()
    outcomes["restore"] = site.stream(
        command("restore", into), stdin=_Prefixed(admin_line, decrypt.stdout)
    )
    if decrypt.poll() is None and outcomes["restore"].code != 0:
        decrypt.kill()  # the restore gave up: stop decrypting, so the download stops too
    age_code = decrypt.wait()
    for thread in threads:
        thread.join(30)
    reasons = []
    if outcomes.get("download") is None or outcomes["download"].code != 0:
        reasons.append(f"download: {outcomes['download'].last_error()}")
    if age_code != 0:
        text = b"".join(age_errors).decode(errors="replace").strip().splitlines()
        reasons.append(f"age --decrypt exited {age_code}: {text[-1] if text else 'killed'}")
    if (hashing.size, hashing.digest.hexdigest()) != (manifest["size"], manifest["sha256"]):
        reasons.append(
            f"checksum: got {hashing.size} bytes sha256 {hashing.digest.hexdigest()[:16]}..., "
            f"manifest {manifest['size']} bytes {manifest['sha256'][:16]}..."
        )
    if outcomes["restore"].code != 0:
        reasons.append(f"restore: {outcomes['restore'].last_error()}")
    if not reasons:
        observed = job_json(site, command("inspect", into), admin_line)
        result.differences = compare(manifest, observed)
        if result.differences:
            reasons.append(f"{len(result.differences)} difference(s) from the manifest")
    result.outcome = "failed" if reasons else "ok"
    result.reason = "; ".join(reasons) or None
    # A database we could not create is someone else's: never drop it. Ours goes after a
    # drill, and after a failed restore; one that restored but differs is kept to look at.
    created = outcomes["restore"].code != NOT_CREATED_EXIT
    broken = not result.ok and not result.differences
    if created and (broken or not keep):
        drop(site, command, into, admin_line)
    result.seconds = round(time.monotonic() - started, 2)
    return result


def drop(site: Site, command: JobCommand, name: str, admin_line: bytes) -> None:
    done = run(site, command("drop", name), admin_line)
    if done.code != 0:
        raise BackupError(f"{site.name}: dropping {name}: {done.last_error()}")


def drill_database(backup_id: str) -> str:
    return f"drill_{backup_id.lower()}"


def newest_complete(site: Site, command: JobCommand) -> str:
    backups = [b for b in job_json(site, command("list")) if b["complete"]]
    if not backups:
        raise BackupError("no complete backup in the bucket to drill")
    return max(b["id"] for b in backups)


def drill(
    site: Site,
    command: JobCommand,
    identity: str,
    admin_url: str,
    backup_id: str | None = None,
    *,
    age: str = "age",
) -> RestoreResult:
    """Restore the newest complete backup (or ``backup_id``) into a throwaway database, verify,
    drop it, and record the result on the host (status shows the last drill)."""
    backup_id = backup_id or newest_complete(site, command)
    result = restore(site, command, identity, backup_id, drill_database(backup_id), admin_url,
                     keep=False, age=age)  # fmt: skip
    done = run(site, command("record-drill"), json.dumps(result.record()).encode())
    if done.code != 0:
        raise BackupError(f"{site.name}: recording the drill: {done.last_error()}")
    return result


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)
