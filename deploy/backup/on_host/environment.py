"""The job's settings, from the environment, and the explicit environment each child gets.

Children never inherit this process's environment (a machine's AWS_CA_BUNDLE or SSL_CERT_FILE
would otherwise steer rclone). Secrets never reach a command line: libpq gets a PGPASSFILE in a
private directory, rclone its remote from RCLONE_CONFIG_BACKUPS_* variables.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import JobError

REMOTE = "backups"  # rclone remote, configured by RCLONE_CONFIG_BACKUPS_* variables
LIBPQ_PARAMETERS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
}


def parse_env_file(text: str) -> dict[str, str]:
    """Read back a systemd EnvironmentFile as provisioning writes it
    (deploy/provision/desired.env_file_content), e.g. to keep SECRET_KEY across provisions.

    Defined here, with the job that runs on hosts with nothing but the standard library, and
    imported by provisioning: one reader for the one format. Hand-written rather than
    python-dotenv: systemd's quoting differs from dotenv's, and the host suite ships this very
    function to the host, where no third-party package is installed."""
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
