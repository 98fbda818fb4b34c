"""The whole release cycle on real hosts, in order: deploy, redeploy under load, broken releases,
concurrent and interrupted deploys, rollback under load, pruning, and the read-only tasks.

The tests share one clone and the hosts' state and run in file order; each leaves the hosts
serving a good release. Load runs through Nginx with wrk and must see zero failed requests.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time

import pytest

from tests.release.harness import (
    REPO,
    assert_no_failures,
    fab,
    fab_background,
    fab_command,
    finish,
    on_host,
    read_until,
    serving_release,
    steady_load,
)

pytestmark = pytest.mark.host

RELEASE = re.compile(r"release (\d{14}-[0-9a-f]{7,}(?:-dirty)?):")
STATE = {}  # what earlier tests deployed, for later ones


def released(out: str) -> str:
    """The release a deploy shipped: the last name it printed (a rename comes after)."""
    names = RELEASE.findall(out)
    assert names, out
    return names[-1]


def host_releases(c) -> list[str]:
    return sorted(on_host(c, "ls /srv/dropstack/releases").split())


def audit_tail(c, n: int = 1) -> list[dict]:
    lines = on_host(c, f"tail -n {n} /srv/dropstack/audit.log").splitlines()
    return [json.loads(line) for line in lines]


def releases_answering(load) -> set[str]:
    return {name for r in load.results.values() for name in r["releases"]}


def requests_seen_by(c, slot: str, since: int) -> list[str]:
    """Paths the slot's Gunicorn answered since ``since`` (its JSON access log lines)."""
    journal = on_host(
        c, f"sudo -n journalctl -u dropstack@{slot} --since @{since} -o cat --no-pager"
    )
    paths = []
    for line in journal.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "gunicorn.access":
            paths.append(entry["path"])
    return paths


def upstream(c) -> str:
    """The socket Nginx connects to now: where the live.sock link points."""
    return on_host(c, "readlink /srv/dropstack/live.sock").strip()


def nginx_workers(c) -> list[str]:
    """Nginx's worker PIDs: a reload replaces them all."""
    return sorted(on_host(c, 'pgrep -P "$(cat /run/nginx.pid)"').split())


def enabled_slots(c) -> set[str]:
    return {
        slot
        for slot in ("blue", "green")
        if on_host(c, f"systemctl is-enabled dropstack@{slot}.service").strip() == "enabled"
    }


def host_clock(c) -> int:
    return int(on_host(c, "date +%s").strip())


def test_deploy_serves_the_new_release(source, hosts, web):
    run = fab(source, "deploy")
    assert run.code == 0
    name = released(run.out)
    assert serving_release(web) == name
    for c in hosts.values():
        assert on_host(c, "readlink /srv/dropstack/current").strip().endswith(name)
        assert audit_tail(c)[0]["result"] == "ok"
        assert not on_host(c, "ls -d /srv/dropstack/deploy.lock 2>/dev/null").strip()
    STATE["good"] = [name]


def test_code_change_redeploys_under_load_reusing_the_venv(source, hosts, web, tls_domain):
    revision = source.commit(
        "a code-only change", {"app/static/robots.txt": "User-agent: *\nDisallow: /api/\n"}
    )
    c = next(iter(hosts.values()))
    workers = nginx_workers(c)
    with steady_load(web, seconds=90, domain=tls_domain) as load:
        run = fab(source, "deploy")
    assert run.code == 0
    name = released(run.out)
    assert name.endswith(revision[:7])
    # The switch replaced the link only: Nginx was not reloaded (same workers), and the slot
    # the link names is the one that starts at boot.
    assert nginx_workers(c) == workers
    # Nothing to migrate: the migration unit did not run. The old slot stays warm (off
    # live.sock, not enabled at boot) and the host itself drains and stops it later.
    assert re.search(r"database migrations +ok", run.out)
    assert "nothing to migrate" in run.out
    live, retired = ("blue", "green") if upstream(c).endswith("/blue.sock") else ("green", "blue")
    assert enabled_slots(c) == {live}
    assert f"slot {retired} stays warm for" in run.out
    assert on_host(c, f"systemctl is-active dropstack-retire-{retired}.timer").strip() == "active"
    assert re.search(r"python environment \w+ +ok", run.out)  # same dependency set: reused
    assert_no_failures(load)
    assert releases_answering(load) >= {STATE["good"][-1], name}
    assert serving_release(web) == name
    STATE["good"].append(name)
    STATE["redeploy_seconds"] = run.seconds
    STATE["deploy_load"] = load.results


