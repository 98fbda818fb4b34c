"""Provisioning's backup step: on the first host only, with a bucket and a recipient; packages,
files (the bucket's key never shown), systemd-analyze verify, then the timer."""

import pytest

from deploy import host_model
from deploy.backup import provision as backup_provision
from deploy.backup.settings import BackupLayout, BackupSettings
from deploy.inventory import BACKUP_KEYS, parse_inventory
from deploy.provision import facts as f
from deploy.provision import operations
from deploy.provision.runner import plan_target
from tests.deploy.test_secrets_plan import INVENTORY

RECIPIENT = "age1" + "qpzry9x8gf2tvdw0s3jn54khce6mua7l" + "q" * 26
BUCKET_SECRET = "bucket-secret-do-not-print"  # pragma: allowlist secret (a made-up test value)
BUCKET = {
    "backup_endpoint": "https://ams3.digitaloceanspaces.com",
    "backup_bucket": "t-backups",
    "backup_region": "ams3",
    "backup_access_key_id": "DO00KEYID",
    "backup_secret_access_key": BUCKET_SECRET,
}


def target(host="web-1", bucket=True, recipient=RECIPIENT) -> operations.Target:
    inv = parse_inventory({**INVENTORY, **(BUCKET if bucket else {})}, "test")
    web = next(w for w in inv.web_hosts if w.name == host)
    backup = BackupSettings(recipient=recipient)
    return operations.Target(host, host_model.for_host({}, inv, web), inv, backup=backup)


def fact(t: operations.Target, key: str) -> f.Fact:
    return next(x for x in operations.facts_for(t) if x.key == key)


def in_sync(t: operations.Target, timer_state="active") -> f.HostFacts:
    """A host that has the backup files exactly so, the packages, and the timer as given."""
    files = {file.path: file.state for file in operations.backup_files(t)}
    timer = BackupLayout(t.settings.paths).timer
    units = {timer: {"Id": timer, "UnitFileState": "enabled", "ActiveState": timer_state}}
    return f.HostFacts(packages=frozenset(backup_provision.PACKAGES), files=files, units=units)


@pytest.mark.parametrize(
    ("case", "t"),
    [
        ("second host", target(host="web-2")),
        ("no bucket in the inventory", target(bucket=False)),
        ("no recipient configured", target(recipient=None)),
    ],
)
def test_backups_are_off_unless_first_host_bucket_and_recipient(case, t):
    assert not t.backs_up, case
    assert operations.backup_job(t, f.HostFacts()) == [], case
    assert not set(backup_provision.PACKAGES) & set(fact(t, "packages").command), case
    assert BackupLayout(t.settings.paths).env_file not in operations.wanted_paths(t), case


def test_only_the_first_host_runs_the_step():
    settings = target().settings
    first = [name for name, _ in operations.steps_for(settings, first=True)]
    others = [name for name, _ in operations.steps_for(settings, first=False)]
    assert first[-1] == "backup job and timer"
    assert "backup job and timer" not in others


def test_the_probe_covers_the_packages_files_and_timer():
    t = target()
    layout = BackupLayout(t.settings.paths)
    assert set(backup_provision.PACKAGES) <= set(fact(t, "packages").command)
    assert {layout.env_file, layout.recipients_file} <= set(operations.wanted_paths(t))
    assert layout.timer in fact(t, "units").command


def test_a_fresh_host_gets_packages_files_verify_and_the_timer():
    t = target()
    (change,) = operations.backup_job(t, f.HostFacts())
    layout = BackupLayout(t.settings.paths)
    install = " ".join(change.commands[0])
    assert install.count("apt-get install") == 1
    assert all(f" {name}" in install for name in backup_provision.PACKAGES)
    paths = {file.path for file in change.files}
    assert {layout.env_file, layout.recipients_file} <= paths
    assert any(p.endswith(layout.service) for p in paths) and any(
        p.endswith(layout.timer) for p in paths
    )
    assert change.validate == tuple(operations.root(backup_provision.verify_command(t.settings)))
    assert change.validate_name == "systemd-analyze verify"
    assert f"systemctl enable --now {layout.timer}" in " ".join(change.then[-1])
    env = next(file for file in change.files if file.path == layout.env_file)
    assert env.secret and env.mode == "0600" and BUCKET_SECRET in env.content
    assert BUCKET_SECRET not in "\n".join(change.detail)
    assert f"+ {layout.env_file} (new, 0600 root:root)" in change.detail


def test_a_host_in_sync_needs_nothing():
    assert operations.backup_job(target(), in_sync(target())) == []


def test_a_stopped_timer_is_started():
    t = target()
    (change,) = operations.backup_job(t, in_sync(t, timer_state="inactive"))
    timer = BackupLayout(t.settings.paths).timer
    assert change.commands == (operations.root(["systemctl", "enable", "--now", timer]),)
    assert not change.files


def test_a_changed_bucket_key_is_written_and_never_shown():
    t = target()
    facts = in_sync(t)
    layout = BackupLayout(t.settings.paths)
    facts.files[layout.env_file] = "0" * 64 + " 600 root root"
    (change,) = operations.backup_job(t, facts)
    assert [file.path for file in change.files] == [layout.env_file]
    assert change.detail == (f"~ {layout.env_file}: differs (values redacted)",)
    assert not change.commands, "the packages are there"


def test_a_bucket_with_a_bad_value_is_one_line():
    inv_target = target()
    bad = parse_inventory({**INVENTORY, **BUCKET, "backup_endpoint": "ftp://x"}, "test")
    t = operations.Target("web-1", inv_target.settings, bad, backup=inv_target.backup)
    with pytest.raises(operations.Unsupported, match="backup_endpoint: 'ftp://x' is not"):
        operations.backup_job(t, f.HostFacts())


def test_has_backup_bucket_needs_every_key():
    assert parse_inventory({**INVENTORY, **BUCKET}, "t").has_backup_bucket
    for key in BACKUP_KEYS:
        assert not parse_inventory({**INVENTORY, **BUCKET, key: ""}, "t").has_backup_bucket
    assert (
        parse_inventory({**INVENTORY, **BUCKET}, "t").redacted()["backup_secret_access_key"]
        == "[secret]"
    )


def test_fab_provision_reads_the_backup_settings_from_the_config():
    """The runner builds the Target from the Fabric config, as `fab provision` does: a recipient
    there (or in FABRIC_DROPSTACK_BACKUP_RECIPIENT) turns the step on for the first host.
    (It once never passed the settings on, so only hand-built Targets ever backed up.)"""
    inv = parse_inventory({**INVENTORY, **BUCKET}, "test")
    first, second = inv.web_hosts[:2]
    config = {"dropstack": {"backup": {"recipient": RECIPIENT, "identity_file": None}}}
    assert plan_target(config, inv, first).backs_up
    assert not plan_target(config, inv, second).backs_up
    assert not plan_target({}, inv, first).backs_up
