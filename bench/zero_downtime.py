"""Benchmark 2: failed requests while a release switches, three ways, in one run.

Under the same steady wrk load through Nginx (two clients, keep-alive and a connection per
request, each pausing between requests): dropstack's blue/green switch, three times: `fab
deploy` of a code-only change, `fab rollback` to the release it replaced (its slot kept warm),
`fab rollback` to the one before (its slot started afresh); then, on the same host and its live
slot, Gunicorn's own graceful reload (the slot's packages reinstalled in place, then `systemctl
reload`: HUP, new workers, the old ones finish their requests), then the naive method of the
tutorial this project grew from (stop Gunicorn, reinstall the app's packages, start it again).
Afterwards a normal `fab deploy` restores the host. Each method's result holds a
per-half-second timeline of the load (bench/timeline.py) that bench/charts.py draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from shlex import quote as q
from typing import TypeVar

from bench import fab_output, timeline
from bench.drive import BenchFailed, Source, WebHost, fab, inventory, note
from bench.load import CLIENT_KINDS, CONNECTIONS_PER_CLIENT, PAUSE_MS, SwitchLoad, steady_load
from bench.wrk import combined
from deploy.host_model import HostLayout, HostSettings
from deploy.release import commands as cmd
from deploy.release.build import WHEELHOUSE_TAR, parse_target, target_probe_command, wheelhouse_key
from deploy.release.plan import good_releases
from deploy.release.settings import ReleaseSettings
from deploy.release.state import parse_state, probe_command
from deploy.shell import as_root, join, script

# In the deploy user's home: SFTP and commands start there, and nothing else uses the name.
WHEELS_ON_HOST = "dropstack-bench-wheels"
RELOAD_TIMEOUT = 90  # seconds: the old workers' graceful timeout (30 s) and the new ones' start

T = TypeVar("T")


def reinstall_command(venv: str, wheels: str) -> str:
    """Every package of the venv reinstalled from the wheels: the in-place update both
    single-slot methods make. Runs as the deploy user, who owns the venvs."""
    return (
        f"{q(venv)}/bin/pip install --quiet --force-reinstall --no-index --no-cache-dir "
        f"--disable-pip-version-check --find-links {q(wheels)} {q(wheels)}/*.whl"
    )


def naive_restart_command(layout: HostLayout, slot: str, venv: str, wheels: str) -> str:
    """Stop the serving Gunicorn, reinstall every package into its venv from the wheels, start
    it again: what a deploy looks like without a second slot. The unit changes go through sudo
    like the release commands."""
    stop, start = (join(c(layout, slot)) for c in (cmd.stop_slot_command, cmd.start_slot_command))
    return " && ".join([stop, reinstall_command(venv, wheels), start])


# $1 unit, $2 its socket, $3 readiness path, $4 timeout (s). `systemctl reload` only sends HUP
# (the unit's ExecReload) and returns; Gunicorn then forks new workers, which import the app
# afresh (preload_app is off), and stops the old ones gracefully. Done when no old worker is
# left and the slot's own socket answers 200, so a new worker serves. Exits 0, 1 (timed out),
# 2 (not running), 3 (reload refused).
RELOAD_WAIT_SCRIPT = """\
main=$(systemctl show -p MainPID --value "$1")
[ "${main:-0}" -gt 0 ] || { echo "$1 is not running"; exit 2; }
old=$(pgrep -P "$main")
[ -n "$old" ] || { echo "$1 has no workers"; exit 2; }
systemctl reload "$1" || exit 3
end=$(( $(date +%s) + $4 ))
while pgrep -P "$main" | grep -qxF "$old"; do
  [ "$(date +%s)" -ge "$end" ] && { echo "old workers still running after $4 s"; exit 1; }
  sleep 0.1
