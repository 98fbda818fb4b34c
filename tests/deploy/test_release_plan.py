"""Pure decisions: idle slot, rollback target, pruning, batches, the dry-run plan, schema checks."""

import pytest

from deploy.host_model import HostSettings
from deploy.release import plan
from deploy.release.host import ReleaseHost
from deploy.release.settings import ReleaseError, ReleaseSettings
from deploy.release.state import HostState, ReleaseInfo
from deploy.release.switch import Switch
from deploy.release.tasks import deploy_steps

R1, R2, R3, R4, R5, R6, R7 = (f"2026112115000{i}-000000{i}" for i in range(1, 8))


def host(
    current=None, releases=(), failed=(), slots=None, active=None, routed=None, venvs=None,
    unserved=(), rolled_back=(),
):  # fmt: skip
    infos = tuple(
        ReleaseInfo(n, n in failed, "v1", n not in unserved, n in rolled_back) for n in releases
    )
    return HostState(
        current=current,
        slots=slots or {"blue": None, "green": None},
        active=active or {"blue": False, "green": False},
        routed_slot=routed,
        nginx_active=True,
        releases=infos,
        venvs={"v1": True} if venvs is None else venvs,
    )


@pytest.mark.parametrize(
    ("routed", "active", "expected"),
    [
        ("blue", {"blue": True, "green": False}, ("blue", "green")),
        ("green", {"blue": False, "green": True}, ("green", "blue")),
        # The link names a slot that is not running: start in the other.
        ("blue", {"blue": False, "green": False}, (None, "green")),
        (None, {"blue": False, "green": False}, (None, "blue")),
    ],
)
def test_new_release_starts_in_the_slot_live_sock_does_not_name(routed, active, expected):
    assert plan.slots_for(host(routed=routed, active=active)) == expected


def test_rollback_goes_to_the_newest_good_release_before_current():
    state = host(current=R4, releases=(R1, R2, R3, R4, R5), failed=(R3,))
    assert plan.rollback_target(state) == R2  # R3 failed its gate; R5 is newer than current


def test_rollback_skips_releases_that_never_went_live():
    # R3's deploy was interrupted before traffic moved: never gated, never a target.
    state = host(current=R4, releases=(R1, R2, R3, R4), unserved=(R3,))
    assert plan.rollback_target(state) == R2
    with pytest.raises(ReleaseError, match="never went live"):
        plan.rollback_target(state, R3)


def test_rollback_after_a_rollback_keeps_going_back():
    assert plan.rollback_target(host(current=R2, releases=(R1, R2, R3))) == R1


def test_rollback_skips_releases_a_rollback_left():
    # Deploy R3, roll back to R2, deploy R4: R3 was judged bad, so the default goes to R2.
    state = host(current=R4, releases=(R1, R2, R3, R4), rolled_back=(R3,))
    assert plan.rollback_target(state) == R2
    assert plan.rollback_target(state, R3) == R3  # named, it is still a target
    # Only releases a rollback left before: the error names them and the way out.
    state = host(current=R3, releases=(R1, R2, R3), rolled_back=(R1, R2))
    with pytest.raises(ReleaseError, match=f"rolled back from, skipped: {R1}, {R2}; name one"):
        plan.rollback_target(state)


def test_rollback_needs_an_older_good_release():
    with pytest.raises(ReleaseError, match=f"no good release older than {R2}"):
        plan.rollback_target(host(current=R2, releases=(R1, R2), failed=(R1,)))


def test_rollback_skips_releases_whose_venv_is_gone():
    state = host(current=R2, releases=(R1, R2), venvs={})
    with pytest.raises(ReleaseError):
        plan.rollback_target(state)


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("20200101000000-deadbee", "is not on the host"),
        (R3, "is marked failed"),
        (R2, "is already live"),
    ],
)
def test_requested_rollback_target_is_checked(requested, message):
    state = host(current=R2, releases=(R1, R2, R3), failed=(R3,),
                 routed="blue", active={"blue": True, "green": False})  # fmt: skip
    with pytest.raises(ReleaseError, match=message):
        plan.rollback_target(state, requested)


def test_requested_release_may_be_newer_than_current():
    assert plan.rollback_target(host(current=R1, releases=(R1, R2)), R2) == R2


