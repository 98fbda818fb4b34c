"""The commands a release runs on a host, built as token lists by small pure functions.

Nothing here touches a host: ``host.py`` runs these over a Fabric connection (``shell.join``
quotes them, once) and the unit tests run the real scripts against a temporary tree. Paths come
from the one host model (``deploy.host_model.HostLayout``); commands that need root are
wrapped whole in ``shell.as_root``. Shell programs with loops are fixed scripts whose values
arrive as ``$1``, ``$2``...
"""

from __future__ import annotations

import json

from deploy import shell
from deploy.host_model import HostLayout, other_slot
from deploy.shell import NO_STDERR, THEN, Raw, as_root, chain, either, pipe, script, sequence


def staging_dir(layout: HostLayout, name: str) -> str:
    """Where a release is uploaded and unpacked before it appears under its own name."""
    return f"{layout.releases_dir}/.incoming-{name}"


def prepare_staging_command(layout: HostLayout, name: str) -> list[str]:
    stage = staging_dir(layout, name)
    return chain(["rm", "-rf", stage], ["mkdir", "-p", f"{stage}/tree"])


def unpack_command(layout: HostLayout, name: str, archive: str, metadata: dict) -> list[str]:
    """Unpack, byte-compile (the app user may not write __pycache__), then appear atomically.

    The staging directory stays: the wheelhouse in it is still needed for the venv step."""
    tree = f"{staging_dir(layout, name)}/tree"
    record = json.dumps(metadata, sort_keys=True)
    return chain(
        ["test", "!", "-e", layout.release(name)],
        ["tar", "-xzf", archive, "-C", tree],
        ["python3", "-m", "compileall", "-q", "-j", "0", tree, shell.Raw(">/dev/null")],
        ["printf", "%s\\n", record, shell.Raw(">"), f"{tree}/.dropstack-release.json"],
        ["mv", "-T", tree, layout.release(name)],
    )


def exists_command(path: str) -> list[str]:
    return ["test", "-e", path]


def venvs_dir_command(layout: HostLayout, owner: str) -> list[str]:
    """The shared venvs directory (under root-owned /srv/<app>), owned by the deploy user."""
    return as_root(["install", "-d", "-m", "0755", "-o", owner, layout.venvs_dir])


def venv_ready_command(layout: HostLayout, key: str) -> list[str]:
    return ["test", "-f", layout.venv(key) + "/.complete"]


BUILD_VENV_SCRIPT = """\
venv=$1; wheels=$1.wheels; tarball=$2
rm -rf "$venv" "$wheels" && mkdir "$wheels" && tar -xf "$tarball" -C "$wheels" &&
python3 -m venv "$venv" &&
"$venv/bin/pip" install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --find-links "$wheels" "$wheels"/*.whl &&
rm -rf "$wheels" && touch "$venv/.complete"
"""


def build_venv_command(layout: HostLayout, key: str, wheelhouse_tar: str) -> list[str]:
    """A venv from the uploaded wheels only; marked complete last, so a half-built one is redone.

    Built in place rather than renamed into place: a venv's scripts carry its absolute path.
    """
    return script(BUILD_VENV_SCRIPT, layout.venv(key), wheelhouse_tar)


def link_venv_command(layout: HostLayout, name: str, key: str) -> list[str]:
    return ["ln", "-sfn", layout.venv(key), layout.release(name) + "/.venv"]


def replace_link(target: str, link: str) -> list[str]:
    """Point a symlink elsewhere atomically: readers see the old target or the new, never none."""
    return chain(["ln", "-sfn", target, link + ".tmp"], ["mv", "-T", link + ".tmp", link])


def write_file(path: str, content: str, mode: str = "0644") -> list[str]:
    """Replace a small file atomically (temp file, then rename)."""
    return chain(
        ["printf", "%s", content, shell.Raw(">"), path + ".tmp"],
        ["chmod", mode, path + ".tmp"],
        ["mv", "-f", path + ".tmp", path],
    )


