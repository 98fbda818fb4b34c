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
    rolled_back: bool = False  # a rollback moved traffic away from it (not since live again)


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
# Few processes: every deploy and rollback waits for this probe (it rides on the lock's round
# trip), so names are cut with parameter expansion rather than basename, and one systemctl
# call asks every unit.
PROBE_SCRIPT = """\
c=$(readlink "$1"); echo "current=${c##*/}"
echo "live=$(readlink "$2")"
rel=$3; venvs=$4; lock=$5; shift 5
units=nginx; names=
while [ $# -ge 3 ]; do
  l=$(readlink "$2"); echo "slot.$1=${l##*/}"
  units="$units $3"; names="$names $1"; shift 3
done
set -- $(systemctl is-active $units)
echo "nginx=$1"; [ $# -gt 0 ] && shift
for n in $names; do echo "active.$n=$1"; [ $# -gt 0 ] && shift; done
for r in "$rel"/*/; do [ -d "$r" ] || continue; n=${r%/}; n=${n##*/}
  f=0; [ -e "$r.dropstack-failed" ] && f=1; s=0; [ -e "$r.dropstack-served" ] && s=1
  b=0; [ -e "$r.dropstack-rolled-back" ] && b=1
  v=$(readlink "$r.venv"); echo "release=$n $f $s $b ${v##*/}"; done
for v in "$venvs"/*/; do [ -d "$v" ] || continue; n=${v%/}
  c=0; [ -f "$v.complete" ] && c=1; echo "venv=${n##*/} $c"; done
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
            name, failed, served, left, venv = ([*value.split(), "", "", "", "", ""])[:5]
            if is_release_name(name):
                releases.append(
                    ReleaseInfo(name, failed == "1", venv or None, served == "1", left == "1")
                )
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
