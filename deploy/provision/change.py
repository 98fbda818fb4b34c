"""What a provisioning step says it would do (``Change``), about which host (``Target``), and the
small helpers every step builds its changes with. Pure: nothing here touches a host."""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy import shell
from deploy.backup.settings import BackupSettings
from deploy.host_model import HostSettings
from deploy.inventory import Inventory
from deploy.provision import facts as f
from deploy.provision.files import RemoteFile, describe_difference, differing

Command = tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One change a step would make: commands, then files (validated before they stay), then
    the commands that activate them. ``detail`` is what ``--check`` shows (diffs, packages)."""

    summary: str
    commands: tuple[Command, ...] = ()
    files: tuple[RemoteFile, ...] = ()
    validate: Command | None = None
    validate_name: str = ""
    then: tuple[Command, ...] = ()
    detail: tuple[str, ...] = ()
    grant_schema: bool = False  # grant the app user its schema privileges, as the db admin


@dataclass(frozen=True)
class Target:
    """What the operations know besides facts: the host model and the inventory."""

    host: str
    settings: HostSettings
    inv: Inventory
    contents: dict[str, str] = field(default_factory=dict)  # current file contents, for diffs
    connecting_key: str | None = None  # "type base64" of the key SSH logs in with, if known
    backup: BackupSettings | None = None  # dropstack.backup; None: not configured

    @property
    def deploy_user(self) -> str:
        return self.inv["ssh_user"]

    @property
    def first(self) -> bool:
        return self.host == self.inv.web_hosts[0].name

    @property
    def backs_up(self) -> bool:
        """This host runs the stack's backup job: the first host, with a bucket in the
        inventory and an age recipient configured (one dump per stack, not one per host)."""
        return bool(
            self.first and self.inv.has_backup_bucket and self.backup and self.backup.recipient
        )


class Unsupported(Exception):
    """The host cannot be provisioned at all (its operating system); one line."""


def _t(*commands) -> tuple[Command, ...]:
    return tuple(tuple(c) for c in commands)


def root(command) -> Command:
    return tuple(shell.as_root(command))


def file_changes(
    t: Target, facts: f.HostFacts, files: list[RemoteFile], summary: str, **activation
) -> list[Change]:
    """A Change writing the files the host does not have exactly so, with their diffs."""
    changed = differing(files, facts.files)
    if not changed:
        return []
    detail = []
    for file in changed:
        current = facts.env_file if file.secret else t.contents.get(file.path)
        detail += describe_difference(file, facts.files.get(file.path), current)
    return [Change(summary, files=tuple(changed), detail=tuple(detail), **activation)]


def ensure_running(facts: f.HostFacts, unit: str, how: str = "restart") -> list[Change]:
    """Start a service that should run and does not (a condition that is false, such as
    systemd-timesyncd's in a container, where the clock is the host's, counts as running)."""
    props = facts.unit(unit)
    enabled = props.get("UnitFileState") in ("enabled", "static", "alias", "enabled-runtime")
    running = props.get("ActiveState") == "active" or props.get("ConditionResult") == "no"
    if enabled and running:
        return []
    state = f"{props.get('UnitFileState', '?')}, {props.get('ActiveState', '?')}"
    return [
        Change(
            f"enable and start {unit}",
            commands=(root(["systemctl", "enable", "--now", unit]),),
            detail=(f"~ {unit}: {state} -> enabled, active",),
        )
    ]
