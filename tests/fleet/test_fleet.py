"""The fleet as production runs it: web hosts behind the load balancer (HAProxy with
DigitalOcean's health check), rolling deploys and rollbacks under load, a host whose app stops,
a host that loses power, reboots of a web host and of the database.

Measured windows are printed (pytest -s shows them) and asserted against DigitalOcean's
documented worst case: a droplet is taken out after ``unhealthy_threshold`` failed checks, one
every ``check_interval_seconds``, each waiting up to ``response_timeout_seconds``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from deploy.inventory import local_state_dir
from infra.load_balancer_policy import HEALTH_CHECK
from tests.fleet.conftest import Entry
from tests.release.harness import fab, steady_load
from tests.release.test_release_cycle import assert_no_failures

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
# The longest a dead droplet keeps getting requests on DigitalOcean: its last good check, then
# unhealthy_threshold failed ones.
TAKEN_OUT_WITHIN = HEALTH_CHECK.check_interval_seconds * (HEALTH_CHECK.unhealthy_threshold + 1) + (
    HEALTH_CHECK.response_timeout_seconds
)


def local(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([FAB, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    print(done.stdout + done.stderr)
    return done


def status(host: str) -> dict:
    done = subprocess.run([FAB, "status", "--json", "--hosts", host], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["hosts"][0]


def up_again() -> subprocess.CompletedProcess:
    """`fab local.up` with the running stack's own shape: it boots stopped hosts again."""
    record = json.loads((local_state_dir() / "stack.json").read_text())
    shape = ["--web-count", str(record["web_count"]), "--db-pool", str(record.get("db_pool", 0))]
    shape += ["--load-balancer"] if record.get("load_balancer") else []
    shape += ["--domain", record["domain"]] if record.get("domain") else []
    return local("local.up", *shape)


def served_by(conn, log: str) -> int:
    return int(conn.run(f"sudo -n wc -l < {log}", hide=True).stdout.strip() or 0)


def test_the_load_balancer_sends_requests_to_every_web_host(inventory, lb, conn):
    """Every host gets its share once the health checks have taken it in (each host's own
    checks count, so right after a first deploy they come in one after the other)."""
    log = "/var/log/nginx/dropstack.access.log"
    before = {h.name: served_by(conn(h.name), log) for h in inventory.web_hosts}
    wait = HEALTH_CHECK.check_interval_seconds * (HEALTH_CHECK.healthy_threshold + 2)
    deadline = time.monotonic() + wait
    with lb.probe(interval=0.05) as probe:
        while True:
            time.sleep(3)
            after = {h.name: served_by(conn(h.name), log) for h in inventory.web_hosts}
            if all(after[n] > before[n] + 5 for n in before) or time.monotonic() > deadline:
                break
    assert probe.failed == 0
    assert all(after[n] > before[n] + 5 for n in before), (before, after)


def test_rolling_deploy_and_rollback_through_the_load_balancer_drop_nothing(source, lb):
    """In batches, as a fleet is deployed: the first host alone (migrations, canary), then two
    at a time, so for a moment two of three hosts switch slots under the load balancer."""
    wsgi = (source.path / "app" / "wsgi.py").read_text()
    source.commit("fleet: a code-only change", {"app/wsgi.py": wsgi + "# fleet\n"})
    with steady_load(lb.address, seconds=120, domain=lb.domain) as load:
        deployed = fab(source, "deploy", "--batch", "2")
    assert deployed.code == 0, deployed.out
    assert_no_failures(load)
    with steady_load(lb.address, seconds=90, domain=lb.domain) as load:
        rolled = fab(source, "rollback", "--batch", "2")
    assert rolled.code == 0, rolled.out
    assert_no_failures(load)


