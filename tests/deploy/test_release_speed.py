"""What makes a switch fast without weakening it: no migration unit when there is provably
nothing to migrate, the old slot stopped in the background or kept warm, and a rollback into a
warm slot that starts nothing. The scripts themselves run in test_release_scripts.py."""

import json

import pytest
from invoke.runners import Result

from deploy import steps
from deploy.app_contract import AppContract
from deploy.host_model import HostSettings
from deploy.release import plan
from deploy.release.host import ReleaseHost, migrate
from deploy.release.settings import ReleaseError, ReleaseSettings
from deploy.release.state import HostState, ReleaseInfo
from deploy.release.switch import Switch
from deploy.release.tasks import deploy_steps, rollback_steps, schema_note

R1, R2 = "20261121150001-0000001", "20261121150002-0000002"
GREP_0002 = (
    "/r/app/migrations/versions/0001_create_tasks.py:revision = '0001'\n"
    "/r/app/migrations/versions/0001_create_tasks.py:down_revision = None\n"
    "/r/app/migrations/versions/0002_task_archives.py:revision = '0002'\n"
    "/r/app/migrations/versions/0002_task_archives.py:down_revision = '0001'\n"
)
READY_0002 = '{"release": "x", "schema": "0002", "status": "ready"}\n'


class Scripted:
    """A connection stand-in: answers each command by the first matching fragment, records it."""

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.commands: list[str] = []

    def run(self, command, **_):
        self.commands.append(command)
        for fragment, stdout, exited in self.answers:
            if fragment in command:
                return Result(stdout=stdout, exited=exited)
        return Result(stdout="", exited=0)

    def close(self) -> None:
        """A stand-in keeps no transport: closing and opening it again change nothing."""

    def open(self) -> None:
        pass

    def ran(self, fragment: str) -> bool:
        return any(fragment in c for c in self.commands)


def release_host(answers=(), migrate_kind="alembic", **release) -> ReleaseHost:
    host = HostSettings(app=AppContract(migrate=migrate_kind))
    answers = [*answers, ("date +%s", "1700000000\n", 0)]
    return ReleaseHost(Scripted(answers), "web-1", ReleaseSettings(**release), host)


# --- migrations: skipped only when provably nothing to migrate ---


@pytest.mark.parametrize(
    ("kind", "db", "heads", "skips"),
    [
        ("alembic", "0002", {"0002"}, True),
        ("alembic", "0001", {"0002"}, False),  # a pending migration
        ("alembic", "0003", {"0002"}, False),  # the database is newer: upgrade says so
        ("alembic", None, {"0002"}, False),  # could not read it
        ("alembic", "base", set(), False),
        ("alembic", "0002", {"0002", "0002b"}, False),  # two heads: Alembic must decide
        ("none", None, set(), True),  # the contract has no migrations
        ("django", "0002", {"0002"}, False),  # not something dropstack reads
        ("python -m app.tools migrate", "0002", {"0002"}, False),
    ],
)
def test_nothing_to_migrate_only_when_sound_for_the_kind(kind, db, heads, skips):
    assert (plan.nothing_to_migrate(kind, db, heads) is not None) == skips


@pytest.mark.parametrize(
    ("body", "revision"),
    [
        (READY_0002, "0002"),
        ('{"status": "unavailable", "schema": "0001", "reason": "schema at 0001"}', "0001"),
        ('{"status": "unavailable", "schema": null}', None),
        ('{"status": "ready"}', None),  # an app whose readiness does not say
        ("<html>502</html>", None),
        ("", None),
    ],
)
def test_the_database_revision_from_a_readiness_answer(body, revision):
    assert plan.parse_readiness_revision(body) == revision