def point_slot_command(layout: HostLayout, slot: str, name: str) -> list[str]:
    """The slot's release and the DROPSTACK_RELEASE its unit reads, both replaced atomically."""
    return as_root(
        chain(
            replace_link(layout.release(name), layout.slot(slot)),
            write_file(layout.slot_env(slot), f"DROPSTACK_RELEASE={name}\n"),
        )
    )


ROLLED_BACK_MARK = ".dropstack-rolled-back"


def switch_current_command(layout: HostLayout, name: str, left: str | None = None) -> list[str]:
    """Point `current` at the release and mark it as one that served traffic: only such
    releases are rollback targets (an interrupted one never passed the whole switch). Live
    again, it is no longer one a rollback left; a rollback marks the release it ``left``, so a
    later default rollback does not go back to it."""
    release = layout.release(name)
    commands = [
        replace_link(release, layout.current),
        ["touch", f"{release}/.dropstack-served"],
        ["rm", "-f", f"{release}/{ROLLED_BACK_MARK}"],
    ]
    if left and left != name:
        commands.append(["touch", f"{layout.release(left)}/{ROLLED_BACK_MARK}"])
    return as_root(chain(*commands))


def migrate_command(layout: HostLayout, slot: str) -> list[str]:
    """The oneshot migration unit: `start` returns when it has finished, non-zero if it failed."""
    return as_root(["systemctl", "start", layout.migrate_unit(slot)])


def start_slot_command(layout: HostLayout, slot: str) -> list[str]:
    """(Re)start a slot. Type=notify: systemctl returns once Gunicorn's arbiter is up. The
    host's clock (seconds) comes first on stdout, in the same round trip: where the slot's
    journal starts, should the start or the gate fail."""
    unit = layout.unit(slot)
    return as_root(
        shell.sequence(
            now_command(),
            ["systemctl", "reset-failed", unit, shell.NO_STDERR],
            ["systemctl", "restart", unit],
        )
    )


def stop_slot_command(layout: HostLayout, slot: str, wait: bool = True) -> list[str]:
    """Graceful: systemd sends SIGTERM and Gunicorn lets in-flight requests finish. Without
    ``wait`` systemctl returns once the stop is queued and the slot exits in the background."""
    return as_root(["systemctl", "stop", *([] if wait else ["--no-block"]), layout.unit(slot)])


def cancel_retire_command(layout: HostLayout, slot: str) -> list[str]:
    """Cancel a slot's pending retirement (its timer, or the drain-and-stop already running).
    A stop job that has begun goes on; a later ``systemctl stop`` of the slot waits for it."""
    unit = layout.retire_unit(slot)
    return ["systemctl", "stop", f"{unit}.timer", f"{unit}.service", NO_STDERR]


# How often a drain asks `ss` (a few milliseconds of CPU each time). Nginx's cached
# connections to a retired slot end within keepalive_time (300 ms), so a coarser poll would
# add up to its own interval to every switch under load.
DRAIN_POLL_SECONDS = "0.05"


def retire_program(layout: HostLayout, slot: str, drain_timeout: int) -> list[str]:
    """Drain, then stop a slot unless live.sock names it: the same program whether the host
    runs it when a warm window ends or a deploy runs it to free its idle slot.

    Without a single '$': systemd expands '$' in a transient unit's command line. The drain is
    drain_wait_command's, as one loop: until nothing is connected to the slot's socket, at most
    drain_timeout seconds (without ss, the whole timeout); a slot that is not running has
    nothing to drain."""
    unit, sock = layout.unit(slot), layout.socket(slot)
    timeout = str(int(drain_timeout))
    loop = ["while", *pipe(["ss", "-xH", "state", "connected", "src", sock], ["grep", "-q", "."]),
            THEN, "do", "sleep", DRAIN_POLL_SECONDS, THEN, "done"]  # fmt: skip
    drain = ["if", "command", "-v", "ss", Raw(">/dev/null"), THEN,
             "then", "timeout", timeout, "sh", "-c", shell.join(loop), THEN,
             "else", "sleep", timeout, THEN, "fi"]  # fmt: skip
    active = ["if", "systemctl", "is-active", "--quiet", unit, THEN, "then", *drain, THEN, "fi"]
    unless_live = pipe(["readlink", layout.live_socket], ["grep", "-qxF", sock])
    return sequence(active, either(unless_live, ["systemctl", "stop", unit]))