def test_a_host_whose_app_stops_is_taken_out_by_the_health_check(inventory, lb, conn):
    """The app stays down: its service and its socket, or systemd's socket activation would
    start it again on the next request (the health check's own included)."""
    name = inventory.web_hosts[1].name
    live = status(name)["live_slot"]
    c = conn(name)
    units = f"dropstack@{live}.socket dropstack@{live}.service"
    try:
        with lb.probe() as probe:
            time.sleep(2)
            stopping = time.monotonic()
            c.run(f"sudo -n systemctl stop {units}", hide=True)
            # Until the checks take it out, its share of requests gets Nginx's 503. Wait for
            # the first of those before waiting for 5 s without one: right after the stop the
            # last 5 s were all good (the requests before it), and `systemctl stop` over SSH
            # returns in a few milliseconds, often before the probe has met the stopped host.
            deadline = stopping + TAKEN_OUT_WITHIN + 10
            while time.monotonic() < deadline and not (
                probe.failed_since(stopping) and probe.ok_since(5)
            ):
                time.sleep(0.5)
            time.sleep(3)
    finally:
        c.run(f"sudo -n systemctl start {units}", hide=True)
    window = probe.error_window()
    after = probe.ok_after_last_failure()
    print(f"app stopped on {name}: {probe.failed} of {len(probe.results)} requests failed, "
          f"error window {window} s (DigitalOcean's worst case {TAKEN_OUT_WITHIN} s), "
          f"{after} good requests after the last failure")  # fmt: skip
    assert probe.failed > 0, "no request failed: the app was never down"
    assert after >= 5, "the load balancer still sends requests to the host"
    assert window <= TAKEN_OUT_WITHIN, window


def test_a_host_that_loses_power_costs_no_request_and_comes_back(inventory, lb, conn):
    name = inventory.web_hosts[2].name
    before = status(name)["current"]
    with lb.probe() as probe:
        time.sleep(2)
        assert local("local.poweroff", "--host", name).returncode == 0
        time.sleep(TAKEN_OUT_WITHIN)
    # A host that is gone refuses nothing: HAProxy's connect fails and it tries another host.
    print(f"{name} powered off: {probe.failed} of {len(probe.results)} requests failed, "
          f"error window {probe.error_window()} s")  # fmt: skip
    assert probe.error_window() <= TAKEN_OUT_WITHIN
    assert probe.ok_since(10)
    assert up_again().returncode == 0
    after = status(name)
    assert (after["current"], after["nginx_active"], after["readyz"]["ok"]) == (before, True, True)


def test_a_web_host_reboots_like_a_droplet(inventory, conn):
    name = inventory.web_hosts[1].name
    before = status(name)
    assert local("local.reboot", "--host", name).returncode == 0
    after = status(name)
    assert after["current"] == before["current"] and after["live_slot"] == before["live_slot"]
    assert after["readyz"]["ok"] and after["nginx_active"] and after["lock"] is None
    c = conn(name)
    for unit in ("nginx", "ufw", "fail2ban", "ssh"):
        state = c.run(f"systemctl is-active {unit}", hide=True, warn=True).stdout.strip()
        assert state == "active", f"{unit} is {state} after the reboot"


def test_the_database_keeps_every_row_through_a_reboot_and_a_power_loss(inventory, lb):
    titles = [f"fleet-row-{time.time_ns()}-{n}" for n in range(20)]
    for title in titles:
        done = subprocess.run(
            [*lb.curl(), "-s", "-f", "-m", "10", "-X", "POST", "-H",
             "Content-Type: application/json", "-d", json.dumps({"title": title}),
             lb.url("/api/tasks")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert local("local.reboot", "--host", "db").returncode == 0
    assert present(lb, titles) == len(titles)
    assert local("local.poweroff", "--host", "db").returncode == 0
    assert up_again().returncode == 0
    assert present(lb, titles) == len(titles), "rows written before the power loss are gone"


def present(lb: Entry, titles: list[str], wait: float = 60) -> int:
    """How many of the titles the API lists, once it answers again (pools reconnect)."""
    deadline = time.monotonic() + wait
    while True:
        done = subprocess.run([*lb.curl(), "-s", "-m", "10", lb.url("/api/tasks?limit=1000")],
                              capture_output=True, text=True)  # fmt: skip
        try:
            listed = {t["title"] for t in json.loads(done.stdout)["tasks"]}
            return sum(1 for t in titles if t in listed)
        except (ValueError, KeyError):
            if time.monotonic() > deadline:
                raise AssertionError(f"the API did not answer: {done.stdout[:300]}") from None
            time.sleep(2)