done
while :; do
  out=$(curl -s --max-time 3 --unix-socket "$2" -w ' [HTTP %{http_code}]' "http://localhost$3")
  case "$out" in *' [HTTP 200]') echo "old workers gone; $out"; exit 0;; esac
  [ "$(date +%s)" -ge "$end" ] && { echo "$out"; exit 1; }
  sleep 0.1
done
"""


def reload_command(layout: HostLayout, slot: str, timeout: int = RELOAD_TIMEOUT) -> list[str]:
    """Gunicorn's graceful reload of a slot, returning once its workers have been replaced."""
    args = (layout.unit(slot), layout.socket(slot), "/readyz", int(timeout))
    return as_root(script(RELOAD_WAIT_SCRIPT, *args, name="reload-wait"))


def unpack_wheels_command(tarball: str, wheels: str) -> str:
    w = q(wheels)
    return f"rm -rf {w} && mkdir -p {w} && tar -xf {q(tarball)} -C {w}"


def timed(action: Callable[[], T]) -> tuple[T, tuple[float, float]]:
    """``action()`` and the wall-clock span it ran (epoch seconds, the load log's clock)."""
    began = time.time()
    value = action()
    return value, (began, time.time())


def switch_result(
    load: SwitchLoad,
    command: tuple[float, float],
    steps: tuple[dict, ...] = (),
    switch: tuple[float, float] | None = None,
) -> dict:
    """One method's figures: its command's duration, what wrk counted over the whole load, the
    requests that ended while the command ran, and the timeline around it. ``switch`` is the
    part of the command that moves traffic; from the step log when there is one."""
    switch = switch or timeline.switch_window(steps)
    return {
        "seconds": round(command[1] - command[0], 1),
        "switch_seconds": fab_output.switch_seconds(steps) or None,
        "total": combined(load.clients),
        "during": timeline.during(load.requests, command),
        "clients": {kind: fig.to_json() for kind, fig in load.clients.items()},
        "timeline": timeline.build(load.requests, command, load.span, switch).to_json(),
    }


def local_wheelhouse(source: Source, host: WebHost) -> Path:
    """The wheelhouse the deploys of ``source`` shipped, from this machine's cache."""
    settings = ReleaseSettings()
    target = parse_target(host.run(target_probe_command()).stdout)
    key = wheelhouse_key(
        (source.path / settings.requirements).read_text(),
        (source.path / settings.constraints).read_text(),
        target,
    )
    tarball = Path(settings.cache_dir).expanduser() / "wheelhouses" / key / WHEELHOUSE_TAR
    if not tarball.exists():
        raise BenchFailed(f"no cached wheelhouse at {tarball}; deploy once first")
    return tarball


def live_slot(host: WebHost) -> tuple[HostLayout, str, str]:
    """The host's layout, its live slot and that slot's venv (resolved)."""
    layout = HostSettings().paths
    state = parse_state(host.run(probe_command(layout)).stdout, layout)
    slot = state.live_slot
    if not slot:
        raise BenchFailed(f"{host.name}: no live slot")
    venv = host.run(f"readlink -f {q(layout.slot(slot) + '/.venv')}").stdout.strip()
    return layout, slot, venv


def gunicorn_reload(host: WebHost, url: str) -> dict:
    """Reinstall in place, then HUP: the switch is the reload, from the signal until the old
    workers are gone and a new one answers."""
    layout, slot, venv = live_slot(host)
    note(f"Gunicorn reload of dropstack@{slot} (reinstall into {venv}, then HUP) under load")
    with steady_load(url) as load:
        began = time.time()
        host.run(reinstall_command(venv, WHEELS_ON_HOST), timeout=300)
        reloaded, reload_span = timed(
            lambda: host.run(join(reload_command(layout, slot)), warn=True, timeout=300)
        )
        command = (began, reload_span[1])
    if reloaded.failed:
        raise BenchFailed(f"reload of dropstack@{slot}: {reloaded.stdout.strip()[-200:]}")
    return {
        **switch_result(load, command, switch=reload_span),
        "reload_seconds": round(reload_span[1] - reload_span[0], 1),
        "slot": slot,
    }


