"""The shell commands a release runs on a host, built as strings by small pure functions.

Nothing here touches a host: ``host.py`` runs these over a Fabric connection and the unit tests
compare the strings. Commands that need root are wrapped whole in ``as_root`` because Invoke's
``sudo`` prefixes only the first word, so ``sudo a && b`` would run ``b`` as the deploy user.
"""

from __future__ import annotations

import json
import shlex

from deploy.release.layout import Layout, other_slot

q = shlex.quote


def as_root(script: str) -> str:
    """The whole script as root, non-interactively (the deploy user has passwordless sudo)."""
    return f"sudo -n sh -c {q(script)}"


def staging_dir(layout: Layout, name: str) -> str:
    """Where a release is uploaded and unpacked before it appears under its own name."""
    return f"{layout.releases}/.incoming-{name}"


def prepare_staging_command(layout: Layout, name: str) -> str:
    stage = q(staging_dir(layout, name))
    return f"rm -rf {stage} && mkdir -p {stage}/tree"


def unpack_command(layout: Layout, name: str, archive: str, metadata: dict) -> str:
    """Unpack, byte-compile (the app user may not write __pycache__), then appear atomically.

    The staging directory stays: the wheelhouse in it is still needed for the venv step."""
    stage = staging_dir(layout, name)
    tree = q(f"{stage}/tree")
    record = q(json.dumps(metadata, sort_keys=True))
    return (
        f"test ! -e {q(layout.release(name))} && "
        f"tar -xzf {q(archive)} -C {tree} && "
        f"python3 -m compileall -q -j 0 {tree} >/dev/null && "
        f"printf '%s\\n' {record} > {tree}/.dropstack-release.json && "
        f"mv -T {tree} {q(layout.release(name))}"
    )


def venvs_dir_command(layout: Layout, owner: str) -> str:
    """The shared venvs directory (under root-owned /srv/<app>), owned by the deploy user."""
    return as_root(f"install -d -m 0755 -o {q(owner)} {q(layout.venvs)}")


def venv_ready_command(layout: Layout, key: str) -> str:
    return f"test -f {q(layout.venv(key) + '/.complete')}"


def build_venv_command(layout: Layout, key: str, wheelhouse_tar: str) -> str:
    """A venv from the uploaded wheels only; marked complete last, so a half-built one is redone.

    Built in place rather than renamed into place: a venv's scripts carry its absolute path.
    """
    venv = layout.venv(key)
    wheels = f"{venv}.wheels"
    return (
        f"rm -rf {q(venv)} {q(wheels)} && mkdir {q(wheels)} && "
        f"tar -xf {q(wheelhouse_tar)} -C {q(wheels)} && "
        f"python3 -m venv {q(venv)} && "
        f"{q(venv)}/bin/pip install --quiet --no-index --no-cache-dir "
        f"--disable-pip-version-check --find-links {q(wheels)} {q(wheels)}/*.whl && "
        f"rm -rf {q(wheels)} && touch {q(venv + '/.complete')}"
    )


def link_venv_command(layout: Layout, name: str, key: str) -> str:
    return f"ln -sfn {q(layout.venv(key))} {q(layout.release(name) + '/.venv')}"


def replace_link(target: str, link: str) -> str:
    """Point a symlink elsewhere atomically: readers see the old target or the new, never none."""
    return f"ln -sfn {q(target)} {q(link + '.tmp')} && mv -T {q(link + '.tmp')} {q(link)}"


def point_slot_command(layout: Layout, slot: str, name: str) -> str:
    """The slot's release and the DROPSTACK_RELEASE its unit reads, both replaced atomically."""
    env = layout.slot_env(slot)
    return as_root(
        f"{replace_link(layout.release(name), layout.slot(slot))} && "
        f"printf 'DROPSTACK_RELEASE=%s\\n' {q(name)} > {q(env + '.tmp')} && "
        f"chmod 0644 {q(env + '.tmp')} && mv -f {q(env + '.tmp')} {q(env)}"
    )


def switch_current_command(layout: Layout, name: str) -> str:
    """Point `current` at the release and mark it as one that served traffic: only such
    releases are rollback targets (an interrupted one never passed the whole switch)."""
    served = q(layout.release(name) + "/.dropstack-served")
    return as_root(f"{replace_link(layout.release(name), layout.current)} && touch {served}")


def migrate_command(layout: Layout, slot: str) -> str:
    """The oneshot migration unit: `start` returns when it has finished, non-zero if it failed."""
    return as_root(f"systemctl start {q(layout.migrate_unit(slot))}")


def start_slot_command(layout: Layout, slot: str) -> str:
    """(Re)start a slot. Type=notify: systemctl returns once Gunicorn's arbiter is up."""
    unit = q(layout.unit(slot))
    return as_root(f"systemctl reset-failed {unit} 2>/dev/null; systemctl restart {unit}")


def stop_slot_command(layout: Layout, slot: str) -> str:
    """Graceful: systemd sends SIGTERM and Gunicorn lets in-flight requests finish."""
    return as_root(f"systemctl stop {q(layout.unit(slot))}")