def stop_idle_command(layout: HostLayout, slot: str, drain_timeout: int) -> list[str]:
    """Make the idle slot free for a release: print its state (active when warm, deactivating
    while an earlier switch's stop finishes), cancel its retirement, drain and stop it,
    waiting for a stop already under way. Instant when it is not running."""
    return as_root(
        sequence(
            ["systemctl", "is-active", layout.unit(slot)],
            cancel_retire_command(layout, slot),
            retire_program(layout, slot, drain_timeout),
        )
    )


def _retire_on_host(layout: HostLayout, slot: str, drain_timeout: int, when: list[str], why: str):
    """Cancel the slot's earlier retirement, then have systemd run the retire program as the
    slot's retire unit (one name: the next switch's stop of the idle slot cancels it)."""
    program = shell.join(retire_program(layout, slot, drain_timeout))
    if "$" in program or "%" in program:
        raise ValueError(f"retire program for {slot} must hold no '$' or '%': {program}")
    run = ["systemd-run", "--quiet", "--collect", f"--unit={layout.retire_unit(slot)}", *when,
           f"--description={layout.app_name}: drain and stop slot {slot} {why}",
           "sh", "-c", program]  # fmt: skip
    return as_root(sequence(cancel_retire_command(layout, slot), run))


def keep_warm_command(layout: HostLayout, slot: str, seconds: int, drain_timeout: int):
    """Leave the retired slot running and have the host retire it in ``seconds``: a transient
    timer (``systemd-run --on-active``) owned by systemd, so it fires even if the deploying
    machine is gone. A reboot ends the window too: only the live slot starts at boot."""
    when = [f"--on-active={int(seconds)}s", "--timer-property=AccuracySec=1s"]
    return _retire_on_host(layout, slot, drain_timeout, when, "after its warm window")


def retire_now_command(layout: HostLayout, slot: str, drain_timeout: int) -> list[str]:
    """Have the host drain and stop the slot now, without waiting for it: a transient service
    (not a timer), started with ``--no-block`` so systemd-run returns at once."""
    return _retire_on_host(layout, slot, drain_timeout, ["--no-block"], "after a rollback")


def reuse_warm_command(layout: HostLayout, slot: str, name: str) -> list[str]:
    """Cancel the idle slot's retirement, then succeed only if it still runs release ``name``
    (its unit active, its link naming the release): a rollback then starts nothing."""
    runs_it = chain(
        ["systemctl", "is-active", "--quiet", layout.unit(slot)],
        pipe(["readlink", layout.slot(slot)], ["grep", "-qxF", layout.release(name)]),
    )
    return as_root(sequence(cancel_retire_command(layout, slot), runs_it))


def start_workers_command(layout: HostLayout, slot: str, count: int) -> list[str]:
    """(Re)start the slot's workers 1..count; each is up once systemctl returns (Type=exec)."""
    units = list(layout.worker_units(slot, count))
    return as_root(
        shell.sequence(
            ["systemctl", "reset-failed", *units, shell.NO_STDERR], ["systemctl", "restart", *units]
        )
    )


def stop_workers_command(layout: HostLayout, slot: str) -> list[str]:
    """Stop every worker of the slot, whatever their number: SIGTERM, each finishes the job in
    hand (bounded by TimeoutStopSec=, the contract's worker_stop_timeout). Returns when all
    have stopped."""
    return as_root(["systemctl", "stop", layout.worker_pattern(slot)])


def worker_states_command(layout: HostLayout) -> list[str]:
    """Every loaded worker unit of either slot, one line each: unit, load, active, sub state
    (read-only, as the deploy user)."""
    return ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager",
            layout.worker_units_pattern]  # fmt: skip


