"""What provisioning adds for backups on the stack's first web host, as pure data.

The lead's provisioning step (deploy/provision/operations.py) installs ``PACKAGES``, writes
``files`` (compared by the same file facts as every other file) and, when they changed, runs
``activation``: verify, daemon-reload, enable the timer. Only the first host backs up: one
dump per stack, not one per host.
"""

from __future__ import annotations

from deploy import shell
from deploy.backup.settings import BackupLayout, BackupSettings, Bucket, job_environment
from deploy.host_model import HostSettings
from deploy.provision import templates
from deploy.provision.files import RemoteFile

# postgresql-client: pg_dump/pg_restore/psql 15, which dump servers up to 15 (Debian 12's).
# A newer server (DigitalOcean's 16/17) needs the client of that version (apt.postgresql.org).
PACKAGES = ("age", "rclone", "postgresql-client")


def files(settings: HostSettings, backup: BackupSettings, bucket: Bucket) -> list[RemoteFile]:
    layout = BackupLayout(settings.paths)
    if backup.recipient is None:
        return []
    return [
        RemoteFile(layout.recipients_file, backup.recipient + "\n", "0644", "root", "root"),
        *(
            [RemoteFile(layout.ca_file, bucket.ca_cert, "0644", "root", "root")]
            if bucket.ca_cert
            else []
        ),
        RemoteFile(layout.env_file, job_environment(layout, bucket, backup), "0600", secret=True),
        *templates.backup_units(settings, backup, layout),
    ]


def activation(settings: HostSettings) -> list[list[str]]:
    layout = BackupLayout(settings.paths)
    return [
        shell.as_root(["systemctl", "daemon-reload"]),
        shell.as_root(["systemctl", "enable", "--now", layout.timer]),
    ]


def verify_command(settings: HostSettings) -> list[str]:
    """systemd-analyze verify of the backup unit; before the first deploy the job's file is
    absent, which verify reports about ExecStart and nothing else is allowed."""
    layout = BackupLayout(settings.paths)
    not_deployed = rf"Command {layout.job.replace('.', chr(92) + '.')} is not executable"
    return shell.script(
        templates.VERIFY_SCRIPT, not_deployed, "systemd-analyze", "verify", "--man=no",
        layout.service, layout.timer,
    )  # fmt: skip