def test_at_head_the_migration_unit_does_not_run_and_the_step_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPSTACK_STEP_LOG", str(tmp_path / "steps.jsonl"))
    h = release_host([("grep -HE", GREP_0002, 0), ("--unix-socket", READY_0002, 0)])
    assert h.log.step("database migrations", lambda: migrate(h, "green", R2, "blue")) is False
    assert not h.c.ran("dropstack-migrate@")
    # Read cheaply: the live slot's own readiness answer, not a Python process.
    assert h.c.ran("/run/dropstack/blue.sock") and not h.c.ran("systemd-run")
    assert h.log.results == [("database migrations", "ok")]
    (entry,) = steps.read_step_log(tmp_path / "steps.jsonl")
    assert entry["status"] == "ok"
    assert entry["reason"] == "the database is at 0002, the release's head: nothing to migrate"


@pytest.mark.parametrize(
    ("answers", "live"),
    [
        ([("grep -HE", GREP_0002, 0), ("--unix-socket", READY_0002.replace("0002", "0001"), 0)],
         "blue"),  # behind: migrate
        ([("grep -HE", GREP_0002, 0), ("--unix-socket", "", 7)], "blue"),  # no answer: migrate
        ([("grep -HE", GREP_0002, 0)], None),  # first deploy: nothing live to ask
    ],
)  # fmt: skip
def test_otherwise_the_migration_unit_runs(answers, live):
    h = release_host(answers)
    assert migrate(h, "green", R2, live) is True
    assert h.c.ran("systemctl start dropstack-migrate@green.service")


@pytest.mark.parametrize(("kind", "runs"), [("django", True), ("none", False)])
def test_other_migration_kinds_run_or_skip_without_reading_anything(kind, runs):
    h = release_host([], migrate_kind=kind)
    outcome = migrate(h, "green", R2, "blue")
    assert (outcome is True) == runs
    assert h.c.ran("dropstack-migrate@green") == runs
    assert not h.c.ran("grep -HE") and not h.c.ran("--unix-socket")


# --- a rollback's schema check: the database is asked only when the migrations differ ---


def migrations_of(release: str, *revisions: str) -> str:
    """`grep -H` lines of a release's migrations directory, each revision after the one before."""
    versions = f"/srv/dropstack/releases/{release}/app/migrations/versions"
    lines, parent = [], None
    for rev in revisions:
        lines += [f"{versions}/{rev}.py:revision = '{rev}'",
                  f"{versions}/{rev}.py:down_revision = {parent!r}"]  # fmt: skip
        parent = rev
    return "\n".join(lines) + "\n"


def live_state() -> HostState:
    return HostState(current=R2, slots={"blue": R2, "green": R1},
                     active={"blue": True, "green": False}, routed_slot="blue")  # fmt: skip


def test_the_schema_check_reads_both_releases_at_once_and_skips_the_database_when_alike():
    both = migrations_of(R1, "0001", "0002") + migrations_of(R2, "0001", "0002")
    h = release_host([("grep -HE", both, 0)])
    assert schema_note(h, live_state(), R1) is None
    (grep,) = h.c.commands  # one round trip, no readiness request, no Python
    assert f"releases/{R1}/app/migrations/versions" in grep
    assert f"releases/{R2}/app/migrations/versions" in grep


@pytest.mark.parametrize(
    ("db", "warned"),
    [("0003", "newer than"), ("0002", None)],
)
def test_when_the_migrations_differ_the_live_slot_is_asked_the_database_revision(db, warned):
    both = migrations_of(R1, "0001", "0002") + migrations_of(R2, "0001", "0002", "0003")
    answer = READY_0002.replace("0002", db)
    h = release_host([("grep -HE", both, 0), ("--unix-socket", answer, 0)])
    note = schema_note(h, live_state(), R1)
    assert h.c.ran("/run/dropstack/blue.sock")
    assert (note is None) if warned is None else (warned in note and R1 in note)