def boot_workers_command(layout: HostLayout, slot: str, count: int) -> list[str]:
    """Start the slot's workers at boot and none of the other slot's: disabling a template
    removes every instance's link, whatever count it was enabled with."""
    return as_root(
        chain(
            ["systemctl", "enable", "--quiet", "--no-reload", *layout.worker_units(slot, count)],
            ["systemctl", "disable", "--quiet", "--no-reload",
             layout.worker_template(other_slot(slot))],
            reload_units_later(layout),
        )
    )  # fmt: skip


# $1 socket, $2 path, $3 timeout (s), $4 unit. Prints the last response; exits 0 (healthy),
# 1 (timed out) or 2 (the unit stopped).
HEALTH_WAIT_SCRIPT = """\
end=$(( $(date +%s) + $3 ))
while :; do
  out=$(curl -s --max-time 3 --unix-socket "$1" -w ' [HTTP %{http_code}]' "http://localhost$2")
  case "$out" in *' [HTTP 200]') echo "$out"; exit 0;; esac
  systemctl is-active --quiet "$4" || { echo "$out"; exit 2; }
  [ "$(date +%s)" -ge "$end" ] && { echo "$out"; exit 1; }
  sleep 0.5
done
"""


def health_wait_command(layout: HostLayout, slot: str, path: str, timeout: int) -> list[str]:
    """Ask the slot's own socket (not Nginx) until it answers 200, the unit dies, or time is up."""
    args = (layout.socket(slot), path, int(timeout), layout.unit(slot))
    return as_root(script(HEALTH_WAIT_SCRIPT, *args, name="health-wait"))


def journal_command(units: list[str], lines: int, since: str = "", follow: bool = False):
    """The journal of some units, as root (the deploy user is not in systemd-journal)."""
    command = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(int(lines))]
    for unit in units:
        command += ["-u", unit]
    if since:
        command += ["--since", since]
    if follow:
        command.append("-f")
    return as_root(command)


def tail_command(paths: list[str], lines: int, follow: bool = False) -> list[str]:
    return as_root(["tail", "-n", str(int(lines)), *(["-F"] if follow else []), *paths])


def route_command(layout: HostLayout, slot: str) -> list[str]:
    """Send Nginx's new upstream connections to the slot: replace the live.sock link Nginx's
    upstream names. connect() follows the link each time and the rename is atomic, so every
    connection finds the old slot or the new one, never none; Nginx is not reloaded, so no
    client connection is closed."""
    return as_root(replace_link(layout.socket(slot), layout.live_socket))


def read_link_command(path: str) -> list[str]:
    return ["readlink", path]


def reload_units_later(layout: HostLayout) -> list[str]:
    """`systemctl daemon-reload`, handed to systemd as a transient unit and not waited for.

    After `enable`/`disable --no-reload` the boot links are in place, which is all a boot
    reads, and `systemctl is-enabled` reads them from disk; only the state `systemctl status`
    and `show` cache is stale until a reload. A reload took 0.2-0.35 s on a local droplet (about
    a second on a busy host), on the path of every switch; now it runs beside the steps after
    it, on the host, and systemd queues any other request behind it."""
    return ["systemd-run", "--quiet", "--no-block", "--collect",
            f"--description={layout.app_name}: daemon-reload after a switch's boot links",
            "systemctl", "daemon-reload"]  # fmt: skip


def boot_slot_command(layout: HostLayout, slot: str) -> list[str]:
    """Start the slot at boot and not the other one: after a reboot the slot live.sock names
    comes up (the link lives on disk, the socket directory is remade by systemd-tmpfiles)."""
    # One daemon-reload for both, not waited for (reload_units_later).
    return as_root(
        chain(
            ["systemctl", "enable", "--quiet", "--no-reload", layout.unit(slot)],
            ["systemctl", "disable", "--quiet", "--no-reload", layout.unit(other_slot(slot))],
            reload_units_later(layout),
        )
    )


