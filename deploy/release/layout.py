"""Where releases live on a host, how they are named, and the settings a release run reads.

The paths mirror ``deploy.host_settings.HostPaths`` (provisioning creates them) and are derived
from the same Fabric config keys (``dropstack.host.app_name``, ``app_root``, ``config_dir``,
``app_user``, ``runtime_dir``), so the two cannot disagree about where a slot, its socket or the
live link is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SLOTS = ("blue", "green")

# <UTC YYYYmmddHHMMSS>-<short sha>[-dirty]: sorting names sorts releases by build time.
RELEASE_NAME = re.compile(r"(?P<stamp>\d{14})-(?P<sha>[0-9a-f]{7,40})(?P<dirty>-dirty)?")


class ReleaseError(Exception):
    """A release operation cannot go on; ``str()`` is the one line the operator sees."""


def release_name(built_at: datetime, revision: str, dirty: bool = False) -> str:
    """The release's directory name: build time (UTC) and the short commit it was built from."""
    stamp = built_at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp}-{revision[:7]}{'-dirty' if dirty else ''}"


def is_release_name(name: str) -> bool:
    return RELEASE_NAME.fullmatch(name) is not None


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(slot)]


@dataclass(frozen=True)
class Layout:
    """The paths of one app's releases on a host."""

    app_name: str = "dropstack"
    app_root: str | None = None
    config_dir: str | None = None
    app_user: str = "app"
    runtime_dir: str | None = None  # where systemd makes the slots' sockets; /run/<app_name>

    @property
    def root(self) -> str:
        return self.app_root or f"/srv/{self.app_name}"

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def venvs(self) -> str:
        # Shared virtualenvs keyed by the dependency set: a code-only release reuses one.
        return f"{self.root}/venvs"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def lock(self) -> str:
        return f"{self.root}/deploy.lock"

    @property
    def audit_log(self) -> str:
        return f"{self.root}/audit.log"

    @property
    def live_socket(self) -> str:
        # Nginx's upstream names this symlink; a deploy points it at the new slot's socket.
        return f"{self.root}/live.sock"

    @property
    def env_file(self) -> str:
        return f"{self.config_dir or '/etc/' + self.app_name}/app.env"

    def release(self, name: str) -> str:
        return f"{self.releases}/{name}"

    def venv(self, key: str) -> str:
        return f"{self.venvs}/{key}"

    def slot(self, slot: str) -> str:
        return f"{self.root}/slots/{slot}"

    def slot_env(self, slot: str) -> str:
        return f"{self.root}/slots/{slot}.env"

    def socket(self, slot: str) -> str:
        return f"{self.runtime_dir or '/run/' + self.app_name}/{slot}.sock"

    def unit(self, slot: str) -> str:
        return f"{self.app_name}@{slot}.service"

    def migrate_unit(self, slot: str) -> str:
        return f"{self.app_name}-migrate@{slot}.service"


@dataclass(frozen=True)
class ReleaseSettings:
    """What a release run may be told through Fabric config (``dropstack.release.*``)."""

    layout: Layout = field(default_factory=Layout)
    keep: int = 5  # releases kept per host, besides the live, previous-good and slot ones
    health_timeout: int = 30  # seconds a new slot has to answer /readyz with 200
    # Seconds the retired slot may keep connections from Nginx after the switch before it is
    # stopped anyway: well above upstream.conf's keepalive_time and keepalive_timeout (5 s), after
    # which Nginx has closed every connection to it, busy or idle.
    drain_timeout: int = 15
    lock_wait: int = 0  # default for --wait: seconds to wait for another deploy's lock
    archive_paths: tuple[str, ...] = ("app",)  # what of the tree a host gets
    requirements: str = "app/requirements.txt"
    constraints: str = "constraints.txt"
    cache_dir: str = "~/.cache/dropstack"
    source: str = "."  # the git work tree releases are built from
    journal_lines: int = 30

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ReleaseSettings:
        """From the ``dropstack`` section of a Fabric config: the paths from ``dropstack.host``
        (the keys provisioning's HostSettings reads), the rest from ``dropstack.release``;
        unknown release keys are errors."""
        section = dict(config or {})
        host = dict(section.get("host") or {})
        layout = Layout(
            app_name=host.get("app_name", "dropstack"),
            app_root=host.get("app_root"),
            config_dir=host.get("config_dir"),
            app_user=host.get("app_user", "app"),
            runtime_dir=host.get("runtime_dir"),
        )
        values = dict(section.get("release") or {})
        known = {f for f in cls.__dataclass_fields__ if f != "layout"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ReleaseError(
                f"dropstack.release.{unknown[0]}: not a setting; known: {', '.join(sorted(known))}"
            )
        if "archive_paths" in values:
            values["archive_paths"] = tuple(values["archive_paths"])
        settings = cls(layout=layout, **values)
        if settings.keep < 2:
            raise ReleaseError("dropstack.release.keep: must be at least 2 (live and previous)")
        return settings
