"""The backups' settings, where their files live on a host, and the bucket they go to.

``BackupSettings`` is what an operator sets (Fabric config ``dropstack.backup``); ``Bucket`` comes
from the inventory (the stack's Spaces bucket, or the local stand-in); ``BackupLayout`` derives
every backup path and unit name from the one host model (deploy/host_model.py), so provisioning,
the tasks and the tests name the same files. Bad values are one-line ``SettingsError``s.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.host_model import HostLayout, SettingsError
from deploy.provision import desired

JOB = "deploy/backup/job.py"  # inside a release: the file the unit and fab db.* run
# Every release ships these besides the app contract's archive_paths: the job and the
# stdlib-only package it imports from its own directory (deploy/backup/on_host/__init__.py).
JOB_FILES = (JOB, "deploy/backup/on_host")
SPACES_ENDPOINT = re.compile(r"([a-z0-9]+)\.digitaloceanspaces\.com")
_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ -]{1,64}")
_PREFIX = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# The inventory keys the backups need (the lead adds them to deploy/inventory.INVENTORY_KEYS).
# Pairs rather than a dict literal: bandit reads a literal's "secret" key as a password.
_BUCKET_KEY_DOCS = (
    (
        "backup_endpoint",
        "S3 endpoint URL of the backup bucket (https://<region>.digitaloceanspaces.com)",
    ),
    ("backup_bucket", "name of the bucket the logical backups go to"),
    ("backup_region", "the bucket's region (Spaces: the DigitalOcean region slug)"),
    ("backup_access_key_id", "access key id of a key that may read and write the bucket"),
    ("backup_secret_access_key", "secret: that key's secret"),
    ("db_admin_uri", "secret: postgresql:// URI of the admin user (doadmin), private network"),
)
BUCKET_KEYS: dict[str, str] = dict(_BUCKET_KEY_DOCS)


def _doc(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, kw_only=True)
class BackupSettings:
    recipient: str | None = _doc(
        None,
        "The stack's age public key (age1...): every dump is encrypted to it. The private key "
        "stays on the operator's machine (identity_file). None: backups are not set up.",
    )
    identity_file: str = _doc(
        "~/.config/dropstack/backup-{stack}.key",
        "The age private key on the operator's machine (age-keygen -o); {stack} is the target.",
    )
    schedule: str = _doc("*-*-* 03:17:00 UTC", "systemd OnCalendar= of the backup timer.")
    drill_schedule: str = _doc("Sun *-*-* 05:17:00 UTC", "OnCalendar= of the restore drill.")
    stale_hours: float = _doc(
        26, "The newest complete backup older than this is an error (a daily timer plus slack)."
    )
    timeout: int = _doc(3600, "Seconds a backup may run before systemd stops and fails it.")
    prefix: str | None = _doc(None, "Folder in the bucket; None: the app's name.")

    def __post_init__(self) -> None:
        problems = []

        def check(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                problems.append(f"backup.{name}: {getattr(self, name)!r} is not allowed; {allowed}")

        check(
            self.recipient is None or bool(_RECIPIENT.fullmatch(str(self.recipient))),
            "recipient",
            "an age public key (age1 + 58 characters, `age-keygen -y KEYFILE`)",
        )
        check(isinstance(self.identity_file, str) and bool(self.identity_file), "identity_file",
              "a path")  # fmt: skip
        for name in ("schedule", "drill_schedule"):
            check(bool(_CALENDAR.fullmatch(str(getattr(self, name)))), name,
                  "a systemd calendar expression such as '*-*-* 03:17:00 UTC'")  # fmt: skip
        check(isinstance(self.stale_hours, int | float) and 1 <= self.stale_hours <= 24 * 90,
              "stale_hours", "1..2160 hours")  # fmt: skip
        check(isinstance(self.timeout, int) and 60 <= self.timeout <= 86400, "timeout",
              "60..86400 seconds")  # fmt: skip
        check(self.prefix is None or bool(_PREFIX.fullmatch(str(self.prefix))), "prefix",
              "None or a-z, 0-9, '.', '_', '-'")  # fmt: skip
        if problems:
            raise SettingsError(problems[0])

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> BackupSettings:
        # null in fabric.yaml means the default (the keys are listed there for env overrides).
        section = {k: v for k, v in _plain(_backup_section(config)).items() if v is not None}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise SettingsError(f"backup.{unknown[0]}: not a setting; known: {', '.join(known)}")
        return cls(**section)

    def identity_path(self, stack: str) -> Path:
        return Path(self.identity_file.replace("{stack}", stack)).expanduser()


def _backup_section(config: Mapping[str, Any] | None) -> dict:
    dropstack = (config or {}).get("dropstack") or {}
    return dropstack.get("backup") or {}


def _plain(value: Any) -> Any:
    """Invoke's config proxies as plain dicts."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Bucket:
    endpoint: str
    name: str
    region: str
    access_key_id: str
    secret_access_key: str
    # PEM CA of the endpoint's HTTPS: '' for Spaces (a public CA); the local stand-in's own.
    ca_cert: str = ""

    @classmethod
    def from_inventory(cls, data: Mapping[str, Any]) -> Bucket:
        missing = [k for k in BUCKET_KEYS if k != "db_admin_uri" and not data.get(k)]
        if missing:
            raise SettingsError(
                f"inventory: {missing[0]} is missing; backups need {', '.join(BUCKET_KEYS)}"
            )
        bucket = cls(
            endpoint=data["backup_endpoint"],
            name=data["backup_bucket"],
            region=data["backup_region"],
            access_key_id=data["backup_access_key_id"],
            secret_access_key=data["backup_secret_access_key"],
            ca_cert=data.get("backup_ca_cert") or "",
        )
        if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+/?", bucket.endpoint):
            raise SettingsError(f"backup_endpoint: {bucket.endpoint!r} is not an http(s) URL")
        if not _BUCKET.fullmatch(bucket.name):
            raise SettingsError(f"backup_bucket: {bucket.name!r} is not an S3 bucket name")
        return bucket

    @property
    def is_spaces(self) -> bool:
        host = self.endpoint.split("://", 1)[1].rstrip("/")
        return bool(SPACES_ENDPOINT.fullmatch(host))

    def rclone_variables(self) -> dict[str, str]:
        """The rclone remote as environment variables. Spaces wants provider=DigitalOcean
        (virtual-host addressing); any other server (moto locally) provider=Other with
        path-style addressing, since loopback has no per-bucket host names.
        no_check_bucket: the bucket is infra's, and the key need not be allowed to create one."""
        prefix = "RCLONE_CONFIG_BACKUPS_"
        values = {
            "TYPE": "s3",
            "PROVIDER": "DigitalOcean" if self.is_spaces else "Other",
            "ENDPOINT": self.endpoint,
            "REGION": self.region,
            "ACCESS_KEY_ID": self.access_key_id,
            "SECRET_ACCESS_KEY": self.secret_access_key,
            "FORCE_PATH_STYLE": "false" if self.is_spaces else "true",
            "NO_CHECK_BUCKET": "true",
            "ACL": "private",
        }
        return {prefix + key: value for key, value in values.items()}