# $1 socket, $2 timeout (s), $3 poll interval (s). Ends 0 (drained) or 1, printing how many
# connections were left.
DRAIN_WAIT_SCRIPT = """\
if ! command -v ss >/dev/null; then
  sleep "$2"; echo 'no ss to count connections: waited'; exit 1
fi
end=$(( $(date +%s) + $2 ))
while n=$(ss -xH state connected src "$1" | wc -l); [ "$n" -gt 0 ]; do
  if [ "$(date +%s)" -ge "$end" ]; then echo "$n left"; exit 1; fi
  sleep "$3"
done
"""


def drain_wait_command(layout: HostLayout, slot: str, timeout: int) -> list[str]:
    """Wait until nothing is connected to the slot's socket, polling ``ss``.

    After the switch Nginx opens no new connection to the old slot; its cached ones close after
    a response once older than keepalive_time, or when idle for keepalive_timeout. Only then is
    stopping the slot free of any race. Without ``ss`` (iproute2) it waits the whole timeout."""
    args = (layout.socket(slot), int(timeout), DRAIN_POLL_SECONDS)
    return script(DRAIN_WAIT_SCRIPT, *args, name="drain-wait")


def mark_failed_command(layout: HostLayout, name: str, reason: dict) -> list[str]:
    path = layout.release(name) + "/.dropstack-failed"
    return ["printf", "%s\\n", json.dumps(reason, sort_keys=True), shell.Raw(">"), path]


def remove_paths_command(paths: list[str]) -> list[str]:
    return as_root(["rm", "-rf", *paths]) if paths else ["true"]


def clean_incoming_command(layout: HostLayout) -> list[str]:
    """Remove upload directories that interrupted deploys left behind (ours is gone by now)."""
    return ["find", layout.releases_dir, "-maxdepth", "1", "-name", ".incoming-*",
            "-exec", "rm", "-rf", "{}", "+"]  # fmt: skip


def audit_append_command(layout: HostLayout, line: str) -> list[str]:
    log = layout.audit_log
    return as_root(chain(["printf", "%s\\n", line, shell.Raw(">>"), log], ["chmod", "0644", log]))


def audit_tail_command(layout: HostLayout, lines: int) -> list[str]:
    tail = ["tail", "-n", str(int(lines)), layout.audit_log, shell.NO_STDERR]
    return shell.either(tail, ["true"])


def now_command() -> list[str]:
    return ["date", "+%s"]


def migrations_dir(layout: HostLayout, name: str) -> str:
    return layout.release(name) + "/app/migrations/versions"


def migration_revisions_command(layout: HostLayout, *names: str) -> list[str]:
    """The revision lines of some releases' migrations, one `path:line` each (the path says
    whose: plan.revisions_by_release)."""
    dirs = [migrations_dir(layout, name) for name in names]
    grep = 'grep -HE "^(revision|down_revision)\\b" "$d"/*.py 2>/dev/null'
    return script(f'for d in "$@"; do {grep}; done; true', *dirs)


def readiness_command(layout: HostLayout, slot: str, path: str) -> list[str]:
    """One readiness request to the slot's own socket, as root (the socket is root:www-data);
    prints the body. Milliseconds, where a Python process reading the database takes seconds."""
    return as_root(
        ["curl", "-s", "--max-time", "3", "--unix-socket", layout.socket(slot),
         f"http://localhost{path}"]
    )  # fmt: skip


def db_revision_command(layout: HostLayout, slot: str) -> list[str]:
    """Ask the database its schema revision through the slot's release, as the app user with
    the app's environment file: the database URL never appears on a command line."""
    slot_dir = layout.slot(slot)
    return as_root(
        ["systemd-run", "--quiet", "--wait", "--pipe", "--collect",
         "-p", f"User={layout.app_user}", "-p", f"EnvironmentFile={layout.env_file}",
         "-p", f"WorkingDirectory={slot_dir}",
         f"{slot_dir}/.venv/bin/python", "-m", "app.manage", "current"]
    )  # fmt: skip