def test_revisions_are_told_apart_by_release_directory():
    both = migrations_of(R1, "0001") + migrations_of(R2, "0001", "0002")
    dirs = {r: f"/srv/dropstack/releases/{r}/app/migrations/versions" for r in (R1, R2)}
    found = plan.revisions_by_release(both, dirs)
    assert found[R1] == ({"0001"}, {"0001"})
    assert found[R2] == ({"0001", "0002"}, {"0002"})


# --- the old slot: kept warm, or drained and stopped without waiting for Gunicorn ---


def state(idle_runs=None, idle_active=False) -> HostState:
    return HostState(
        current=R2,
        slots={"blue": R2, "green": idle_runs},
        active={"blue": True, "green": idle_active},
        routed_slot="blue",
        releases=(ReleaseInfo(R1, venv="v1", served=True), ReleaseInfo(R2, venv="v1", served=True)),
        venvs={"v1": True},
    )


def names(step_list) -> list[str]:
    return [s[0] for s in step_list]


def test_the_boot_links_come_last_so_no_systemd_call_waits_for_their_reload():
    # The boot links hand systemd a daemon-reload, which holds every other systemctl call
    # until it is done: the retire step (systemd-run, systemctl stop) comes before them.
    h = release_host()
    listed = names(Switch.plan(h, "20261121150003-0000003", state(R1)).steps(False))
    assert listed.index("keep old slot blue warm for 300s") < listed.index(
        "enable slot green at boot"
    )
    assert listed[-1] == "enable slot green at boot"


def test_a_deploy_frees_the_idle_slot_and_keeps_the_old_one_warm():
    h = release_host()
    switch = Switch.plan(h, "20261121150003-0000003", state(R1, idle_active=True))
    assert not switch.warm  # a new release is never already running
    assert names(deploy_steps(h, switch, True, "v1", True)) == [
        "upload release", "unpack release", "python environment v1",
        "stop idle slot green", "point slot green at the release", "database migrations",
        "start slot green", "health gate /readyz on green", "route nginx to green",
        "switch current", "keep old slot blue warm for 300s", "enable slot green at boot",
        "prune old releases (keep 5)",
    ]  # fmt: skip


def test_with_no_warm_window_the_old_slot_is_drained_then_stopped_in_the_background():
    h = release_host([("ss -xH", "", 0)], warm_seconds=0)
    switch = Switch.plan(h, "20261121150003-0000003", state())
    assert names(switch.steps(False))[-2:] == ["stop old slot blue", "enable slot green at boot"]
    assert switch.stop_old_slot() is True
    drain, stop = h.c.commands
    assert "drain-wait" in drain
    assert stop.endswith("'systemctl stop --no-block dropstack@blue.service'")


@pytest.mark.parametrize(
    ("idle_runs", "idle_active", "warm"),
    [(R1, True, True), (R1, False, False), (None, False, False)],
)
def test_a_rollback_into_the_warm_slot_is_a_pure_traffic_switch(idle_runs, idle_active, warm):
    h = release_host()
    switch = Switch.plan(h, R1, state(idle_runs, idle_active))
    assert switch.warm == warm == plan.warm_slot(state(idle_runs, idle_active), R1)
    listed = names(rollback_steps(switch))
    if warm:
        # No stop, no point, no start, no migration, no upload: the gate, then the link.
        assert listed == [
            "reuse warm slot green", "health gate /readyz on green", "route nginx to green",
            "switch current", "keep old slot blue warm for 300s", "enable slot green at boot",
        ]  # fmt: skip
    else:
        assert listed[:3] == ["stop idle slot green", "point slot green at the release",
                              "start slot green"]  # fmt: skip
    assert not any(
        n.startswith(("upload", "unpack", "python environment", "database")) for n in listed
    )


