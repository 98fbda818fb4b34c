"""The backup job and the host's side of restores: one stdlib-only program run on the web host.

It ships with every release (``<app_root>/current/deploy/backup/job.py``) and runs under the
host's own ``python3``, so it imports nothing but the standard library and nothing from this
repository. The systemd unit runs ``job.py backup``; ``fab db.*`` runs the other commands over
SSH; the tests run this same file on this machine. Its settings come from the environment
(systemd ``EnvironmentFile=``) or from ``--env-file`` (the same files, for ad-hoc runs)::

    job.py [--env-file FILE]... backup          dump, encrypt, upload, verify, write the manifest
    job.py ... list                             the bucket's backups (JSON)
    job.py ... manifest ID | cat ID             a backup's manifest / its encrypted bytes
    job.py ... restore NAME                     stdin: admin URL line, then the decrypted dump
    job.py ... inspect NAME | drop NAME         stdin: admin URL line
    job.py ... record-drill                     stdin: a drill result (JSON) for the state dir
    job.py ... status                           the state dir's status.json and drill.json

Secrets never reach a command line: libpq gets a PGPASSFILE in a private directory, rclone its
remote from RCLONE_CONFIG_BACKUPS_* variables. Children get an explicit environment, never this
process's own (a machine's AWS_CA_BUNDLE or SSL_CERT_FILE would otherwise steer rclone).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qsl, unquote, urlsplit

REMOTE = "backups"  # rclone remote, configured by RCLONE_CONFIG_BACKUPS_* variables
DUMP_SUFFIX = ".dump.age"
MANIFEST_SUFFIX = ".manifest.json"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z")
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Databases a restore may never target, whatever the app's is called.
RESERVED_DATABASES = frozenset({"postgres", "defaultdb", "template0", "template1", "_dodb"})
CHUNK = 1 << 16
STDERR_KEPT = 4000
LIBPQ_PARAMETERS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
}
# COPY blocks of `pg_restore --data-only`: each data line is one row (newlines are escaped).
COPY_LINE = re.compile(rb"^COPY (.+?) \(.*\) FROM stdin;$")
ALEMBIC_TABLE = "public.alembic_version"


class JobError(Exception):
    """A step failed; ``str()`` is one line naming the step and the reason."""


class NotCreated(JobError):
    """The target database could not be created (it exists): nothing of ours to clean up."""


NOT_CREATED_EXIT = 3


# --- settings ---


def parse_env_file(text: str) -> dict[str, str]:
    """systemd EnvironmentFile lines as provisioning writes them (the same rules as
    deploy/provision/desired.parse_env_file; copied because this file imports nothing)."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        values[key] = value
    return values


def need(env: dict[str, str], key: str) -> str:
    value = env.get(key, "")
    if not value:
        raise JobError(f"settings: {key} is not set (the unit's EnvironmentFile= / --env-file)")
    return value


def base_environment(env: dict[str, str]) -> dict[str, str]:
    """What every child gets: a PATH, a UTF-8 C locale, UTC, and a private HOME."""
    return {
        "PATH": env.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "HOME": env.get("BACKUP_WORK_DIR", "/nonexistent"),
    }


def rclone_environment(env: dict[str, str]) -> dict[str, str]:
    remote = {k: v for k, v in env.items() if k.startswith(f"RCLONE_CONFIG_{REMOTE.upper()}_")}
    if not remote:
        raise JobError(f"settings: no RCLONE_CONFIG_{REMOTE.upper()}_* variables (the bucket)")
    return {**base_environment(env), **remote}


def rclone_command(env: dict[str, str], *args: str) -> list[str]:
    ca = ["--ca-cert", env["BACKUP_S3_CA_CERT"]] if env.get("BACKUP_S3_CA_CERT") else []
    # --config /dev/null: the remote lives in the environment only; no file to leak or drift.
    return ["rclone", "--config", "/dev/null", "--retries", "3", *ca, *args]


def remote_path(env: dict[str, str], name: str = "") -> str:
    prefix = env.get("BACKUP_PREFIX", "").strip("/")
    parts = [need(env, "BACKUP_BUCKET"), *([prefix] if prefix else []), *([name] if name else [])]
    return f"{REMOTE}:" + "/".join(parts)


def libpq_environment(url: str, work_dir: str, database: str | None = None) -> dict[str, str]:
    """libpq variables for a postgresql:// URL; its password goes to a 0600 PGPASSFILE."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise JobError("database URL: not a postgresql://user@host/db URL")
    env = {
        "PGHOST": parts.hostname,
        "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or ""),
        "PGDATABASE": database or unquote(parts.path.lstrip("/")) or "postgres",
    }
    for key, value in parse_qsl(parts.query):
        if key not in LIBPQ_PARAMETERS:
            allowed = ", ".join(sorted(LIBPQ_PARAMETERS))
            raise JobError(f"database URL: parameter {key!r} is not supported; allowed: {allowed}")
        env[LIBPQ_PARAMETERS[key]] = value
    passfile = os.path.join(work_dir, "pgpass")
    password = unquote(parts.password or "")
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"*:*:*:*:{escaped}\n" if password else "")
    env["PGPASSFILE"] = passfile
    return env


def url_database(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def check_target_database(name: str, forbidden: set[str]) -> str:
    if not DATABASE_NAME.fullmatch(name):
        raise JobError(f"database name: {name!r} is not allowed; a-z, 0-9, _ (max 63)")
    if name in RESERVED_DATABASES or name in forbidden:
        raise JobError(f"database name: {name!r} is the app's or a system database; refused")
    return name


# --- running programs ---


class Stage:
    """One child process of a pipeline, its stderr collected (the end of it) by a thread."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], **popen) -> None:
        self.name = name
        self.tail = b""
        try:
            self.proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, **popen)
        except FileNotFoundError:
            raise JobError(f"{name}: {argv[0]} is not installed") from None
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        for line in self.proc.stderr:
            self.tail = (self.tail + line)[-STDERR_KEPT:]

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def failure(self) -> str | None:
        """None when it exited 0, else one line: its name, status and last stderr line."""
        code = self.wait()
        if code == 0:
            return None
        lines = self.tail.decode(errors="replace").strip().splitlines()
        return f"{self.name} exited {code}: {lines[-1] if lines else 'no message'}"