def test_prune_keeps_the_newest_and_never_live_previous_or_slot_releases():
    state = host(
        current=R3,
        releases=(R1, R2, R3, R4, R5, R6, R7),
        failed=(R4, R5, R6, R7),
        slots={"blue": R1, "green": R3},
    )
    # Keep 2: R6, R7 (newest); R3 current; R2 previous good; R1 a slot's release.
    assert plan.prune_selection(state, keep=2) == [R4, R5]
    assert plan.prune_selection(state, keep=2, protect=[R4]) == [R5]


def test_prune_with_few_releases_removes_nothing():
    assert plan.prune_selection(host(current=R2, releases=(R1, R2)), keep=5) == []


def test_venvs_go_when_no_remaining_release_uses_them():
    state = HostState(
        releases=(ReleaseInfo(R1, venv="old"), ReleaseInfo(R2, venv="new")),
        venvs={"old": True, "new": True, "orphan": False},
    )
    assert plan.unused_venvs(state, removed=[R1]) == ["old", "orphan"]
    assert plan.unused_venvs(state, removed=[]) == ["orphan"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [(1, [["a"], ["b"], ["c"], ["d"]]), (2, [["a", "b"], ["c", "d"]]), (9, [["a", "b", "c", "d"]])],
)
def test_batches(size, expected):
    assert plan.batches(["a", "b", "c", "d"], size) == expected


def test_batch_size_must_be_positive():
    with pytest.raises(ReleaseError, match="--batch"):
        plan.batches(["a"], 0)


def test_dry_run_plan_lists_hosts_slots_and_steps_with_migrations_once():
    groups = [
        [plan.host_plan("web-1", host(current=R1, releases=(R1,), routed="blue",
                                      active={"blue": True, "green": False}), "v1")],
        [plan.host_plan("web-2", None, None)],
    ]  # fmt: skip
    steps = {}
    for name, state in (("web-1", groups[0][0]), ("web-2", None)):
        h = ReleaseHost(None, name, ReleaseSettings(), HostSettings())
        live = host(current=R1, releases=(R1,), routed="blue", active={"blue": True})
        st = live if state else HostState()
        switch = Switch.plan(h, R2, st)
        steps[name] = [s[0] for s in deploy_steps(h, switch, name == "web-1", "v1", True)]
    text = plan.render_plan("deploy", R2, "0123456789abcdef", groups, steps,
                            ["wheelhouse k: cached"])  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == f"deploy {R2} (revision 0123456789ab), 2 host(s)"
    assert "  note: wheelhouse k: cached" in lines
    assert f"    [web-1] now: blue ({R1}); new release goes to slot green; reuse venv" in lines
    assert "    [web-2] now: nothing live; new release goes to slot idle; venv: unknown" in lines
    # The dry-run prints the step list a run executes: migrations on the first host only.
    assert text.count("- database migrations") == 1
    assert text.count("- health gate /readyz on green") == 1
    assert text.count("- stop idle slot green") == 1
    assert text.count("- keep old slot blue warm for 300s") == 1
    assert "      - prune old releases (keep 5)" in lines


GREP = """\
/r/app/migrations/versions/0001_create_tasks.py:revision = "0001"
/r/app/migrations/versions/0001_create_tasks.py:down_revision = None
/r/app/migrations/versions/0002_due.py:revision: str = '0002'
/r/app/migrations/versions/0002_due.py:down_revision: str | None = "0001"
"""


def test_migration_heads_from_the_revision_lines():
    assert plan.parse_revisions(GREP) == ({"0001", "0002"}, {"0002"})
    assert plan.parse_revisions("") == (set(), set())


def test_db_revision_from_manage_current():
    assert plan.parse_db_revision("current: 0003 (head: 0003)\n") == "0003"
    assert plan.parse_db_revision("current: base (head: 0001)") == "base"
    assert plan.parse_db_revision("Traceback ...") is None


@pytest.mark.parametrize(
    ("db", "warned", "fragment"),
    [
        ("0002", False, None),
        (None, False, None),
        ("0003", True, "newer than R: it is at 0003, R ends at 0002"),
        ("0001", True, "knows but is not its head"),
    ],
)
def test_rollback_warns_when_the_database_is_past_the_target(db, warned, fragment):
    revisions, heads = plan.parse_revisions(GREP)
    warning = plan.schema_warning(db, revisions, heads, "R")
    assert (warning is not None) is warned
    if fragment:
        assert fragment in warning
