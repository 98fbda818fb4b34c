"""bench.timeline: the request log read back, cut into buckets around a command, and the switch
window found in a step log. Load figures here are synthetic (tests/bench/synthetic_load.py)."""

import json
from datetime import UTC, datetime

import pytest

from bench.timeline import (
    Request,
    Timeline,
    build,
    during,
    p99,
    parse_request_log,
    switch_window,
)
from tests.bench.synthetic_load import START, log_text, steady_requests


def test_the_request_log_reads_back_exactly_what_was_written():
    requests = steady_requests(2, 50, outage=(0.5, 1.0))
    assert parse_request_log(log_text(requests) + "\n") == requests
    assert parse_request_log("1800000000123 0 4500\n") == [Request(1800000000123, 0, 4.5)]


@pytest.mark.parametrize(
    ("text", "number"),
    [("1 200 3\n1 200\n", 2), ("1 200 3\nx 200 3\n", 2), ("1 -5 3\n", 1), ("1 2 3 4\n", 1)],
)
def test_a_malformed_request_log_line_is_named(text, number):
    with pytest.raises(ValueError, match=f"request log line {number}: "):
        parse_request_log(text)


@pytest.mark.parametrize(
    ("values", "expected"),
    [(list(range(1, 101)), 99), (list(range(200, 0, -1)), 198), ([7.5], 7.5), ([], None),
     ([1, 2, 3, 1000], 1000)],
)  # fmt: skip
def test_p99_is_the_nearest_rank(values, expected):
    assert p99(values) == expected


def test_steady_load_gives_flat_buckets_on_the_commands_clock():
    requests = steady_requests(10, 100)
    timeline = build(requests, command=(START + 4, START + 6), load=(START, START + 10))
    assert timeline.t == tuple(x / 2 for x in range(-8, 12))  # -4.0 .. 5.5, half seconds
    assert set(timeline.requests_per_second) == {100.0}
    assert set(timeline.errors_per_second) == {0.0}
    assert all(2.0 <= p <= 4.0 for p in timeline.p99_ms)
    assert timeline.command == (0.0, 2.0) and timeline.switch is None


def test_an_outage_shows_as_errors_in_its_buckets_only():
    requests = steady_requests(10, 100, outage=(5.0, 6.0))
    timeline = build(
        requests, command=(START + 4, START + 7), load=(START, START + 10),
        switch=(START + 4.9, START + 6.2),
    )  # fmt: skip
    errors = dict(zip(timeline.t, timeline.errors_per_second, strict=True))
    assert errors[1.0] == errors[1.5] == 100.0  # the outage, 1 s after the command started
    assert {v for t, v in errors.items() if t not in (1.0, 1.5)} == {0.0}
    p99s = dict(zip(timeline.t, timeline.p99_ms, strict=True))
    assert p99s[1.0] == 0.5  # the fast 503s; requests with no response carry no latency
    assert timeline.switch == (0.9, 2.2)


def test_buckets_the_load_did_not_cover_wholly_are_left_out():
    requests = steady_requests(10, 100)
    timeline = build(requests, command=(START + 4, START + 5), load=(START + 0.2, START + 9.9))
    assert timeline.t[0] == -3.5 and timeline.t[-1] == 5.0
    assert set(timeline.requests_per_second) == {100.0}


def test_a_bucket_where_nothing_answered_has_no_p99_and_a_second_bucket_rate_is_per_second():
    requests = [Request(round((START + 0.1 * i) * 1000), 0, 1.0) for i in range(10)]
    timeline = build(
        requests, command=(START, START + 1), load=(START, START + 2), bucket_seconds=1
    )
    assert timeline.t == (0.0, 1.0)
    assert timeline.requests_per_second == (10.0, 0.0)
    assert timeline.errors_per_second == (10.0, 0.0)
    assert timeline.p99_ms == (None, None)


def test_bucket_size_must_be_positive():
    with pytest.raises(ValueError, match="bucket_seconds: 0 is not allowed"):
        build([], (START, START + 1), (START, START + 2), bucket_seconds=0)


def test_during_counts_only_the_commands_own_requests():
    requests = steady_requests(10, 100, outage=(5.0, 6.0))
    inside = during(requests, (START + 4, START + 7))
    assert inside["requests"] == 300
    assert inside["failed"] == 100 and inside["no_response"] == 10
    assert 2.0 <= inside["p99_ms"] <= 4.0  # 90 fast 503s and 200 slower 200s answered


def test_a_timeline_survives_the_result_json():
    requests = [Request(round((START + 0.1 * i) * 1000), 0, 1.0) for i in range(10)]
    timeline = build(requests, (START, START + 1), (START, START + 2), switch=(START, START + 0.5))
    data = json.loads(json.dumps(timeline.to_json()))
    assert data["p99_ms"][0] is None
    assert Timeline.from_json(data) == timeline
    with pytest.raises(ValueError, match="series of different lengths"):
        Timeline.from_json({**data, "p99_ms": [1.0]})


def entry(step, ended, seconds, host="web-1", status="ok"):
    iso = datetime.fromtimestamp(ended, UTC).isoformat(timespec="milliseconds")
    return {"time": iso, "host": host, "step": step, "status": status, "seconds": seconds}


def test_the_switch_window_spans_the_switch_steps_of_every_host():
    log = [
        entry("build release", START + 1, 1.0),
        entry("upload to web-1", START + 2, 1.0),
        entry("point slot green at the release", START + 2.5, 0.5),
        entry("start slot green", START + 3.5, 1.0),
        entry("stop old slot blue", START + 5.0, 1.5),
        entry("point slot blue at the release", START + 6.0, 0.25, host="web-2"),
        entry("stop old slot green", START + 7.25, 1.0, host="web-2"),
        entry("record release", START + 8, 0.1),
    ]
    assert switch_window(log) == pytest.approx((START + 2.0, START + 7.25), abs=1e-3)
    assert switch_window(log[:2]) is None
