"""Benchmark 3: requests per second through Nginx against Gunicorn on its own, on one host.

Both are measured from the same place, inside the web host's network namespace (``ip netns
exec ds-web-1 wrk``), so neither pays for a network hop the other does not: Nginx at the host's
public address, and a third instance of the app's own unit, ``dropstack@bench``, started with
the live release, the same unit settings (environment file, workers, sandbox) and its socket
moved to 127.0.0.1:8001 by a runtime drop-in. The same load through Nginx from this machine
is measured too. wrk runs flat out for a bounded time; a short run before each one is discarded.
"""

from __future__ import annotations

import json
import time
import urllib.request

from bench.drive import BenchFailed, WebHost, inventory, note
from bench.load import closed_loop
from bench.stats import ratio
from bench.wrk import check_target
from deploy.local.network import plan_stack
from deploy.release import commands as cmd
from deploy.release.layout import Layout
from deploy.release.state import parse_state, probe_command

DIRECT_INSTANCE = "bench"
DIRECT_PORT = 8001
PATHS = ("/healthz", "/api/tasks?limit=20")
TASK_ROWS = 20
SECONDS = 10
WARMUP_SECONDS = 2
THREADS, CONNECTIONS = 2, 16


def socket_dropin_dir(layout: Layout) -> str:
    """Runtime (/run) drop-ins vanish at reboot: the host's installed units are not touched."""
    return f"/run/systemd/system/{layout.app_name}@{DIRECT_INSTANCE}.socket.d"


def socket_dropin(port: int) -> str:
    """Replace the instance's unix socket with a loopback TCP one (an empty ListenStream= resets
    the template's list)."""
    return f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{int(port)}\n"


def direct_start_script(layout: Layout, live_slot: str, port: int) -> str:
    """As root: point the bench slot at the live slot's release and environment, drop in the TCP
    socket, start the instance (Type=notify: returns once Gunicorn's arbiter is up)."""
    slot, env = layout.slot(DIRECT_INSTANCE), layout.slot_env(DIRECT_INSTANCE)
    dropin = socket_dropin_dir(layout)
    return " && ".join([
        f"ln -sfn \"$(readlink {cmd.q(layout.slot(live_slot))})\" {cmd.q(slot)}",
        f"cp {cmd.q(layout.slot_env(live_slot))} {cmd.q(env)}",
        f"mkdir -p {cmd.q(dropin)}",
        f"printf %s {cmd.q(socket_dropin(port))} > {cmd.q(dropin + '/tcp.conf')}",
        "systemctl daemon-reload",
        f"systemctl start {cmd.q(layout.unit(DIRECT_INSTANCE))}",
    ])  # fmt: skip


def direct_stop_script(layout: Layout) -> str:
    """As root: undo everything ``direct_start_script`` did, each step whatever the others do."""
    unit = layout.unit(DIRECT_INSTANCE)
    socket = unit.removesuffix(".service") + ".socket"
    return "; ".join([
        f"systemctl stop {cmd.q(unit)} {cmd.q(socket)}",
        f"rm -rf {cmd.q(socket_dropin_dir(layout))}",
        "systemctl daemon-reload",
        f"systemctl reset-failed {cmd.q(unit)} {cmd.q(socket)} 2>/dev/null",
        f"rm -f {cmd.q(layout.slot(DIRECT_INSTANCE))} {cmd.q(layout.slot_env(DIRECT_INSTANCE))}",
        "true",
    ])  # fmt: skip


def wait_ready_command(port: int, seconds: int = 30) -> str:
    return (
        f"for i in $(seq {seconds * 2}); do curl -sf -o /dev/null http://127.0.0.1:{port}/readyz "
        "&& exit 0; sleep 0.5; done; exit 1"
    )


def workers_command(unit: str) -> str:
    """How many worker processes a Gunicorn unit's arbiter has."""
    return f'pgrep -c -P "$(systemctl show -p MainPID --value {cmd.q(unit)})" || true'


def _open(request: urllib.request.Request | str, timeout: float = 5):
    # Never through a proxy from the environment: the target is a local test host.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(request, timeout=timeout)


def seed_tasks(base_url: str, rows: int) -> int:
    """Enough tasks for the list endpoint to return ``rows`` of them; writes are rate limited
    (10/s, burst 20), so they are spaced out."""
    check_target(base_url)
    with _open(f"{base_url}/api/tasks?limit={rows}") as response:
        have = len(json.loads(response.read())["tasks"])
    for n in range(have, rows):
        body = json.dumps({"title": f"bench task {n + 1}"}).encode()
        request = urllib.request.Request(  # noqa: S310 (http, to a host check_target allowed)
            f"{base_url}/api/tasks", data=body, headers={"Content-Type": "application/json"}
        )
        with _open(request):
            time.sleep(0.12)
    return max(have, rows)


def measure(url: str, netns: str | None) -> dict:
    closed_loop(url, WARMUP_SECONDS, THREADS, CONNECTIONS, netns)
    figures = closed_loop(url, SECONDS, THREADS, CONNECTIONS, netns)
    return figures.to_json()


def run() -> dict:
    inv = inventory()
    web = inv.web_hosts[0]
    netns = plan_stack(len(inv.web_hosts)).host(web.name).netns
    nginx_url = f"http://{web.public_ip}"
    direct_url = f"http://127.0.0.1:{DIRECT_PORT}"
    layout = Layout()
    rows = seed_tasks(nginx_url, TASK_ROWS)
    host = WebHost(inv, web.name)
    result: dict = {
        "wrk": f"-t{THREADS} -c{CONNECTIONS} -d{SECONDS}s after a {WARMUP_SECONDS}s warm-up",
        "task_rows": rows,
        "vantage": f"inside {netns} (ip netns exec) for nginx and direct; this machine for "
        "nginx_outside",
        "endpoints": {},
    }
    try:
        state = parse_state(host.run(probe_command(layout)).stdout, layout)
        if not state.live_slot:
            raise BenchFailed(f"{web.name}: no live slot to copy for the direct Gunicorn")
        host.root(direct_start_script(layout, state.live_slot, DIRECT_PORT))
        if host.run(wait_ready_command(DIRECT_PORT), warn=True).failed:
            raise BenchFailed(
                f"{web.name}: dropstack@{DIRECT_INSTANCE} on :{DIRECT_PORT} not ready"
            )
        env = host.root(f"systemctl show -p Environment {cmd.q(layout.unit(state.live_slot))}")
        result["live_unit_environment"] = env.stdout.strip().removeprefix("Environment=")
        result["cpus_on_host"] = int(host.run("nproc").stdout.strip())
        result["gunicorn_workers"] = {
            unit: int(host.root(workers_command(layout.unit(unit))).stdout.strip() or 0)
            for unit in (state.live_slot, DIRECT_INSTANCE)
        }
        for path in PATHS:
            figures = {}
            for key, url, ns in (
                ("nginx_outside", nginx_url, None),
                ("nginx", nginx_url, netns),
                ("direct", direct_url, netns),
            ):
                figures[key] = measure(url + path, ns)
                run = figures[key]
                note(f"GET {path} {key}: {run['requests_per_second']} req/s, "
                     f"p99 {run['latency_ms']['p99']} ms, failed {run['failed']}")  # fmt: skip
            figures["ratio"] = ratio(
                figures["nginx"]["requests_per_second"], figures["direct"]["requests_per_second"]
            )
            result["endpoints"][path] = figures
    finally:
        host.root(direct_stop_script(layout), warn=True)
        host.close()
    return result
