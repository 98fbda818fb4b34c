"""The backup job as a provisioning step on the first host (deploy/backup/, docs/backups.md)."""

from __future__ import annotations

from deploy.backup import provision as backup_provision
from deploy.backup.settings import BackupLayout, Bucket
from deploy.host_model import SettingsError
from deploy.provision import desired
from deploy.provision import facts as f
from deploy.provision.change import Change, Target, Unsupported, ensure_running, root
from deploy.provision.files import RemoteFile, describe_difference, differing


def backup_files(t: Target) -> list[RemoteFile]:
    """The backup job's files on the host that runs it (deploy/backup/provision.py), else none."""
    if not t.backs_up:
        return []
    try:
        bucket = Bucket.from_inventory(t.inv.data)
    except SettingsError as exc:
        raise Unsupported(str(exc)) from None
    return backup_provision.files(t.settings, t.backup, bucket)


def backup_job(t: Target, facts: f.HostFacts) -> list[Change]:
    """The backup job's packages, env file (the bucket's key: values never shown), recipient
    and units on the host that runs it, verified before daemon-reload, then the timer enabled.
    Nothing when backups are not set up (no bucket in the inventory, or no recipient)."""
    if not t.backs_up:
        return []
    missing = [name for name in backup_provision.PACKAGES if name not in facts.packages]
    files = backup_files(t)
    changed = differing(files, facts.files)
    timer = BackupLayout(t.settings.paths).timer
    if not (missing or changed):
        return ensure_running(facts, timer)
    detail = [f"+ package {name}" for name in missing]
    for file in changed:
        # A secret file's host copy is never read for a diff: which file differs is enough.
        current = None if file.secret else t.contents.get(file.path)
        state = facts.files.get(file.path)
        if file.secret and state not in (None, "absent"):
            detail.append(f"~ {file.path}: differs (values redacted)")
        else:
            detail += describe_difference(file, state, current)
    install = (root(desired.install_packages_command(missing)),) if missing else ()
    validate = root(backup_provision.verify_command(t.settings)) if changed else None
    return [
        Change(
            "backup job and timer",
            commands=install,
            files=tuple(changed),
            validate=validate,
            validate_name="systemd-analyze verify" if changed else "",
            then=tuple(tuple(c) for c in backup_provision.activation(t.settings)),
            detail=tuple(detail),
        )
    ]
