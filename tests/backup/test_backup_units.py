"""The backup's units, settings and host files: rendered, verified by systemd, no secrets."""

from __future__ import annotations

import datetime
import subprocess

import pytest

from deploy.backup import provision, restore
from deploy.backup.on_host import names
from deploy.backup.settings import BackupLayout, BackupSettings, Bucket
from deploy.host_model import HostSettings, SettingsError
from deploy.provision import templates

SETTINGS = HostSettings(vpc_cidr="10.110.0.0/20")
RECIPIENT = "age1" + "q" * 58
SECRET = "s3cr3t-never-in-a-unit"  # pragma: allowlist secret
SPACES = Bucket("https://nyc3.digitaloceanspaces.com", "dropstack-backups", "nyc3", "AK", SECRET)


def rendered(tmp_path):
    files = provision.files(SETTINGS, BackupSettings(recipient=RECIPIENT), SPACES)
    written = {}
    for file in files:
        if file.path.startswith("/etc/systemd/system/"):
            path = tmp_path / file.path.rsplit("/", 1)[1]
            path.write_text(file.content)
            written[path.name] = path
    return files, written


def test_units_pass_systemd_analyze_verify(tmp_path):
    _, units = rendered(tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, units.values())],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_backup_service_is_sandboxed(tmp_path):
    # --threshold is in tenths: exposure above 2.0 fails.
    _, units = rendered(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20",
         str(units["dropstack-backup.service"])], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-500:]


def test_secrets_only_in_the_root_only_env_file(tmp_path):
    files, _ = rendered(tmp_path)
    holding = [f for f in files if SECRET in f.content]
    assert [(f.path, f.mode, f.owner, f.secret) for f in holding] == [
        ("/etc/dropstack/backup.env", "0600", "root", True)
    ]
    service = next(f for f in files if f.path.endswith("backup.service")).content
    assert "EnvironmentFile=/etc/dropstack/app.env" in service
    assert (
        "ExecStart=/usr/bin/python3 /srv/dropstack/current/deploy/backup/job.py backup" in service
    )


@pytest.mark.parametrize(
    ("endpoint", "provider", "path_style"),
    [
        ("https://nyc3.digitaloceanspaces.com", "DigitalOcean", "false"),
        ("http://127.0.0.1:9000", "Other", "true"),
    ],
)
def test_rclone_addressing_follows_the_endpoint(endpoint, provider, path_style):
    variables = Bucket(endpoint, "b-ups", "r", "a", "s").rclone_variables()
    assert variables["RCLONE_CONFIG_BACKUPS_PROVIDER"] == provider
    assert variables["RCLONE_CONFIG_BACKUPS_FORCE_PATH_STYLE"] == path_style


def test_no_recipient_means_no_backup_files():
    assert provision.files(SETTINGS, BackupSettings(), SPACES) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"recipient": "age1short"}, "backup.recipient: 'age1short' is not allowed"),
        ({"stale_hours": 0}, "backup.stale_hours: 0 is not allowed; 1..2160 hours"),
        ({"schedule": "daily; rm"}, "backup.schedule: 'daily; rm' is not allowed"),
        ({"stale": 3}, "backup.stale: not a setting"),
    ],
)
def test_bad_settings_are_one_line_errors(values, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        BackupSettings.from_config({"dropstack": {"backup": values}})


def test_the_inventory_must_name_the_bucket():
    with pytest.raises(SettingsError, match="inventory: backup_endpoint is missing"):
        Bucket.from_inventory({})


def test_drill_units_render_for_the_operator_machine():
    units = templates.restore_drill_units(
        SETTINGS, BackupSettings(), target="prod", target_args="--stack prod",
        checkout="/home/ops/dropstack", operator_user="ops",
    )  # fmt: skip
    service = units["dropstack-restore-drill.service"]
    assert "ExecStart=/home/ops/dropstack/.venv/bin/fab db.drill --stack prod" in service
    assert "OnCalendar=Sun *-*-* 05:17:00 UTC" in units["dropstack-restore-drill.timer"]


def test_status_problems_name_failures_staleness_and_drills():
    now = restore.backup_time("20261203T040000Z")
    status = {
        "last_success": {"time": "2026-12-01T03:17:00+00:00", "id": "20261201T031700Z"},
        "last_failure": {"time": "2026-12-02T03:17:00+00:00", "reason": "rclone rcat exited 1"},
        "last_drill": {"outcome": "failed", "backup_id": "x", "reason": "checksum"},
    }
    assert restore.status_problems(status, now, 26) == [
        "last backup failed at 2026-12-02T03:17:00+00:00: rclone rcat exited 1",
        "last good backup 20261201T031700Z is 48.7 h old",
        "last restore drill (x) failed: checksum",
    ]
    fine = {"last_success": {"time": "2026-12-03T03:17:00+00:00", "id": "y"}}
    assert restore.status_problems(fine, now, 26) == []


def test_layout_names_one_set_of_paths():
    layout = BackupLayout(SETTINGS.paths)
    assert layout.job_command("list") == [
        "/usr/bin/python3", "/srv/dropstack/current/deploy/backup/job.py",
        "--env-file", "/etc/dropstack/app.env", "--env-file", "/etc/dropstack/backup.env", "list",
    ]  # fmt: skip
    assert layout.state_dir == "/var/lib/dropstack-backup"


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        (set(), "20261202T031500Z"),
        ({"20261202T031500Z"}, "20261202T031501Z"),
        ({"20261202T031500Z", "20261202T031501Z"}, "20261202T031502Z"),
        ({"20261202T031459Z"}, "20261202T031500Z"),
    ],
    ids=["free", "taken", "two-taken", "earlier-taken"],
)
def test_a_backup_id_is_never_one_the_bucket_has(taken, expected):
    now = datetime.datetime(2026, 12, 2, 3, 15, 0, 730000, tzinfo=datetime.UTC)
    assert names.unused_id(now, taken) == expected
