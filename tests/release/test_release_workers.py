"""Workers under load, counted, on the host: jobs enqueued through the API at a steady rate
while the site is under load, through a deploy, a worker killed mid-job and a rollback; then
every job is counted in the database.

The sample app's archive job (app/jobs.py) runs in one transaction keyed by the task and counts
its runs, so the database tells a lost job (no archive row) from one applied twice (``runs``
above 1). "Mid-job" is made certain, not hoped for: the test holds a row lock on one task, so
the worker running that task's job waits inside its transaction; the work horse running it is
then SIGKILLed (as the kernel's OOM killer would), RQ retries the job, and the lock is let go.

Bounded: a fixed number of jobs at a fixed rate (below Nginx's write rate limit, so a 503 from
the limiter would count as a failed request), wrk for a bounded time, every wait with a bound.
"""

from __future__ import annotations

import http.client
import json
import shlex
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from fabric import Config

from deploy import host_model
from tests.release.harness import REPO, fab, on_host, serving_release, steady_load
from tests.release.test_release_cycle import assert_no_failures

pytestmark = pytest.mark.host

JOBS = 240  # enqueued through the API, one per task
RATE = 8  # per second: under the site's write limit (10r/s, burst 20) from this one client
DRAIN_SECONDS = 90  # bound on the wait for the queue to empty after the last change

# Run on the host as the app user, in the live release, with the app's environment file.
SEED = """
import json, os, sys, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as conn:
    rows = conn.execute("INSERT INTO tasks (title) SELECT 'worker load ' || n "
                        "FROM generate_series(1, %s) n RETURNING id", (int(sys.argv[1]),))
    print(json.dumps(sorted(r[0] for r in rows)))
"""
# Holds a row lock on one task until stdin closes: the archive job for it (its foreign key
# check wants a KEY SHARE lock on that row) waits, mid-transaction, inside the worker.
LOCK = """
import os, sys, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as conn:
    conn.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (int(sys.argv[1]),))
    print("locked", flush=True)
    sys.stdin.readline()
    conn.rollback()
print("released", flush=True)
"""
# The worker running a job once it started: its name and main process id.
WORKER_OF = """
import json, os, sys, time
from redis import Redis
from rq.job import Job
from rq.worker import Worker
redis = Redis.from_url(os.environ["REDIS_URL"])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    job = Job.fetch(sys.argv[1], connection=redis)
    if job.get_status() == "started" and job.worker_name:
        worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + job.worker_name,
                                    connection=redis)
        if worker:
            print(json.dumps({"worker": job.worker_name, "pid": worker.pid}))
            break
    time.sleep(0.1)
"""
# The jobs' outcome: how often each task's job ran, and what RQ still holds.
REPORT = """
import json, os, sys, psycopg
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from app.jobs import QUEUE_NAME
ids = json.loads(sys.stdin.read())
queue = Queue(QUEUE_NAME, connection=Redis.from_url(os.environ["REDIS_URL"]))
with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as conn:
    rows = conn.execute("SELECT task_id, runs FROM task_archives WHERE task_id = ANY(%s)",
                        (ids,)).fetchall()
print(json.dumps({"runs": {str(t): r for t, r in rows}, "queued": queue.count,
                  "started": StartedJobRegistry(queue=queue).count,
                  "intermediate": queue.intermediate_queue.get_job_ids(),
                  "failed": FailedJobRegistry(queue=queue).get_job_ids()}))
"""


@pytest.fixture(scope="module")
def settings(inventory):
    """The host model as `fab` builds it (fabric.yaml + FABRIC_* variables)."""
    config = Config(project_location=str(REPO))
    config.load_project()
    config.load_shell_env()
    model = host_model.for_host(config, inventory, inventory.web_hosts[0])
    if not model.app.has_workers:
        pytest.skip(
            "workers are off (app.worker_count 0); bin/test runs this with "
            "FABRIC_DROPSTACK_APP_WORKER_COUNT=2 exported before `fab provision`"
        )
    return model


@dataclass(frozen=True)
class Site:
    """The first web host as a client sees it: HTTPS with the domain as Host and SNI when it
    serves TLS. The certificate is not verified, as wrk does not: tests/host checks it, and
    restarts the local CA there (a new root) before these tests run."""

    address: str
    domain: str | None

    def post(self, path: str) -> tuple[int, bytes]:
        if self.domain:
            conn = _HttpsTo(self.address, self.domain)
        else:
            conn = http.client.HTTPConnection(self.address, 80, timeout=10)
        try:
            conn.request("POST", path, headers={"Host": self.domain or self.address})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


