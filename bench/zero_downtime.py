"""Benchmark 2: failed requests while a release switches, dropstack's way and the naive way.

Under the same steady wrk load through Nginx (two clients, keep-alive and a connection per
request, each pausing between requests): `fab deploy` of a code-only change, then `fab rollback`,
then the method of the tutorial this project grew from, on the same host: stop Gunicorn,
reinstall the app's packages, start it again. Afterwards a normal `fab deploy` restores the host.
"""

from __future__ import annotations

import time
from pathlib import Path
from shlex import quote as q

from bench import fab_output
from bench.drive import BenchFailed, Source, WebHost, fab, inventory, note
from bench.load import CLIENT_KINDS, CONNECTIONS_PER_CLIENT, PAUSE_MS, SwitchLoad, steady_load
from bench.wrk import combined
from deploy.host_model import HostLayout, HostSettings
from deploy.release import commands as cmd
from deploy.release.build import WHEELHOUSE_TAR, parse_target, target_probe_command, wheelhouse_key
from deploy.release.settings import ReleaseSettings
from deploy.release.state import parse_state, probe_command
from deploy.shell import join

# In the deploy user's home: SFTP and commands start there, and nothing else uses the name.
WHEELS_ON_HOST = "dropstack-bench-wheels"


def naive_restart_command(layout: HostLayout, slot: str, venv: str, wheels: str) -> str:
    """Stop the serving Gunicorn, reinstall every package into its venv from the wheels, start
    it again: what a deploy looks like without a second slot. Runs as the deploy user (who owns
    the venvs); the unit changes go through sudo like the release commands."""
    pip = (
        f"{q(venv)}/bin/pip install --quiet --force-reinstall --no-index --no-cache-dir "
        f"--disable-pip-version-check --find-links {q(wheels)} {q(wheels)}/*.whl"
    )
    stop, start = (join(c(layout, slot)) for c in (cmd.stop_slot_command, cmd.start_slot_command))
    return " && ".join([stop, pip, start])


def unpack_wheels_command(tarball: str, wheels: str) -> str:
    w = q(wheels)
    return f"rm -rf {w} && mkdir -p {w} && tar -xf {q(tarball)} -C {w}"


def switch_result(seconds: float, load: SwitchLoad, steps: tuple[dict, ...] = ()) -> dict:
    clients = {kind: fig.to_json() for kind, fig in load.clients.items()}
    return {
        "seconds": round(seconds, 1),
        "switch_seconds": fab_output.switch_seconds(steps) or None,
        "total": combined(load.clients),
        "clients": clients,
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


def naive_restart(source: Source, host: WebHost, url: str) -> dict:
    layout = HostSettings().paths
    state = parse_state(host.run(probe_command(layout)).stdout, layout)
    slot = state.live_slot
    if not slot:
        raise BenchFailed(f"{host.name}: no live slot to restart")
    venv = host.run(f"readlink -f {q(layout.slot(slot) + '/.venv')}").stdout.strip()
    tarball = local_wheelhouse(source, host)
    host.c.put(str(tarball), WHEELS_ON_HOST + ".tar")
    host.run(unpack_wheels_command(WHEELS_ON_HOST + ".tar", WHEELS_ON_HOST))
    note(f"naive restart of dropstack@{slot} (reinstalling into {venv}) under load")
    try:
        with steady_load(url) as load:
            started = time.monotonic()
            host.run(naive_restart_command(layout, slot, venv, WHEELS_ON_HOST), timeout=300)
            took = time.monotonic() - started
    finally:
        host.run(f"rm -rf {WHEELS_ON_HOST} {WHEELS_ON_HOST}.tar", warn=True)
    return {**switch_result(took, load), "slot": slot}


def run(source: Source) -> dict:
    inv = inventory()
    web = inv.web_hosts[0]
    url = f"http://{web.public_ip}"
    result: dict = {
        "load": {
            "url": url,
            "paths": ["/healthz", "/api/tasks"],
            "clients": {k: f"wrk -t1 -c{CONNECTIONS_PER_CLIENT}" for k in CLIENT_KINDS},
            "pause_ms_per_connection": PAUSE_MS,
        }
    }
    source.commit_trivial("zero downtime deploy")
    note("fab deploy (code-only change) under load")
    with steady_load(url) as load:
        run_ = fab("deploy", source=source)
    result["dropstack_deploy"] = switch_result(run_.seconds, load, run_.steps)
    note(f"  {result['dropstack_deploy']['total']}")
    note("fab rollback under load")
    with steady_load(url) as load:
        run_ = fab("rollback", source=source)
    result["dropstack_rollback"] = switch_result(run_.seconds, load, run_.steps)
    note(f"  {result['dropstack_rollback']['total']}")
    host = WebHost(inv, web.name)
    try:
        result["naive_restart"] = naive_restart(source, host, url)
        note(f"  {result['naive_restart']['total']}")
    finally:
        host.close()
        note("restoring the host with a normal fab deploy")
        fab("deploy", source=source)
    return result
