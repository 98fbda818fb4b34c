"""bench.multi_host: the deploy options per mode, the curve and what each further host costs,
from made-up per-count results (nothing here was measured)."""

import pytest

from bench.charts import host_series
from bench.deploy_times import up_command
from bench.multi_host import (
    HOST_COUNTS,
    batch_size,
    curve_points,
    deploy_args,
    modes_for,
    per_extra_host,
)


@pytest.mark.parametrize(
    ("hosts", "mode", "args"),
    [
        (1, "rolling", []),
        (1, "batch", []),
        (3, "rolling", []),
        (3, "batch", ["--batch", "2"]),
        (5, "batch", ["--batch", "4"]),
    ],
)
def test_batch_deploys_the_first_host_alone_then_the_rest_at_once(hosts, mode, args):
    assert deploy_args(hosts, mode) == args


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        batch_size(3, "parallel")


@pytest.mark.parametrize(("hosts", "modes"), [(1, ("rolling",)), (2, ("rolling",)),
                                              (3, ("rolling", "batch"))])  # fmt: skip
def test_batching_is_measured_only_where_it_differs(hosts, modes):
    assert modes_for(hosts) == modes


@pytest.mark.parametrize(
    ("hosts", "domain", "args"),
    [
        (1, None, ["local.up"]),
        (5, None, ["local.up", "--web-count", "5"]),
        (1, "app.dropstack.test", ["local.up", "--domain", "app.dropstack.test"]),
    ],
)
def test_local_up_is_asked_for_the_stack_each_benchmark_needs(hosts, domain, args):
    assert up_command(hosts, domain) == args


def entry(*runs):
    return {"runs": list(runs), "median": sorted(runs)[len(runs) // 2]}


STACKS = {
    "1": {"reused_stack": True, "rolling": entry(4.0, 4.2, 4.1), "seconds": 13},
    "3": {"rolling": entry(10.0, 10.4, 10.2), "batch": entry(6.0, 6.2, 6.1), "seconds": 95},
    "5": {"rolling": entry(16.0, 16.4, 16.2), "batch": entry(8.0, 8.2, 8.1), "seconds": 160},
}


def test_the_curve_has_a_point_per_count_and_mode_one_host_on_both_lines():
    points = curve_points(STACKS)
    assert [(p["hosts"], p["mode"], p["batch"], p["median"]) for p in points] == [
        (1, "rolling", 1, 4.1), (1, "batch", 1, 4.1),
        (3, "rolling", 1, 10.2), (3, "batch", 2, 6.1),
        (5, "rolling", 1, 16.2), (5, "batch", 4, 8.1),
    ]  # fmt: skip
    assert points[3]["runs"] == [6.0, 6.2, 6.1]
    assert host_series({"curve": points}) == {
        "one host at a time": [(1, 4.1), (3, 10.2), (5, 16.2)],
        "with --batch": [(1, 4.1), (3, 6.1), (5, 8.1)],
    }


def test_a_count_that_failed_leaves_no_point_and_no_borrowed_one():
    stacks = {**STACKS, "3": {"error": "local.up exited 1", "seconds": 4},
              "5": {"rolling": entry(16.0)}}  # fmt: skip
    points = curve_points(stacks)
    assert [(p["hosts"], p["mode"]) for p in points] == [(1, "rolling"), (1, "batch"),
                                                         (5, "rolling")]  # fmt: skip


def test_each_further_host_costs_the_slope_of_its_line():
    assert per_extra_host(curve_points(STACKS)) == {"rolling": 3.02, "batch": 1.0}
    only_one = curve_points({"1": STACKS["1"]})
    assert per_extra_host(only_one) == {"rolling": None, "batch": None}


def test_the_counts_are_the_issues():
    assert HOST_COUNTS == (1, 3, 5)