def pump(source, sinks, digest=None, close=True) -> dict:
    """Copy ``source`` to every sink (and the digest) until EOF; then close the sinks. A sink
    that breaks ends the copy: the pipeline's other stages then see EOF and fail on their own."""
    size = 0
    result: dict = {"size": 0, "error": None}
    try:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if digest is not None:
                digest.update(chunk)
            for sink in sinks:
                sink.write(chunk)
    except (BrokenPipeError, OSError, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for sink in sinks if close else ():
            with contextlib.suppress(OSError):
                sink.close()
    result["size"] = size
    return result


def in_thread(func, *args) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        box["value"] = func(*args)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


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


def run(name: str, argv: list[str], env: dict[str, str], stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(argv, env=env, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise JobError(f"{name}: {argv[0]} is not installed") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise JobError(f"{name} exited {done.returncode}: {lines[-1] if lines else 'no message'}")
    return done.stdout


# --- backup ---


def backup(env: dict[str, str], work_dir: str, now: datetime.datetime) -> dict:
    """pg_dump -Fc | age | rclone rcat, with the dump also read back by pg_restore (row counts,
    and proof it parses); then the object is downloaded again and compared byte for byte
    (size and sha256) before the manifest is written. No manifest: no backup."""
    started = time.monotonic()
    backup_id = now.strftime(ID_FORMAT)
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


def write_json(path: str, value: dict) -> None:
    """Replace a file atomically: a reader sees the old status or the new, never half."""
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")
    os.chmod(temporary, 0o640)
    os.replace(temporary, path)


def read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def state_file(env: dict[str, str], name: str) -> str:
    directory = env.get("BACKUP_STATE_DIR") or env.get("STATE_DIRECTORY", "").split(":")[0]
    if not directory:
        raise JobError("settings: BACKUP_STATE_DIR (or systemd's StateDirectory=) is not set")
    return os.path.join(directory, name)


def record_outcome(env: dict[str, str], now: datetime.datetime, manifest=None, reason=None):
    """status.json keeps the last success and the last failure, each with its time."""
    path = state_file(env, "status.json")
    status = read_json(path)
    when = now.isoformat(timespec="seconds")
    if reason is None:
        status["last_success"] = {"time": when, "id": manifest["id"], "size": manifest["size"]}
    else:
        status["last_failure"] = {"time": when, "reason": reason}
    write_json(path, status)


# --- the host's side of a restore ---


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


def check_id(backup_id: str) -> str:
    if not ID_PATTERN.fullmatch(backup_id):
        raise JobError(f"backup id: {backup_id!r} is not one; ids look like 20261202T031500Z")
    return backup_id


# --- the command line ---


def main(argv: list[str]) -> int:
    env_files = []
    while len(argv) >= 2 and argv[0] == "--env-file":
        env_files.append(argv[1])
        argv = argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    env = dict(os.environ)
    for path in env_files:
        with open(path) as handle:
            env.update(parse_env_file(handle.read()))
    command, args = argv[0], argv[1:]
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017  (3.10 hosts).replace(microsecond=0)
    out = sys.stdout.buffer
    with tempfile.TemporaryDirectory(prefix="dropstack-backup-") as work_dir:
        env.setdefault("BACKUP_WORK_DIR", work_dir)
        try:
            if command == "backup":
                try:
                    manifest = backup(env, work_dir, now)
                except JobError as exc:
                    record_outcome(env, now, reason=str(exc))
                    raise
                record_outcome(env, now, manifest=manifest)
                print(f"backup {manifest['id']}: {manifest['size']} bytes, sha256 "
                      f"{manifest['sha256']}, verified in the bucket")  # fmt: skip
            elif command == "list":
                out.write(json.dumps(list_backups(env)).encode() + b"\n")
            elif command in ("manifest", "cat"):
                suffix = MANIFEST_SUFFIX if command == "manifest" else DUMP_SUFFIX
                path = remote_path(env, check_id(args[0]) + suffix)
                cat = Stage("rclone cat", rclone_command(env, "cat", path),
                            rclone_environment(env), stdout=subprocess.PIPE)  # fmt: skip
                pump(cat.proc.stdout, [out], close=False)
                failure = cat.failure()
                if failure:
                    raise JobError(failure)
            elif command == "restore":
                restore(env, work_dir, args[0], sys.stdin.buffer)
            elif command == "inspect":
                found = inspect(env, work_dir, args[0], sys.stdin.buffer)
                out.write(json.dumps(found).encode() + b"\n")
            elif command == "drop":
                drop(env, work_dir, args[0], sys.stdin.buffer)
            elif command == "record-drill":
                write_json(state_file(env, "drill.json"), json.load(sys.stdin))
            elif command == "status":
                status = read_json(state_file(env, "status.json"))
                status["last_drill"] = read_json(state_file(env, "drill.json")) or None
                out.write(json.dumps(status).encode() + b"\n")
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