@dataclass(frozen=True)
class BackupLayout:
    """Backup paths and units on a host, from the host model."""

    host: HostLayout
    state_root: str = "/var/lib"  # tests point it into a temporary directory

    @property
    def env_file(self) -> str:
        """The bucket's key and the job's settings: root-only, read by systemd."""
        return f"{self.host.config_dir}/backup.env"

    @property
    def recipients_file(self) -> str:
        """The age public key: not secret, but in the config dir beside what it protects."""
        return f"{self.host.config_dir}/backup-recipients.txt"

    @property
    def ca_file(self) -> str:
        """The bucket endpoint's CA, when the inventory names one (the local stand-in)."""
        return f"{self.host.config_dir}/backup-ca.pem"

    @property
    def state_dir(self) -> str:
        """systemd's StateDirectory= of the backup unit: status.json and drill.json."""
        return f"{self.state_root}/{self.state_directory_name}"

    @property
    def state_directory_name(self) -> str:
        return f"{self.host.app_name}-backup"

    @property
    def job(self) -> str:
        return f"{self.host.current}/{JOB}"

    @property
    def service(self) -> str:
        return f"{self.host.app_name}-backup.service"

    @property
    def timer(self) -> str:
        return f"{self.host.app_name}-backup.timer"

    def job_command(self, *args: str) -> list[str]:
        """job.py with the same two files systemd gives the unit (EnvironmentFile=)."""
        return ["/usr/bin/python3", self.job, "--env-file", self.host.env_file,
                "--env-file", self.env_file, *args]  # fmt: skip


def job_environment(layout: BackupLayout, bucket: Bucket, settings: BackupSettings) -> str:
    """backup.env: what job.py reads besides the app's DATABASE_URL (from app.env)."""
    values = {
        "BACKUP_BUCKET": bucket.name,
        "BACKUP_PREFIX": settings.prefix or layout.host.app_name,
        "BACKUP_RECIPIENTS_FILE": layout.recipients_file,
        "BACKUP_STATE_DIR": layout.state_dir,
        **({"BACKUP_S3_CA_CERT": layout.ca_file} if bucket.ca_cert else {}),
        **bucket.rclone_variables(),
    }
    return desired.env_file_content(values)


def settings_docs() -> list[tuple[str, str, str]]:
    return [
        (f.name, repr(f.default), f.metadata["doc"]) for f in dataclasses.fields(BackupSettings)
    ]