class _HttpsTo(http.client.HTTPSConnection):
    """HTTPS to ``address`` with ``name`` as SNI (Nginx's site answers its names only)."""

    def __init__(self, address: str, name: str):
        context = ssl._create_unverified_context()  # noqa: S323 (see Site)
        super().__init__(name, 443, timeout=10, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def as_app(settings, script: str, *args: str) -> str:
    """The command running ``script`` with the live release's Python as the app user, with the
    app's environment; bounded by RuntimeMaxSec."""
    layout = settings.paths
    return shlex.join([
        "sudo", "-n", "systemd-run", "--quiet", "--pipe", "--wait", "--collect",
        "-p", f"User={settings.app_user}", "-p", f"EnvironmentFile={settings.env_file}",
        "-p", f"WorkingDirectory={layout.current}", "-p", "RuntimeMaxSec=120",
        f"{layout.current}/.venv/bin/python", "-c", script, *args,
    ])  # fmt: skip


def run_as_app(c, settings, script: str, *args: str) -> str:
    result = c.run(as_app(settings, script, *args), hide=True, warn=True, in_stream=False)
    assert result.ok, result.stderr[-500:]
    return result.stdout


def with_stdin(c, command: str, text: str) -> str:
    """Run ``command`` on the host with ``text`` on its stdin (the task ids: too many for
    an argument list to be comfortable); its stdout."""
    channel_in, channel_out, channel_err = c.client.exec_command(command, timeout=120)
    channel_in.write(text)
    channel_in.channel.shutdown_write()
    out = channel_out.read().decode()
    assert channel_out.channel.recv_exit_status() == 0, channel_err.read().decode()[-500:]
    return out


class Enqueuer(threading.Thread):
    """POST /api/tasks/<id>/archive for each task, RATE per second, until the list ends or
    ``stop`` is set; every answer's status is counted."""

    def __init__(self, site: Site, tasks: list[int]):
        super().__init__(daemon=True)
        self.site, self.tasks = site, tasks
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.enqueued: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        for n, task in enumerate(self.tasks):
            if self.stop.is_set():
                return
            self.stop.wait(max(0.0, started + n / RATE - time.monotonic()))
            try:
                status, _ = self.site.post(f"/api/tasks/{task}/archive")
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            self.statuses[status] += 1
            if status == 202:
                self.enqueued.append(task)


def test_jobs_through_deploy_kill_and_rollback_under_load(
    source, hosts, inventory, settings, web, tls_domain
):
    c = hosts[inventory.web_hosts[0].name]
    site = Site(web, tls_domain)
    tasks = json.loads(run_as_app(c, settings, SEED, str(JOBS + 1)).strip().splitlines()[-1])
    locked_task, tasks = tasks[0], tasks[1:]
    enqueuer = Enqueuer(site, tasks)
    before = serving_release(web)
    started = int(on_host(c, "date +%s"))
    killed = {}
    with steady_load(web, seconds=120, domain=tls_domain) as load:
        enqueuer.start()
        deployed = fab(source, "deploy")
        assert deployed.code == 0
        # A worker killed mid-job: the job waits on the locked row inside its transaction.
        holder_in, holder_out, _ = c.client.exec_command(as_app(settings, LOCK, str(locked_task)))
        assert holder_out.readline().strip() == "locked"
        try:
            status, body = site.post(f"/api/tasks/{locked_task}/archive")
            assert status == 202, body
            job = json.loads(body)["job"]
            found = run_as_app(c, settings, WORKER_OF, job).strip().splitlines()
            assert found, f"no worker started {job} within 30 s"
            killed = json.loads(found[-1])
            horse = on_host(c, f"pgrep -P {killed['pid']}").split()
            assert len(horse) == 1, f"worker {killed} has no single work horse: {horse}"
            time.sleep(0.5)  # in the transaction, waiting for the row lock
            c.run(f"sudo -n kill -KILL {horse[0]}", hide=True)
            killed["horse"] = int(horse[0])
            time.sleep(1)  # RQ sees its horse die and puts the job back (Retry)
        finally:
            holder_in.channel.shutdown_write()
            assert holder_out.readline().strip() == "released"
        rolled_back = fab(source, "rollback", "--release", before)
        assert rolled_back.code == 0
        enqueuer.stop.set()
        enqueuer.join(timeout=60)
    assert_no_failures(load)
    assert serving_release(web) == before
    assert not enqueuer.errors and set(enqueuer.statuses) == {202}, (
        enqueuer.statuses,
        enqueuer.errors[:3],
    )

    expected = [*enqueuer.enqueued, locked_task]
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        report = json.loads(
            with_stdin(c, as_app(settings, REPORT), json.dumps(expected)).strip().splitlines()[-1]
        )
        done = len(report["runs"]) == len(expected) and not report["queued"]
        if (done and not report["started"]) or time.monotonic() > deadline:
            break
        time.sleep(2)
    runs = {int(t): n for t, n in report["runs"].items()}
    lost = sorted(set(expected) - set(runs))
    twice = {t: n for t, n in runs.items() if n > 1}
    print(
        f"jobs: {len(expected)} enqueued ({len(enqueuer.enqueued)} at {RATE}/s through a deploy "
        f"and a rollback, 1 killed mid-job: worker {killed.get('worker')}, horse "
        f"{killed.get('horse')}), {len(runs)} applied, {len(lost)} lost, {len(twice)} applied "
        f"twice; failed registry {report['failed']}, taken but not started (RQ's intermediate "
        f"list) {report['intermediate']}; load {json.dumps(load.results)}"
    )
    assert not lost, f"{len(lost)} jobs lost (no archive row): {lost[:10]}"
    assert not twice, f"jobs applied more than once (runs): {twice}"
    assert report["failed"] == [] and report["started"] == 0 and report["queued"] == 0
    assert report["intermediate"] == []

    # The operator's view: the workers in `fab status`, their output in `fab logs`.
    status = fab(source, "status")
    assert status.code == 0
    live_workers = f"workers on {serving_slot(c, settings)}: {settings.app.worker_count} of "
    assert live_workers in status.out, status.out
    logs = fab(source, "logs", "--process", "worker", "--lines", "300")
    assert logs.code == 0
    ours = {f"Job OK (archive-task-{t})" for t in expected}
    assert any(line in logs.out for line in ours), logs.out[-2000:]
    # The kill hit the job mid-way: RQ saw its work horse die, and ran it again.
    journal = on_host(c, f"sudo -n journalctl --since @{started} -o cat --no-pager")
    job = f"archive-task-{locked_task}"
    assert f"job {job} failed (Work-horse terminated unexpectedly" in journal
    assert f"Job OK ({job})" in journal


def serving_slot(c, settings) -> str:
    live = on_host(c, f"readlink {shlex.quote(settings.paths.live_socket)}").strip()
    return Path(live).stem
