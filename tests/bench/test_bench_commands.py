"""The host commands the benchmarks build: the naive restart and the direct Gunicorn instance."""

import configparser

from bench.throughput import (
    direct_start_script,
    direct_stop_script,
    socket_dropin,
    wait_ready_command,
    workers_command,
)
from bench.zero_downtime import naive_restart_command, unpack_wheels_command
from deploy.host_model import HostSettings


def test_naive_restart_stops_reinstalls_offline_and_starts_the_same_slot_in_that_order():
    layout = HostSettings().paths
    command = naive_restart_command(layout, "blue", "/srv/dropstack/venvs/abc", "wheels")
    stop = command.index("systemctl stop dropstack@blue.service")
    pip = command.index("/srv/dropstack/venvs/abc/bin/pip install")
    start = command.index("systemctl restart dropstack@blue.service")
    assert stop < pip < start
    assert (
        "--force-reinstall --no-index" in command and "--find-links wheels wheels/*.whl" in command
    )
    assert command.count(" && ") == 2  # a failed step stops the rest, as a shell script would


def test_unpack_wheels_starts_from_an_empty_directory():
    assert unpack_wheels_command("w.tar", "w") == "rm -rf w && mkdir -p w && tar -xf w.tar -C w"


def test_socket_dropin_replaces_the_unix_socket_with_loopback_tcp():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(socket_dropin(8001))
    assert parser["Socket"]["ListenStream"] == "127.0.0.1:8001"  # last one wins in systemd too
    assert socket_dropin(8001).splitlines()[1] == "ListenStream="  # resets the template's list


def test_direct_instance_copies_the_live_slot_and_is_undone_completely():
    layout = HostSettings().paths
    start = direct_start_script(layout, "green", 8001)
    assert 'ln -sfn "$(readlink /srv/dropstack/slots/green)" /srv/dropstack/slots/bench' in start
    assert "cp /srv/dropstack/slots/green.env /srv/dropstack/slots/bench.env" in start
    assert "/run/systemd/system/dropstack@bench.socket.d/tcp.conf" in start
    assert start.endswith("systemctl start dropstack@bench.service")
    stop = direct_stop_script(layout)
    assert "systemctl stop dropstack@bench.service dropstack@bench.socket" in stop
    assert "rm -rf /run/systemd/system/dropstack@bench.socket.d" in stop
    assert "rm -f /srv/dropstack/slots/bench /srv/dropstack/slots/bench.env" in stop
    assert " && " not in stop and stop.endswith("true")  # every undo step runs


def test_wait_and_worker_probes():
    assert "http://127.0.0.1:8001/readyz" in wait_ready_command(8001, 5)
    assert "seq 10" in wait_ready_command(8001, 5)
    assert "systemctl show -p MainPID --value dropstack@blue.service" in workers_command(
        "dropstack@blue.service"
    )
