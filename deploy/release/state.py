"""One read-only probe of a host's release state, and its parse into data.

Everything a deploy, rollback or ``fab releases`` needs to decide is printed by a single shell
command (one SSH round trip), as ``key=value`` lines that ``parse_state`` turns into ``HostState``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from deploy.release.layout import SLOTS, Layout, is_release_name
from deploy.release.lock import Holder, parse_holder

q = shlex.quote


@dataclass(frozen=True)
class ReleaseInfo:
    name: str
    failed: bool = False
    venv: str | None = None  # key of the shared venv its .venv points to
    served: bool = False  # it went live once (passed its gate and took traffic)


@dataclass(frozen=True)
class HostState:
    current: str | None = None  # release `current` points to
    slots: dict[str, str | None] = field(default_factory=dict)  # slot -> release
    active: dict[str, bool] = field(default_factory=dict)  # slot -> unit active
    routed_slot: str | None = None  # the slot live.sock names: Nginx connects to it
    nginx_active: bool = False
    releases: tuple[ReleaseInfo, ...] = ()  # oldest first
    venvs: dict[str, bool] = field(default_factory=dict)  # key -> complete
    lock: Holder | None = None
    locked: bool = False

    def release(self, name: str) -> ReleaseInfo | None:
        return next((r for r in self.releases if r.name == name), None)

    @property
    def live_slot(self) -> str | None:
        """The slot serving traffic: the one live.sock names, if it is running."""
        slot = self.routed_slot
        return slot if slot and self.active.get(slot) else None


def probe_command(layout: Layout) -> str:
    """Print the host's release state; read-only, and needs root only to read the lock."""
    rel = q(layout.releases)
    lines = [
        f'echo current=$(basename "$(readlink {q(layout.current)})" 2>/dev/null)',
        "echo nginx=$(systemctl is-active nginx)",
        f"echo live=$(readlink {q(layout.live_socket)})",
    ]
    for slot in SLOTS:
        lines += [
            f'echo slot.{slot}=$(basename "$(readlink {q(layout.slot(slot))})" 2>/dev/null)',
            f"echo active.{slot}=$(systemctl is-active {q(layout.unit(slot))})",
        ]
    lines += [
        f'for r in {rel}/*/; do [ -d "$r" ] || continue; n=$(basename "$r"); '
        'f=0; [ -e "$r.dropstack-failed" ] && f=1; s=0; [ -e "$r.dropstack-served" ] && s=1; '
        'echo "release=$n $f $s $(basename "$(readlink "$r.venv")" 2>/dev/null)"; done',
        f'for v in {q(layout.venvs)}/*/; do [ -d "$v" ] || continue; '
        f'c=0; [ -f "$v.complete" ] && c=1; echo "venv=$(basename "$v") $c"; done',
        f'if [ -d {q(layout.lock)} ]; then echo "lock=$(cat {q(layout.lock)}/holder.json '
        f"2>/dev/null | tr -d '\\n')\"; fi",
    ]
    return "; ".join(lines)


def parse_state(output: str, layout: Layout) -> HostState:
    values: dict[str, str] = {}
    releases, venvs = [], {}
    lock, locked = None, False
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key == "release":
            name, failed, served, venv = ([*value.split(), "", "", "", ""])[:4]
            if is_release_name(name):
                releases.append(ReleaseInfo(name, failed == "1", venv or None, served == "1"))
        elif key == "venv":
            name, complete = ([*value.split(), ""])[:2]
            venvs[name] = complete == "1"
        elif key == "lock":
            locked, lock = True, parse_holder(value)
        else:
            values[key] = value
    routed_slot = next((s for s in SLOTS if layout.socket(s) == values.get("live")), None)
    return HostState(
        current=values.get("current") or None,
        slots={s: values.get(f"slot.{s}") or None for s in SLOTS},
        active={s: values.get(f"active.{s}") == "active" for s in SLOTS},
        routed_slot=routed_slot,
        nginx_active=values.get("nginx") == "active",
        releases=tuple(sorted(releases, key=lambda r: r.name)),
        venvs=venvs,
        lock=lock,
        locked=locked,
    )