MIGRATION_THAT_FAILS = """\
\"\"\"A migration that fails half-way: the transaction rolls back.\"\"\"

from alembic import op

revision = "0099"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE release_test_marker (id integer)")
    op.execute("SELECT 1 / 0")


def downgrade() -> None:
    pass
"""


def import_error(source) -> dict[str, str]:
    return {"app/wsgi.py": "import dropstack_no_such_module  # noqa\n" + source.read("app/wsgi.py")}


def failing_readiness(source) -> dict[str, str]:
    text = source.read("app/health.py")
    gate = "    schema = schema_status(database_of(current_app).engine)\n"
    assert gate in text
    broken = "    return probe_response(503, status='unavailable', reason='broken on purpose')\n"
    return {"app/health.py": text.replace(gate, broken + gate)}


def failing_migration(source) -> dict[str, str]:
    versions = (source.path / "app/migrations/versions").glob("*.py")
    found = [re.search(r'^revision\S* = "(\w+)"', f.read_text(), re.M) for f in versions]
    head = max(m.group(1) for m in found if m)
    return {"app/migrations/versions/0099_fails.py": MIGRATION_THAT_FAILS.replace("{head}", head)}


BROKEN = {
    # Gunicorn's arbiter reports ready before its workers import the app, so an import error
    # shows as the slot dying during the gate (or failing to start, if it is quick enough).
    "import error": (import_error, ("start slot", "health gate /readyz")),
    "failing readiness": (failing_readiness, ("health gate /readyz",)),
    "failing migration": (failing_migration, ("database migrations",)),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_release_never_gets_a_request(source, hosts, web, tls_domain, case):
    breaks, failing_step = BROKEN[case]
    good = source.git("rev-parse", "HEAD")
    c = next(iter(hosts.values()))
    since = host_clock(c)
    live_before = upstream(c)
    try:
        source.commit(f"broken: {case}", breaks(source))
        with steady_load(web, seconds=90, domain=tls_domain) as load:
            run = fab(source, "deploy")
    finally:
        source.reset(good)
    assert run.code == 1
    assert any(f"{step}" in run.out for step in failing_step) and "FAILED" in run.out
    assert "  | " in run.out  # the journal lines are shown
    name = released(run.out)
    assert_no_failures(load)
    assert releases_answering(load) == {STATE["good"][-1]}
    assert serving_release(web) == STATE["good"][-1]
    # Nginx still routes to the old slot; the new one is stopped and saw only the gate's probes.
    assert upstream(c) == live_before
    idle = "green" if live_before.endswith("blue.sock") else "blue"
    assert on_host(c, f"systemctl is-active dropstack@{idle}").strip() != "active"
    assert set(requests_seen_by(c, idle, since)) <= {"/readyz"}
    failed_mark = f"/srv/dropstack/releases/{name}/.dropstack-failed"
    assert on_host(c, f"cat {failed_mark}")
    last = audit_tail(c)[0]
    assert (last["release"], last["result"]) == (name, "failed")
    assert not on_host(c, "ls -d /srv/dropstack/deploy.lock 2>/dev/null").strip()
    STATE.setdefault("failed", []).append(name)


def test_rollback_to_a_failed_release_is_refused(source, hosts, web):
    run = fab(source, "rollback", "--release", STATE["failed"][-1])
    assert run.code == 1 and "is marked failed" in run.out
    assert serving_release(web) == STATE["good"][-1]


def test_concurrent_deploy_fails_at_once_naming_the_holder(source, hosts, web):
    first = fab_background(source, "deploy")
    read_until(first, "upload release")
    # Held where it is, lock and all: a whole code-only deploy takes about 2 s now, less
    # than a second `fab deploy` needs to build its release and reach the lock.
    first.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        second = fab(source, "deploy")
        assert second.code == 1 and time.monotonic() - started < 30
        assert "another deploy holds the lock: deploy of" in second.out
        assert f"(pid {first.pid}," in second.out
        assert "fab unlock --hosts" in second.out
        waiting = fab_background(source, "deploy", "--wait", "180")
        read_until(waiting, "waiting up to 180s for the deploy lock")
    finally:
        first.send_signal(signal.SIGCONT)
    one = finish(first)
    assert one.code == 0
    two = finish(waiting, timeout=240)
    assert two.code == 0 and "waiting up to 180s for the deploy lock" in two.out  # read above
    STATE["good"] += [released(one.out), released(two.out)]
    assert serving_release(web) == STATE["good"][-1]


def test_a_release_name_a_host_already_has_moves_on_a_second(source, hosts, web):
    """Two deploys of one commit begun in the same second: the second, once it has the lock,
    finds the first's release under its own name. Made certain here: the host gets empty
    releases named for this commit over the next seconds, which the deploy must step past."""
    c = next(iter(hosts.values()))
    sha = source.git("rev-parse", "--short=7", "HEAD").strip()
    now = host_clock(c)
    taken = [time.strftime("%Y%m%d%H%M%S", time.gmtime(now + i)) + f"-{sha}" for i in range(-1, 20)]
    paths = " ".join(f"/srv/dropstack/releases/{n}" for n in taken)
    on_host(c, f"mkdir {paths}")
    try:
        run = fab(source, "deploy")
        assert run.code == 0
        name = released(run.out)
        assert f"release {name}: renamed from " in run.out
        assert name not in taken and name > taken[-1]
        assert serving_release(web) == name
        STATE["good"].append(name)
    finally:
        on_host(c, f"rm -rf {paths}")


def test_interrupted_deploy_cleans_up_and_the_old_release_keeps_serving(source, hosts, web):
    c = next(iter(hosts.values()))
    proc = fab_background(source, "deploy")
    read_until(proc, "start slot")  # the new slot is being started: the worst moment
    proc.send_signal(signal.SIGTERM)
    run = finish(proc)
    assert run.code == 130
    assert "interrupted: cleaning up" in run.out
    assert serving_release(web) == STATE["good"][-1]
    assert not on_host(c, "ls -d /srv/dropstack/deploy.lock 2>/dev/null").strip()
    assert audit_tail(c)[0]["result"] == "interrupted"
    live = upstream(c)
    idle = "green" if live.endswith("blue.sock") else "blue"
    assert on_host(c, f"systemctl is-active dropstack@{idle}").strip() != "active"
    again = fab(source, "deploy")
    assert again.code == 0
    STATE["good"].append(released(again.out))
    # The interrupted release never took traffic, so it is no rollback target.
    refused = fab(source, "rollback", "--release", released(run.out), "--dry-run")
    assert refused.code == 1 and "never went live" in refused.out


def test_interrupt_after_the_switch_finishes_it(source, hosts, web):
    """Once live.sock names the new slot it serves: an interrupt then completes the switch
    (current, boot, the old slot's stop) rather than switching back."""
    c = next(iter(hosts.values()))
    proc = fab_background(source, "deploy")
    read_until(proc, "route nginx to")  # printed once the link has moved
    proc.send_signal(signal.SIGTERM)
    run = finish(proc)
    assert run.code == 130
    assert "finishing the switch" in run.out
    name = released(run.out)
    assert serving_release(web) == name
    assert on_host(c, "readlink /srv/dropstack/current").strip().endswith(name)
    live, retired = ("blue", "green") if upstream(c).endswith("/blue.sock") else ("green", "blue")
    assert enabled_slots(c) == {live}
    # Retired as any switch does: kept warm, the host stops it when the window ends.
    assert on_host(c, f"systemctl is-active dropstack-retire-{retired}.timer").strip() == "active"
    assert not on_host(c, "ls -d /srv/dropstack/deploy.lock 2>/dev/null").strip()
    assert not on_host(c, f"ls /srv/dropstack/releases/{name}/.dropstack-failed 2>/dev/null")
    STATE["good"].append(name)


def test_killed_deploy_leaves_a_lock_the_next_deploy_takes_over(source, hosts, web):
    c = next(iter(hosts.values()))
    proc = fab_background(source, "deploy")
    read_until(proc, "upload release")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert on_host(c, "cat /srv/dropstack/deploy.lock/holder.json")  # left behind
    run = fab(source, "deploy")
    assert run.code == 0
    assert "taking over the lock of a deploy that is gone" in run.out
    assert f"pid {proc.pid}" in run.out
    STATE["good"].append(released(run.out))
    assert serving_release(web) == STATE["good"][-1]


def test_rollback_under_load_goes_to_the_previous_good_release(source, hosts, web, tls_domain):
    current = serving_release(web)
    assert current == STATE["good"][-1]
    with steady_load(web, seconds=60, domain=tls_domain) as load:
        run = fab(source, "rollback")
    assert run.code == 0
    previous = STATE["good"][-2]
    assert serving_release(web) == previous
    assert_no_failures(load)
    assert releases_answering(load) >= {current, previous}
    c = next(iter(hosts.values()))
    last = audit_tail(c)[0]
    assert (last["action"], last["release"], last["result"]) == ("rollback", previous, "ok")
    STATE["rollback_seconds"] = run.seconds
    STATE["rollback_load"] = load.results
    # The slot the rollback left ran the release judged bad: no warm window, and the rollback
    # did not wait for its drain: the host drains it and stops it, with no timer left.
    left = "green" if upstream(c).endswith("/blue.sock") else "blue"
    assert f"retire old slot {left} on the host" in run.out and "stays warm" not in run.out
    assert not on_host(c, f"systemctl list-timers --all --no-legend dropstack-retire-{left}.timer")
    unit = f"dropstack@{left}.service"
    deadline = time.monotonic() + 20
    while on_host(c, f"systemctl is-active {unit}").strip() not in ("inactive", "failed"):
        assert time.monotonic() < deadline, f"{unit} still running 20 s after the rollback"
        time.sleep(0.2)
    # Back to the newest: started afresh in that slot, behind the same gate.
    forward = fab(source, "rollback", "--release", current)
    assert forward.code == 0 and serving_release(web) == current
    assert "reuse warm slot" not in forward.out and f"start slot {left}" in forward.out
    assert "health gate /readyz" in forward.out


def test_rollback_warns_when_the_database_is_newer_than_the_target(source, hosts):
    """A target whose migrations stop before the database's revision: warned, and (dry run)
    nothing changes. The fake target is a copy of the live release without its migrations."""
    c = next(iter(hosts.values()))
    fake = "/srv/dropstack/releases/20200101000000-0000000"
    on_host(
        c,
        f'cp -a "$(readlink -f /srv/dropstack/current)" {fake} && '
        f"rm -f {fake}/app/migrations/versions/*.py {fake}/.dropstack-failed && "
        f"touch {fake}/.dropstack-served",
    )
    try:
        run = fab(source, "rollback", "--release", "20200101000000-0000000", "--dry-run")
    finally:
        on_host(c, f"rm -rf {fake}")
    assert run.code == 0
    assert "warning: the database has migrations newer than 20200101000000-0000000" in run.out
    assert "rollback to 20200101000000-0000000" in run.out


def test_old_releases_are_pruned_but_live_and_previous_kept(source, hosts):
    keep = 4  # conftest's config
    for c in hosts.values():
        names = [n for n in host_releases(c) if re.fullmatch(r"\d{14}-\w+", n)]
        current = on_host(c, "basename $(readlink /srv/dropstack/current)").strip()
        assert current in names and STATE["good"][-2] in names
        slots = {on_host(c, f"basename $(readlink /srv/dropstack/slots/{s})").strip()
                 for s in ("blue", "green")}  # fmt: skip
        assert len(names) <= keep + 2 + len(slots)
        assert STATE["good"][0] not in names  # the oldest is gone
        venvs = on_host(c, "ls /srv/dropstack/venvs").split()
        used = {on_host(c, f"basename $(readlink /srv/dropstack/releases/{n}/.venv)").strip()
                for n in names}  # fmt: skip
        assert set(venvs) - {v for v in venvs if v.endswith(".wheels")} <= used


def test_dry_run_prints_the_plan_and_changes_nothing(source, hosts):
    c = next(iter(hosts.values()))
    before = host_releases(c), on_host(c, "tail -n 1 /srv/dropstack/audit.log")
    run = fab(source, "deploy", "--dry-run")
    assert run.code == 0
    assert "new release goes to slot" in run.out and "- health gate /readyz" in run.out
    assert (host_releases(c), on_host(c, "tail -n 1 /srv/dropstack/audit.log")) == before


def test_releases_status_logs_and_unlock(source, hosts, web):
    listing = fab(source, "releases")
    assert listing.code == 0
    assert f"* {STATE['good'][-1]}" in listing.out
    kept_failed = set(STATE["failed"]) & set(host_releases(next(iter(hosts.values()))))
    assert ("FAILED" in listing.out) == bool(kept_failed)
    assert "  rollback  " in listing.out and "  failed  " in listing.out
    status = fab(source, "status")
    assert status.code == 0
    assert f"current release: {STATE['good'][-1]}" in status.out
    assert "[HTTP 200]" in status.out and "nginx: active" in status.out
    logs = fab(source, "logs", "--lines", "20")
    assert logs.code == 0 and "gunicorn" in logs.out.lower()
    nginx_logs = fab(source, "logs", "--nginx", "--lines", "5")
    assert nginx_logs.code == 0 and "/var/log/nginx/dropstack.access.log" in nginx_logs.out
    unlock = fab(source, "unlock")
    assert unlock.code == 0 and "not locked" in unlock.out


def fab_stdout(source, *args: str) -> str:
    """A task's standard output alone (the JSON), as a script reads it."""
    done = subprocess.run(fab_command(source, *args), cwd=REPO, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_status_and_releases_as_json_for_scripts(source):
    status = json.loads(fab_stdout(source, "status", "--json"))
    (host,) = status["hosts"]
    assert host["current"] == STATE["good"][-1] and host["nginx_active"] is True
    assert host["readyz"]["ok"] is True and host["live_slot"] == host["routed_slot"]
    assert host["lock"] is None
    listing = json.loads(fab_stdout(source, "releases", "--json"))
    names = [r["name"] for r in listing["hosts"][0]["releases"]]
    assert STATE["good"][-1] in names
    current = next(r for r in listing["hosts"][0]["releases"] if r["current"])
    assert current["slot_state"] == "live"
    assert listing["hosts"][0]["audit"], "the audit log's entries are listed"


def test_output_survives_a_closed_pipe(source):
    """`fab status | head -1`: the reader leaves early; no traceback, a closed pipe's status."""
    command = " ".join(shlex.quote(a) for a in fab_command(source, "status"))
    done = subprocess.run(["bash", "-c", f"{command} | head -1; echo \"${{PIPESTATUS[0]}}\" >&2"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.stdout.startswith("[web-1]"), done.stdout
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] in ("0", "141"), done.stderr