@pytest.mark.parametrize("warm", [True, False])
def test_a_rollback_hands_the_old_slot_to_the_host_and_does_not_wait_for_its_drain(warm):
    h = release_host([("grep -qxF /srv/dropstack/releases/", "", 0)])
    switch = Switch.plan(h, R1, state(R1, idle_active=warm), rollback=True)
    assert switch.hand_off and switch.keep_warm == 0
    listed = names(switch.steps(False))
    assert listed[-2:] == ["retire old slot blue on the host", "enable slot green at boot"]
    switch.route_nginx()
    assert switch.retire_old_slot() is True and switch.old_stopped
    assert not [c for c in h.c.commands if "drain-wait" in c]  # nothing waited for here
    handed = h.c.commands[-1]
    assert "--unit=dropstack-retire-blue" in handed and "--no-block" in handed
    assert "--on-active" not in handed


def test_if_the_host_cannot_take_the_old_slot_the_rollback_drains_and_stops_it_itself():
    h = release_host([("systemd-run", "", 1), ("ss -xH", "", 0)])
    switch = Switch.plan(h, R1, state(), rollback=True)
    assert switch.retire_old_slot() is True and switch.old_stopped
    assert [c for c in h.c.commands if "drain-wait" in c]
    assert h.c.ran("systemctl stop --no-block dropstack@blue.service")


def test_a_deploy_still_waits_for_the_drain_before_it_returns():
    h = release_host([("ss -xH", "", 0)], warm_seconds=0)
    switch = Switch.plan(h, "20261121150003-0000003", state())
    assert not switch.hand_off
    switch.retire_old_slot()
    assert [c for c in h.c.commands if "drain-wait" in c]


def test_a_restart_of_the_live_release_neither_reuses_nor_keeps_a_warm_slot():
    # fab secrets restarts the current release in the idle slot to read the new env file: a
    # warm slot of that release (started with the old file) must not stand in for it, and the
    # slot it retires (old environment) is not kept.
    h = release_host([("ss -xH", "", 0)])
    both_run_it = state(R2, idle_active=True)
    switch = Switch.plan(h, R2, both_run_it)
    assert not switch.warm and switch.keep_warm == 0
    listed = names(switch.steps(False))
    assert listed[:3] == ["stop idle slot green", "point slot green at the release",
                          "start slot green"]  # fmt: skip
    assert listed[-2:] == ["stop old slot blue", "enable slot green at boot"]


def test_reusing_the_warm_slot_starts_nothing_but_the_gate_still_runs():
    h = release_host([("grep -qxF /srv/dropstack/releases/", "", 0)])
    switch = Switch.plan(h, R1, state(R1, idle_active=True))
    outcome = switch.reuse_warm_slot()
    assert isinstance(outcome, steps.Unchanged) and "nothing started" in outcome.reason
    assert switch.started  # a failed gate stops it, as any slot that failed its gate
    assert not h.c.ran("systemctl restart")
    assert "health gate /readyz on green" in names(switch.steps(False))


def test_a_warm_slot_that_just_stopped_is_started_as_usual():
    h = release_host([("grep -qxF /srv/dropstack/releases/", "", 1),
                      ("systemctl is-active dropstack@green", "inactive\n", 0)])  # fmt: skip
    switch = Switch.plan(h, R1, state(R1, idle_active=True))
    assert switch.reuse_warm_slot() is True
    assert h.c.ran("ln -sfn /srv/dropstack/releases/" + R1)
    assert h.c.ran("systemctl restart dropstack@green.service")


def test_the_idle_slot_step_reports_whether_something_was_running():
    for shown, changed in (("inactive\n", False), ("active\n", True), ("deactivating\n", True)):
        h = release_host([("systemctl is-active dropstack@green", shown, 0)])
        switch = Switch.plan(h, R1, state())
        assert switch.stop_idle_slot() is changed


def test_an_interrupt_after_the_route_still_retires_the_old_slot():
    h = release_host([("ss -xH", "", 0)])
    switch = Switch.plan(h, "20261121150003-0000003", state())
    switch.routed = True
    switch.finish_routed()
    assert switch.old_stopped
    assert h.c.ran("--on-active=300s")