def naive_restart(host: WebHost, url: str) -> dict:
    layout, slot, venv = live_slot(host)
    note(f"naive restart of dropstack@{slot} (reinstalling into {venv}) under load")
    with steady_load(url) as load:
        _, command = timed(
            lambda: host.run(naive_restart_command(layout, slot, venv, WHEELS_ON_HOST), timeout=300)
        )
    return {**switch_result(load, command, switch=command), "slot": slot}


def fab_switch(source: Source, url: str, *args: str) -> dict:
    with steady_load(url) as load:
        run_, command = timed(lambda: fab(*args, source=source))
    return switch_result(load, command, run_.steps)


def dropstack_switches(source: Source, url: str, before: str, older: str) -> dict:
    """A code-only deploy, then back to the release it replaced (``before``), whose slot it
    kept warm, then to ``older``, a good release before that one, which no slot runs: started
    afresh. Each under its own steady load. The targets are named: the deploy timings' rounds
    of rollbacks left earlier releases marked as rolled back from, which the default target
    skips."""
    source.commit_trivial("zero downtime deploy")
    note("fab deploy (code-only change) under load")
    switches = {"dropstack_deploy": fab_switch(source, url, "deploy")}
    note(f"fab rollback --release {before} (into the warm slot) under load")
    switches["dropstack_rollback"] = fab_switch(source, url, "rollback", "--release", before)
    note(f"fab rollback --release {older} (its slot started afresh) under load")
    switches["dropstack_rollback_started"] = fab_switch(source, url, "rollback", "--release", older)
    for key, figures in switches.items():
        note(f"  {key}: {figures['total']}")
    return switches


def rollback_releases(host: WebHost) -> tuple[str, str]:
    """The current release and a good one older than it (the newest such)."""
    layout = HostSettings().paths
    state = parse_state(host.run(probe_command(layout)).stdout, layout)
    older = [name for name in good_releases(state) if state.current and name < state.current]
    if not state.current or not older:
        raise BenchFailed(f"{host.name}: no current release, or none older to roll back to")
    return state.current, older[-1]


def run(source: Source) -> dict:
    inv = inventory()
    web = inv.web_hosts[0]
    url = f"http://{web.public_ip}"
    result: dict = {
        "load": {
            "url": url,
            "paths": ["/healthz", "/api/tasks"],
            "clients": {
                k: f"wrk -t{CONNECTIONS_PER_CLIENT} -c{CONNECTIONS_PER_CLIENT}"
                for k in CLIENT_KINDS
            },
            "pause_ms_per_connection": PAUSE_MS,
            "timeline_bucket_seconds": timeline.BUCKET_SECONDS,
        }
    }
    host = WebHost(inv, web.name)
    try:
        result.update(dropstack_switches(source, url, *rollback_releases(host)))
    except BaseException:
        host.close()
        raise
    try:
        tarball = local_wheelhouse(source, host)
        host.c.put(str(tarball), WHEELS_ON_HOST + ".tar")
        host.run(unpack_wheels_command(WHEELS_ON_HOST + ".tar", WHEELS_ON_HOST))
        for key, method in (("gunicorn_reload", gunicorn_reload), ("naive_restart", naive_restart)):
            try:
                result[key] = method(host, url)
                note(f"  {result[key]['total']}")
            except Exception as exc:  # the other method still runs; the section says why
                result[key] = {"error": f"{type(exc).__name__}: {exc}"}
                note(f"  {key} FAILED: {result[key]['error']}")
    finally:
        host.run(f"rm -rf {WHEELS_ON_HOST} {WHEELS_ON_HOST}.tar", warn=True)
        host.close()
        note("restoring the host with a normal fab deploy")
        fab("deploy", source=source)
    return result
