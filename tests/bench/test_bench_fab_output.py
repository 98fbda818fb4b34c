"""bench.fab_output: step times and provisioning changes from a run's JSON step log, written by
the real deploy.steps.HostLog; the release built from the deploy's output."""

import pytest

from bench.fab_output import (
    image_built,
    provision_changes,
    release_built,
    reused_warm_slot,
    steps,
    switch_seconds,
)
from deploy.steps import HostLog, read_step_log

DEPLOY_STEPS = [
    ("upload release", True, 0.3), ("unpack release", True, 0.6),
    ("python environment 9f2c1e0d5a4b3c2d", False, 0.1),
    ("point slot green at the release", True, 0.1), ("start slot green", True, 1.2),
    ("health gate /readyz on green", False, 0.9), ("route nginx to green", True, 0.4),
    ("switch current", True, 0.1), ("enable slot green at boot", True, 1.1),
    ("stop old slot blue", True, 5.5), ("prune old releases (keep 5)", False, 0.2),
]  # fmt: skip


@pytest.fixture
def step_log(tmp_path, monkeypatch):
    """Write steps through HostLog itself, with the seconds given, and read the log back."""
    path = tmp_path / "steps.jsonl"
    monkeypatch.setenv("DROPSTACK_STEP_LOG", str(path))

    def write(host: str, task: str, entries) -> list[dict]:
        log = HostLog(host, task)
        for name, changed, seconds in entries:
            clock = iter([100.0, 100.0 + seconds])
            monkeypatch.setattr("deploy.steps.time.monotonic", lambda c=clock: next(c))
            log.step(name, lambda c=changed: c)
        return read_step_log(path)

    return write


def test_steps_are_read_with_host_status_and_seconds(step_log):
    found = steps(step_log("web-1", "deploy", DEPLOY_STEPS))
    assert len(found) == 11
    assert found[0].host == "web-1" and found[0].name == "upload release" and found[0].changed
    assert found[2].name == "python environment 9f2c1e0d5a4b3c2d" and not found[2].changed
    assert found[5].name == "health gate /readyz on green" and found[5].seconds == 0.9


def test_switch_seconds_add_up_from_pointing_the_slot_to_stopping_the_old_one(step_log):
    log = step_log("web-1", "deploy", DEPLOY_STEPS)
    assert switch_seconds(log) == {"web-1": round(0.1 + 1.2 + 0.9 + 0.4 + 0.1 + 1.1 + 5.5, 2)}
    assert switch_seconds([]) == {}


@pytest.mark.parametrize(("status_changed", "reused"), [(False, True), (True, False)])
def test_a_rollback_reused_the_warm_slot_only_when_it_started_nothing(
    step_log, status_changed, reused
):
    # `ok` (Unchanged: still running the release) or `changed` (the window had ended).
    entries = [("reuse warm slot green", status_changed, 0.05), ("health gate", False, 0.05)]
    assert reused_warm_slot(step_log("web-1", "rollback", entries)) is reused


def test_a_rollback_that_started_its_slot_did_not_reuse_one(step_log):
    assert reused_warm_slot(step_log("web-1", "rollback", DEPLOY_STEPS[3:])) is False


def test_release_built_is_the_name_the_deploy_announced():
    out = "release 20261121150405-0123456: revision 0123456789ab, archive 41 KiB\n"
    assert release_built(out) == "20261121150405-0123456"
    assert (
        release_built("release 20261121150405-0123456-dirty: ...") == "20261121150405-0123456-dirty"
    )
    assert release_built("no release") is None
    renamed = out + "release 20261121150406-0123456: renamed from 20261121150405-0123456, ...\n"
    assert release_built(renamed) == "20261121150406-0123456"


def test_provision_changes_per_host(step_log):
    step_log("web-1", "provision", [("apt packages", False, 0.1), ("nginx site", False, 0.1)])
    log = step_log("web-2", "provision", [("apt packages", True, 9.0), ("nginx site", True, 1.0)])
    assert provision_changes(log) == {"web-1": 0, "web-2": 2}


def test_image_built_only_when_up_had_to_build_one():
    assert image_built("local: building the web image 1a2b with mmdebstrap (about a minute)\n")
    assert not image_built("local: web-1: fresh root on the web image, booting\n")
