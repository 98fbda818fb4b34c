"""The deploy lock's holder record and when a held lock may be taken over."""

import os
from datetime import UTC, datetime

import pytest

from deploy.release.lock import Holder, is_stale, new_holder, parse_holder

NOW = datetime(2026, 11, 21, 15, 0, 0, tzinfo=UTC)


def test_new_holder_names_this_process_and_machine():
    h = new_holder("deploy", "0123456789", "20261121150000-0123456", now=NOW)
    assert h.pid == os.getpid()
    assert h.started == "2026-11-21T15:00:00+00:00"
    assert len(h.token) == 16 and h.token != new_holder("deploy", "", "").token


def test_holder_round_trips_through_its_json():
    h = new_holder("rollback", "abc", "R", now=NOW)
    assert parse_holder(h.to_json()) == h


@pytest.mark.parametrize("text", ["", "{}", "not json", '{"user": "a"}', "[]"])
def test_unreadable_holder_is_none(text):
    assert parse_holder(text) is None


def test_description_says_who_what_and_how_long_ago():
    h = Holder("ana", "laptop", 77, "deploy", "0123456789", "R1", "2026-11-21T14:57:30+00:00", "t")
    assert h.describe(NOW) == (
        "deploy of R1 by ana@laptop (pid 77, started 2026-11-21T14:57:30+00:00, 2m30s ago)"
    )


def holder(machine: str, pid: int) -> Holder:
    return Holder("ana", machine, pid, "deploy", "abc", "R", "2026-11-21T15:00:00+00:00", "t")


@pytest.mark.parametrize(
    ("machine", "alive", "stale"),
    [
        ("laptop", False, True),  # our machine, process gone: a killed deploy
        ("laptop", True, False),  # our machine, process alive: a deploy still running
        ("ci-runner", False, False),  # another machine: we cannot know, a person must decide
    ],
)
def test_only_a_dead_holder_on_this_machine_is_stale(machine, alive, stale):
    assert is_stale(holder(machine, 123), "laptop", alive=lambda pid: alive) is stale


def test_our_own_pid_is_never_stale():
    assert not is_stale(holder("laptop", os.getpid()), "laptop", alive=lambda pid: False)
