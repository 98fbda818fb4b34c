"""The small pure parts of the release tasks: rollout order, listings, log commands."""

import pytest

from deploy.release.reports import release_lines
from deploy.release.rollout import rollout
from deploy.release.state import HostState, ReleaseInfo


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (1, [["w1"], ["w2"], ["w3"], ["w4"]]),
        # The first host always goes alone: it runs migrations and is the canary.
        (2, [["w1"], ["w2", "w3"], ["w4"]]),
        (5, [["w1"], ["w2", "w3", "w4"]]),
    ],
)
def test_rollout_sends_the_first_host_alone_then_batches(batch, expected):
    assert rollout(["w1", "w2", "w3", "w4"], batch) == expected


def test_rollout_of_one_host():
    assert rollout(["w1"], 3) == [["w1"]]


def test_release_listing_marks_current_slots_and_failures():
    state = HostState(
        current="20261121150000-bbbbbbb",
        slots={"blue": "20261121140000-aaaaaaa", "green": "20261121150000-bbbbbbb"},
        active={"blue": False, "green": True},
        routed_slot="green",
        releases=(
            ReleaseInfo("20261121140000-aaaaaaa", False, "v1", True),
            ReleaseInfo("20261121150000-bbbbbbb", False, "v1", True),
            ReleaseInfo("20261121160000-ccccccc", True, "v1"),
        ),
    )
    assert release_lines(state) == [
        "  20261121160000-ccccccc  venv v1                FAILED",
        "* 20261121150000-bbbbbbb  venv v1                current, slot green (live)",
        "  20261121140000-aaaaaaa  venv v1                slot blue (stopped)",
    ]
    assert release_lines(HostState()) == ["(no releases)"]
