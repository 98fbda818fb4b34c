"""Benchmark 3: requests per second through Nginx against Gunicorn on its own, on one host.

Both are measured from the same place, inside the web host's network namespace (``ip netns
exec ds-web-1 wrk``), so neither pays for a network hop the other does not: Nginx at the host's
public address, and a third instance of the app's own unit, ``dropstack@bench``, started with
the live release, the same unit settings (environment file, workers, sandbox) and its socket
moved to 127.0.0.1:8001 by a runtime drop-in. The same load through Nginx from this machine
is measured too. wrk runs flat out for a bounded time, Nginx and direct alternating for a few
rounds (medians reported), after a discarded warm-up. Each run also records the CPU time Nginx,
Gunicorn and wrk spent per request: the host has two cores that all three share, so that is
what the ratio comes down to.
"""

from __future__ import annotations

import json
import resource
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from shlex import quote as q

from bench import cpu
from bench.drive import BenchFailed, WebHost, inventory, note
from bench.load import closed_loop
from bench.stats import median, ratio
from bench.wrk import check_target
from deploy.host_model import HostLayout, HostSettings
from deploy.local.network import plan_stack
from deploy.release.state import parse_state, probe_command

DIRECT_INSTANCE = "bench"
DIRECT_PORT = 8001
PATHS = ("/healthz", "/api/tasks?limit=20")
TASK_ROWS = 20
SECONDS = 8
WARMUP_SECONDS = 2
ROUNDS = 5
THREADS, CONNECTIONS = 2, 16


def socket_dropin_dir(layout: HostLayout) -> str:
    """Runtime (/run) drop-ins vanish at reboot: the host's installed units are not touched."""
    return f"/run/systemd/system/{layout.app_name}@{DIRECT_INSTANCE}.socket.d"


def socket_dropin(port: int) -> str:
    """Replace the instance's unix socket with a loopback TCP one (an empty ListenStream= resets
    the template's list)."""
    return f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{int(port)}\n"


def direct_start_script(layout: HostLayout, live_slot: str, port: int) -> str:
    """As root: point the bench slot at the live slot's release and environment, drop in the TCP
    socket, start the instance (Type=notify: returns once Gunicorn's arbiter is up)."""
    slot, env = layout.slot(DIRECT_INSTANCE), layout.slot_env(DIRECT_INSTANCE)
    dropin = socket_dropin_dir(layout)
    return " && ".join([
        f"ln -sfn \"$(readlink {q(layout.slot(live_slot))})\" {q(slot)}",
        f"cp {q(layout.slot_env(live_slot))} {q(env)}",
        f"mkdir -p {q(dropin)}",
        f"printf %s {q(socket_dropin(port))} > {q(dropin + '/tcp.conf')}",
        "systemctl daemon-reload",
        f"systemctl start {q(layout.unit(DIRECT_INSTANCE))}",
    ])  # fmt: skip


def direct_stop_script(layout: HostLayout) -> str:
    """As root: undo everything ``direct_start_script`` did, each step whatever the others do."""
    unit = layout.unit(DIRECT_INSTANCE)
    socket = unit.removesuffix(".service") + ".socket"
    return "; ".join([
        f"systemctl stop {q(unit)} {q(socket)}",
        f"rm -rf {q(socket_dropin_dir(layout))}",
        "systemctl daemon-reload",
        f"systemctl reset-failed {q(unit)} {q(socket)} 2>/dev/null",
        f"rm -f {q(layout.slot(DIRECT_INSTANCE))} {q(layout.slot_env(DIRECT_INSTANCE))}",
        "true",
    ])  # fmt: skip


def wait_ready_command(port: int, seconds: int = 30) -> str:
    return (
        f"for i in $(seq {seconds * 2}); do curl -sf -o /dev/null http://127.0.0.1:{port}/readyz "
        "&& exit 0; sleep 0.5; done; exit 1"
    )


def workers_command(unit: str) -> str:
    """How many worker processes a Gunicorn unit's arbiter has."""
    return f'pgrep -c -P "$(systemctl show -p MainPID --value {q(unit)})" || true'


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


@dataclass
class Sampler:
    """CPU use around one wrk run: the host's Nginx and Gunicorn, wrk, the whole machine."""

    host: WebHost
    units: list[str]

    def sample(self) -> tuple[dict[str, float], tuple[int, int]]:
        probe = cpu.parse_probe(self.host.root(cpu.probe_command(self.units)).stdout)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        probe["wrk"] = children.ru_utime + children.ru_stime
        return probe, cpu.machine_ticks(Path("/proc/stat").read_text())