def health_wait_command(layout: Layout, slot: str, path: str, timeout: int) -> str:
    """Ask the slot's own socket (not Nginx) until it answers 200, the unit dies, or time is up.

    Prints the last response and ends 0 (healthy), 1 (timed out) or 2 (the unit stopped).
    """
    unit = q(layout.unit(slot))
    curl = (
        f"curl -s --max-time 3 --unix-socket {q(layout.socket(slot))} "
        f"-w ' [HTTP %{{http_code}}]' http://localhost{path}"
    )
    return as_root(
        f"end=$(( $(date +%s) + {int(timeout)} )); "
        f"while :; do out=$({curl}); "
        f'case "$out" in *\' [HTTP 200]\') echo "$out"; exit 0;; esac; '
        f'systemctl is-active --quiet {unit} || {{ echo "$out"; exit 2; }}; '
        f'[ $(date +%s) -ge $end ] && {{ echo "$out"; exit 1; }}; sleep 0.5; done'
    )


def journal_command(unit: str, lines: int, since_epoch: int | None = None) -> str:
    since = f" --since @{int(since_epoch)}" if since_epoch else ""
    return as_root(f"journalctl -u {q(unit)} -n {int(lines)}{since} --no-pager -o short-iso")


def route_command(layout: Layout, slot: str) -> str:
    """Send Nginx's new upstream connections to the slot: replace the live.sock link Nginx's
    upstream names. connect() follows the link each time and the rename is atomic, so every
    connection finds the old slot or the new one, never none; Nginx is not reloaded, so no
    client connection is closed."""
    return as_root(replace_link(layout.socket(slot), layout.live_socket))


def boot_slot_command(layout: Layout, slot: str) -> str:
    """Start the slot at boot and not the other one: after a reboot the slot live.sock names
    comes up (the link lives on disk, the socket directory is remade by systemd-tmpfiles)."""
    # One daemon-reload for both (each costs about a second on a busy host), so that systemctl
    # status shows the new state at once; boot itself needs only the symlinks.
    enable = f"systemctl enable --quiet --no-reload {q(layout.unit(slot))}"
    disable = f"systemctl disable --quiet --no-reload {q(layout.unit(other_slot(slot)))}"
    return as_root(f"{enable} && {disable} && systemctl daemon-reload")


def drain_wait_command(layout: Layout, slot: str, timeout: int) -> str:
    """Wait until nothing is connected to the slot's socket, polling ``ss``.

    After the switch Nginx opens no new connection to the old slot; its cached ones close after
    a response once older than keepalive_time, or when idle for keepalive_timeout. Only then is
    stopping the slot free of any race. Ends 0 (drained) or 1 (printing how many connections
    were left when time ran out). Without ``ss`` (iproute2) it waits the whole timeout."""
    count = f"ss -xH state connected src {q(layout.socket(slot))} | wc -l"
    return (
        f"if ! command -v ss >/dev/null; then sleep {int(timeout)}; "
        "echo 'no ss to count connections: waited'; exit 1; fi; "
        f"end=$(( $(date +%s) + {int(timeout)} )); "
        f'while n=$({count}); [ "$n" -gt 0 ]; do '
        f'if [ $(date +%s) -ge $end ]; then echo "$n left"; exit 1; fi; sleep 0.2; done'
    )


def mark_failed_command(layout: Layout, name: str, reason: dict) -> str:
    path = q(layout.release(name) + "/.dropstack-failed")
    return f"printf '%s\\n' {q(json.dumps(reason, sort_keys=True))} > {path}"


def remove_paths_command(paths: list[str]) -> str:
    return as_root("rm -rf " + " ".join(q(p) for p in paths)) if paths else "true"


def clean_incoming_command(layout: Layout) -> str:
    """Remove upload directories that interrupted deploys left behind (ours is gone by now)."""
    return f"find {q(layout.releases)} -maxdepth 1 -name '.incoming-*' -exec rm -rf {{}} +"


def audit_append_command(layout: Layout, line: str) -> str:
    log = q(layout.audit_log)
    return as_root(f"printf '%s\\n' {q(line)} >> {log} && chmod 0644 {log}")


def audit_tail_command(layout: Layout, lines: int) -> str:
    return f"tail -n {int(lines)} {q(layout.audit_log)} 2>/dev/null || true"


def now_command() -> str:
    return "date +%s"


def migration_revisions_command(layout: Layout, name: str) -> str:
    """The revision lines of a release's migrations, one `path:line` each."""
    versions = q(layout.release(name) + "/app/migrations/versions")
    return f"grep -HE '^(revision|down_revision)\\b' {versions}/*.py 2>/dev/null || true"


def db_revision_command(layout: Layout, slot: str, env_file: str, app_user: str) -> str:
    """Ask the database its schema revision through the live slot's release, as the app user
    with the app's environment file: the database URL never appears on a command line."""
    slot_dir = layout.slot(slot)
    return as_root(
        f"systemd-run --quiet --wait --pipe --collect -p User={q(app_user)} "
        f"-p EnvironmentFile={q(env_file)} -p WorkingDirectory={q(slot_dir)} "
        f"{q(slot_dir + '/.venv/bin/python')} -m app.manage current"
    )
