"""bench.stats: medians of repeated runs, percentiles, ratios."""

import pytest

from bench.stats import median, percentile, ratio, slope, timing


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([5], 50, 5),
        ([3, 1, 2], 50, 2),
        ([4, 1, 3, 2], 50, 2.5),
        ([1, 2, 3, 4, 5], 0, 1),
        ([1, 2, 3, 4, 5], 100, 5),
        ([10, 20, 30, 40, 50], 90, 46),
        (list(range(1, 101)), 99, 99.01),
    ],
)
def test_percentile_interpolates_between_closest_ranks(values, pct, expected):
    assert percentile(values, pct) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "pct"), [([], 50), ([1, 2], -1), ([1, 2], 101)])
def test_percentile_refuses_what_has_none(values, pct):
    with pytest.raises(ValueError):
        percentile(values, pct)


def test_median_of_repeated_runs_ignores_one_slow_run():
    assert median([12.0, 41.5, 11.0]) == 12.0


def test_timing_keeps_each_run_and_the_median_to_a_tenth():
    assert timing([12.04, 11.96, 30.0]) == {"runs": [12.0, 12.0, 30.0], "median": 12.0}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(900, 1000, 0.9), (1, 3, 0.333), (None, 5, None), (5, 0, None), (0, 5, None)],
)
def test_ratio_is_none_when_a_side_is_missing(a, b, expected):
    assert ratio(a, b) == expected


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([(1, 4.0), (3, 6.0), (5, 8.0)], 1.0),
        ([(1, 4.0), (3, 10.0), (5, 20.0)], 4.0),
        ([(5, 8.0), (1, 4.0)], 1.0),
        ([(1, 4.0), (1, 5.0)], None),
        ([], None),
    ],
)
def test_slope_is_the_least_squares_cost_of_each_further_host(points, expected):
    assert slope(points) == expected