def measure(url: str, netns: str | None, sampler: Sampler, gunicorn_unit: str) -> dict:
    """One closed-loop run, with the CPU each part used per request."""
    before, machine_before = sampler.sample()
    figures = closed_loop(url, SECONDS, THREADS, CONNECTIONS, netns)
    after, machine_after = sampler.sample()
    used = cpu.per_request_ms(before, after, figures.requests)
    return {
        **figures.to_json(),
        "cpu_ms_per_request": {
            "nginx": used["nginx"], "gunicorn": used[gunicorn_unit], "wrk": used["wrk"],
        },
        "machine_busy": cpu.busy_share(machine_before, machine_after),
    }  # fmt: skip


def summarize(runs: list[dict]) -> dict:
    """Medians over the rounds of one side, and every run."""
    return {
        "requests_per_second": round(median([r["requests_per_second"] for r in runs]), 1),
        "latency_ms": {"p50": round(median([r["latency_ms"]["p50"] for r in runs]), 2),
                       "p99": round(median([r["latency_ms"]["p99"] for r in runs]), 2)},
        "failed": sum(r["failed"] for r in runs),
        "cpu_ms_per_request": {
            part: round(median([r["cpu_ms_per_request"][part] for r in runs]), 3)
            for part in runs[0]["cpu_ms_per_request"]
        },
        "machine_busy": round(median([r["machine_busy"] for r in runs]), 3),
        "runs": runs,
    }  # fmt: skip


def endpoint(path: str, urls: dict[str, tuple[str, str | None]], sampler: Sampler,
             units: dict[str, str]) -> dict:  # fmt: skip
    """Nginx and direct, alternating which goes first, ROUNDS times; Nginx from this machine
    once. Each side is warmed up once before its first run."""
    for key in ("nginx", "direct"):
        url, ns = urls[key]
        closed_loop(url + path, WARMUP_SECONDS, THREADS, CONNECTIONS, ns)
    runs: dict[str, list[dict]] = {"nginx": [], "direct": []}
    for n in range(ROUNDS):
        for key in ("nginx", "direct") if n % 2 == 0 else ("direct", "nginx"):
            url, ns = urls[key]
            runs[key].append(measure(url + path, ns, sampler, units[key]))
            last = runs[key][-1]
            note(f"GET {path} {key} ({n + 1}/{ROUNDS}): {last['requests_per_second']} req/s, "
                 f"p99 {last['latency_ms']['p99']} ms, failed {last['failed']}")  # fmt: skip
    url, ns = urls["nginx_outside"]
    outside = measure(url + path, ns, sampler, units["nginx"])
    note(f"GET {path} nginx_outside: {outside['requests_per_second']} req/s")
    result = {key: summarize(found) for key, found in runs.items()}
    result["nginx_outside"] = summarize([outside])
    result["ratio"] = ratio(
        result["nginx"]["requests_per_second"], result["direct"]["requests_per_second"]
    )
    return result


def run() -> dict:
    inv = inventory()
    web = inv.web_hosts[0]
    netns = plan_stack(len(inv.web_hosts)).host(web.name).netns
    nginx_url = f"http://{web.public_ip}"
    layout = HostSettings().paths
    rows = seed_tasks(nginx_url, TASK_ROWS)
    host = WebHost(inv, web.name)
    result: dict = {
        "wrk": f"-t{THREADS} -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} rounds alternating Nginx "
        f"and direct, after a {WARMUP_SECONDS}s warm-up of each",
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
        env = host.root(f"systemctl show -p Environment {q(layout.unit(state.live_slot))}")
        result["live_unit_environment"] = env.stdout.strip().removeprefix("Environment=")
        result["cpus_on_host"] = int(host.run("nproc").stdout.strip())
        result["gunicorn_workers"] = {
            unit: int(host.root(workers_command(layout.unit(unit))).stdout.strip() or 0)
            for unit in (state.live_slot, DIRECT_INSTANCE)
        }
        units = {
            "nginx": layout.unit(state.live_slot),
            "direct": layout.unit(DIRECT_INSTANCE),
            "nginx_outside": layout.unit(state.live_slot),
        }
        urls = {
            "nginx": (nginx_url, netns),
            "direct": (f"http://127.0.0.1:{DIRECT_PORT}", netns),
            "nginx_outside": (nginx_url, None),
        }
        sampler = Sampler(host, sorted(set(units.values())))
        for path in PATHS:
            result["endpoints"][path] = endpoint(path, urls, sampler, units)
    finally:
        host.root(direct_stop_script(layout), warn=True)
        host.close()
    return result