def test_the_route_starts_the_drain_clock_and_the_retire_step_waits_once():
    # The drain is timed from the route; its wait runs in the retire step, on the one channel
    # (a second channel left interrupted switches hanging), which acts (keep warm, or stop)
    # only once it is over, and waits once.
    h = release_host([("ss -xH", "", 0)])
    switch = Switch.plan(h, "20261121150003-0000003", state())
    switch.route_nginx()
    assert switch.drain is not None  # the clock, not a wait
    assert not [c for c in h.c.commands if "drain-wait" in c]
    assert switch.retire_old_slot() is True
    drains = [c for c in h.c.commands if "drain-wait" in c]
    assert len(drains) == 1 and "/run/dropstack/blue.sock" in drains[0]
    assert "--on-active=300s" in h.c.commands[-1]  # kept warm only after the drain


def test_if_the_warm_window_cannot_be_scheduled_the_old_slot_is_stopped_now():
    h = release_host([("systemd-run", "", 1), ("ss -xH", "", 0)])
    switch = Switch.plan(h, "20261121150003-0000003", state())
    assert switch.retire_old_slot() is True and switch.old_stopped
    assert h.c.ran("systemctl stop --no-block dropstack@blue.service")


@pytest.mark.parametrize("value", [-1, 86401, "5"])
def test_the_warm_window_is_checked(value):
    with pytest.raises(ReleaseError, match="warm_seconds"):
        ReleaseSettings.from_config({"release": {"warm_seconds": value}})


def test_the_warm_window_default_and_off():
    assert ReleaseSettings.from_config({}).warm_seconds == 300
    assert ReleaseSettings.from_config({"release": {"warm_seconds": 0}}).warm_seconds == 0


def test_step_outcomes_with_a_reason_are_ok_and_logged(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DROPSTACK_STEP_LOG", str(tmp_path / "log.jsonl"))
    log = steps.HostLog("web-1", "deploy")
    assert log.step("a step", lambda: steps.Unchanged("why not")) is False
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[web-1] a step") and " ok " in out[0]
    assert out[1] == "[web-1]   | why not"
    (entry,) = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert (entry["status"], entry["reason"]) == ("ok", "why not")


# --- a failed deploy marks only the release it unpacked ---


def test_a_failed_deploy_marks_only_a_release_it_unpacked(monkeypatch):
    from types import SimpleNamespace

    from deploy.release import tasks
    from deploy.release.host import UNPACK_STEP
    from deploy.release.lock import new_holder

    marked: list[tuple[str, str]] = []
    monkeypatch.setattr(tasks, "mark_failed", lambda h, name, step, _: marked.append((name, step)))
    monkeypatch.setattr(tasks, "upload_release", lambda h, art, with_wheels: True)
    monkeypatch.setattr(tasks, "record_audit", lambda *args: None)
    art = SimpleNamespace(name=R2, wheelhouse=SimpleNamespace(venv_key="v1"),
                          source=SimpleNamespace(revision="0000002"))  # fmt: skip
    holder = new_holder("deploy", "0000002", R2)

    def taken(h, art, deployer):
        # Another run's release, of the same commit in the same second, already live there.
        raise steps.StepFailed(h.name, UNPACK_STEP, f"{art.name} already exists on the host")

    monkeypatch.setattr(tasks, "unpack_release", taken)
    with pytest.raises(steps.StepFailed):
        tasks.deploy_host(release_host(), art, False, holder)
    assert marked == []  # not ours to mark

    def broken(h, art):
        raise steps.StepFailed(h.name, "python environment v1", "pip failed")

    monkeypatch.setattr(tasks, "unpack_release", lambda h, art, deployer: True)
    monkeypatch.setattr(tasks, "ensure_venv", broken)
    with pytest.raises(steps.StepFailed):
        tasks.deploy_host(release_host(), art, False, holder)
    assert marked == [(R2, "python environment v1")]
