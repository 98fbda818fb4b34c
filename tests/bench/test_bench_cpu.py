"""bench.cpu: the CPU probe run on a web host and the arithmetic on its samples."""

import json
import subprocess

import pytest

from bench.cpu import busy_share, machine_ticks, parse_probe, per_request_ms, probe_command

PROC_STAT = "cpu  1000 0 500 8000 100 0 50 10 0 0\ncpu0 500 0 250 4000 50 0 25 5 0 0\n"


def test_probe_runs_and_prints_clock_ticks_per_group():
    # No unit asked for: the script must still run here (Python 3.8+ like the host's) and count
    # whatever nginx processes exist (none on a test machine).
    done = subprocess.run(["sh", "-c", probe_command([])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["hz"] > 0 and data["nginx"] >= 0


def test_probe_command_quotes_unit_names():
    assert probe_command(["dropstack@blue.service"]).endswith(" dropstack@blue.service")
    assert probe_command(["a b"]).endswith(" 'a b'")


def test_parse_probe_turns_ticks_into_seconds():
    out = 'noise\n{"hz": 100, "nginx": 250, "dropstack@blue.service": 1000}\n'
    assert parse_probe(out) == {"nginx": 2.5, "dropstack@blue.service": 10.0}


def test_machine_ticks_counts_idle_and_iowait_as_idle():
    assert machine_ticks(PROC_STAT) == (1000 + 500 + 50 + 10, 9660)


def test_busy_share_between_two_samples():
    assert busy_share((100, 1000), (280, 1200)) == 0.9
    assert busy_share((5, 10), (5, 10)) == 0.0


def test_per_request_ms_for_groups_in_both_samples():
    before = {"nginx": 1.0, "gunicorn": 10.0, "wrk": 0.5}
    after = {"nginx": 2.0, "gunicorn": 18.0, "wrk": 0.9, "new": 1.0}
    assert per_request_ms(before, after, 10_000) == pytest.approx(
        {"nginx": 0.1, "gunicorn": 0.8, "wrk": 0.04}
    )
    assert per_request_ms(before, after, 0) == {}
