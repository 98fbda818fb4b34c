"""bench.load's wrk command for the steady load, and what zero_downtime records of one method
from it. The requests here are synthetic (tests/bench/synthetic_load.py)."""

from pathlib import Path

from bench.load import (
    CONNECTIONS_PER_CLIENT,
    PAUSE_MS,
    SwitchLoad,
    request_cap,
    switch_load_command,
)
from bench.timeline import Timeline
from bench.wrk import SWITCH_SCRIPT, parse_output
from bench.zero_downtime import switch_result
from tests.bench.synthetic_load import START, steady_requests


def test_the_steady_load_runs_one_connection_per_thread_bounded_in_time_and_requests():
    command = switch_load_command("http://198.18.0.11", "close", 60, Path("/tmp/x/close.log"))
    threads, connections, duration = command[1:4]
    assert (threads, connections, duration) == (
        f"-t{CONNECTIONS_PER_CLIENT}", f"-c{CONNECTIONS_PER_CLIENT}", "-d60s",
    )  # fmt: skip
    assert str(SWITCH_SCRIPT) in command
    assert command[-5:] == ["--", "close", str(PAUSE_MS), str(request_cap(60)), "/tmp/x/close.log"]
    # a connection sending as fast as its pauses allow reaches the cap as -d runs out
    assert request_cap(60) == 60 * 1000 // PAUSE_MS == 2400


SUMMARY = (
    'WRK_SUMMARY {"requests": 1000, "duration_us": 10000000, "bytes": 5, "connect": 0, '
    '"read": 0, "write": 0, "timeout": 0, "status_over_399": 100, "latency_us": {"mean": 3000, '
    '"p50": 3000, "p90": 3900, "p99": 4000, "max": 5000}}'
)


def test_a_methods_result_has_its_totals_the_commands_own_requests_and_a_timeline():
    load = SwitchLoad(
        clients={"keepalive": parse_output(SUMMARY)},
        requests=steady_requests(10, 100, outage=(5.0, 6.0)),
        span=(START, START + 10),
    )
    result = switch_result(load, (START + 4, START + 7), switch=(START + 4.5, START + 6.5))
    assert result["seconds"] == 3.0
    assert result["total"]["requests"] == 1000
    assert result["during"]["requests"] == 300 and result["during"]["failed"] == 100
    timeline = Timeline.from_json(result["timeline"])
    assert timeline.command == (0.0, 3.0) and timeline.switch == (0.5, 2.5)
    assert max(timeline.errors_per_second) == 100.0
    assert result["switch_seconds"] is None  # no step log: not a fab run
