"""One read-only probe of a host's release state, and its parse into data.

Everything a deploy, rollback or ``fab releases`` needs to decide is printed by a single shell
command (one SSH round trip), as ``key=value`` lines that ``parse_state`` turns into ``HostState``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.host_model import SLOTS, HostLayout
from deploy.release.lock import Holder, parse_holder
from deploy.release.settings import is_release_name
from deploy.shell import script


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


# $1 current, $2 live.sock, $3 releases dir, $4 venvs dir, $5 lock dir, then per slot:
# name, slot link, unit.
PROBE_SCRIPT = """\
echo current=$(basename "$(readlink "$1")" 2>/dev/null)
echo nginx=$(systemctl is-active nginx)
echo live=$(readlink "$2")
rel=$3; venvs=$4; lock=$5; shift 5
while [ $# -ge 3 ]; do
  echo "slot.$1=$(basename "$(readlink "$2")" 2>/dev/null)"
  echo "active.$1=$(systemctl is-active "$3")"
  shift 3
done
for r in "$rel"/*/; do [ -d "$r" ] || continue; n=$(basename "$r")
  f=0; [ -e "$r.dropstack-failed" ] && f=1; s=0; [ -e "$r.dropstack-served" ] && s=1
  echo "release=$n $f $s $(basename "$(readlink "$r.venv")" 2>/dev/null)"; done
for v in "$venvs"/*/; do [ -d "$v" ] || continue
  c=0; [ -f "$v.complete" ] && c=1; echo "venv=$(basename "$v") $c"; done
if [ -d "$lock" ]; then echo "lock=$(cat "$lock/holder.json" 2>/dev/null | tr -d '\\n')"; fi
"""


def probe_command(layout: HostLayout) -> list[str]:
    """Print the host's release state; read-only, as the deploy user (everything it reads,
    the lock's holder record included, is world-readable)."""
    slots = [a for slot in SLOTS for a in (slot, layout.slot(slot), layout.unit(slot))]
    args = (layout.current, layout.live_socket, layout.releases_dir, layout.venvs_dir,
            layout.lock, *slots)  # fmt: skip
    return script(PROBE_SCRIPT, *args, name="release-state")


def parse_state(output: str, layout: HostLayout) -> HostState:
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
