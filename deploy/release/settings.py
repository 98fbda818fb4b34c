"""How releases are named, and the settings a release run reads (``dropstack.release``).

Where releases, slots, sockets and units are on a host is not here: it is the one host model,
``deploy.host_model`` (``HostSettings.paths``), which provisioning and the host suite read too.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from deploy.app_contract import AppContract
from deploy.host_model import SettingsError

# <UTC YYYYmmddHHMMSS>-<short sha>[-dirty]: sorting names sorts releases by build time.
RELEASE_NAME = re.compile(r"(?P<stamp>\d{14})-(?P<sha>[0-9a-f]{7,40})(?P<dirty>-dirty)?")


class ReleaseError(Exception):
    """A release operation cannot go on; ``str()`` is the one line the operator sees."""


def release_name(built_at: datetime, revision: str, dirty: bool = False) -> str:
    """The release's directory name: build time (UTC) and the short commit it was built from."""
    stamp = built_at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp}-{revision[:7]}{'-dirty' if dirty else ''}"


def free_release_name(name: str, taken: Collection[str]) -> str:
    """``name``, or, when a host already has a release of that name, the same commit stamped
    a second later (and so on). The host's one is another deploy of the same commit begun in
    the same second and over before this one took the lock: names stay unique per host and
    still sort in deploy order."""
    m = RELEASE_NAME.fullmatch(name)
    stamp = datetime.strptime(m["stamp"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    while name in taken:
        stamp += timedelta(seconds=1)
        name = release_name(stamp, m["sha"], bool(m["dirty"]))
    return name


def is_release_name(name: str) -> bool:
    return RELEASE_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class ReleaseSettings:
    """What a release run may be told through Fabric config (``dropstack.release.*``)."""

    keep: int = 5  # releases kept per host, besides the live, previous-good and slot ones
    health_timeout: int = 30  # seconds a new slot has to answer /readyz with 200
    # Seconds the retired slot may keep connections from Nginx after the switch before it is
    # stopped anyway: well above upstream.conf's keepalive_time and keepalive_timeout (300 ms),
    # after which Nginx has closed every connection to it, busy or idle.
    drain_timeout: int = 15
    # Seconds the retired slot keeps running after a switch, off live.sock and without workers,
    # so that a rollback inside the window is a pure traffic switch; then the host itself
    # drains and stops it (a transient systemd timer). 0: stop it at once. Costs one more
    # Gunicorn's memory for the window (docs/releases.md).
    warm_seconds: int = 300
    lock_wait: int = 0  # default for --wait: seconds to wait for another deploy's lock
    # Both from the app contract (dropstack.app), never set in dropstack.release.
    archive_paths: tuple[str, ...] = ("app",)  # what of the tree a host gets
    requirements: str = "app/requirements.txt"
    constraints: str = "constraints.txt"
    cache_dir: str = "~/.cache/dropstack"
    source: str = "."  # the git work tree releases are built from
    journal_lines: int = 30

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ReleaseSettings:
        """From the ``dropstack`` section of a Fabric config (``dropstack.release``); unknown
        keys are errors."""
        section = dict(config or {})
        values = dict(section.get("release") or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ReleaseError(
                f"dropstack.release.{unknown[0]}: not a setting; known: {', '.join(sorted(known))}"
            )
        for moved in ("requirements", "archive_paths"):
            if moved in values:
                raise ReleaseError(f"dropstack.release.{moved}: moved to dropstack.app.{moved}")
        # What the build ships is the app contract's (deploy.host_model.AppContract).
        try:
            contract = AppContract.from_mapping(dict(section.get("app") or {}))
        except SettingsError as exc:
            raise ReleaseError(f"dropstack.{exc}") from None
        values.update(requirements=contract.requirements, archive_paths=contract.archive_paths)
        settings = cls(**values)
        if not isinstance(settings.warm_seconds, int) or not 0 <= settings.warm_seconds <= 86400:
            raise ReleaseError(
                f"dropstack.release.warm_seconds: {settings.warm_seconds!r} is not allowed; "
                "0..86400 seconds (0: stop the old slot at once)"
            )
        if settings.keep < 2:
            raise ReleaseError("dropstack.release.keep: must be at least 2 (live and previous)")
        return settings
