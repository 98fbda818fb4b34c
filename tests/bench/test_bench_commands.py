"""The host commands the benchmarks build: the naive restart, Gunicorn's reload (its script run
against stand-in systemctl, pgrep and curl) and the direct Gunicorn instance."""

import configparser
import shlex
import subprocess

import pytest

from bench.throughput import (
    direct_start_script,
    direct_stop_script,
    socket_dropin,
    wait_ready_command,
    workers_command,
)
from bench.zero_downtime import (
    RELOAD_WAIT_SCRIPT,
    naive_restart_command,
    reinstall_command,
    reload_command,
    unpack_wheels_command,
)
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


def test_the_reload_runs_as_root_with_the_slots_unit_socket_and_probe_as_arguments():
    command = reload_command(HostSettings().paths, "green", timeout=45)
    assert command[:4] == ["sudo", "-n", "sh", "-c"]
    assert shlex.split(command[4]) == [
        "sh", "-c", RELOAD_WAIT_SCRIPT, "reload-wait",
        "dropstack@green.service", "/run/dropstack/green.sock", "/readyz", "45",
    ]  # fmt: skip


def test_reinstall_is_the_naive_restarts_own_pip_step():
    pip = reinstall_command("/srv/dropstack/venvs/abc", "wheels")
    assert pip in naive_restart_command(HostSettings().paths, "blue", "/srv/dropstack/venvs/abc",
                                        "wheels")  # fmt: skip


FAKES = {
    # MainPID 100; `reload` is recorded, and from then on the workers are new ones.
    "systemctl": """case "$1" in
  show) echo "${FAKE_MAIN:-100}";;
  reload) [ -n "$FAKE_REFUSE" ] && exit 1; touch "$STATE/reloaded";;
esac""",
    # Old workers 201 202 until the reload, then still one of them for FAKE_LINGER calls.
    "pgrep": """[ "$2" = 100 ] || exit 1
if [ ! -e "$STATE/reloaded" ]; then printf '201\\n202\\n'; exit 0; fi
n=$(cat "$STATE/pgrep" 2>/dev/null || echo 0); echo $((n + 1)) > "$STATE/pgrep"
if [ "$n" -lt "${FAKE_LINGER:-0}" ]; then printf '202\\n301\\n302\\n'
else printf '301\\n302\\n'; fi""",
    # The first FAKE_STARTING probes find no worker ready yet.
    "curl": """n=$(cat "$STATE/curl" 2>/dev/null || echo 0); echo $((n + 1)) > "$STATE/curl"
if [ "$n" -lt "${FAKE_STARTING:-0}" ]; then printf ' [HTTP 502]'
else printf 'ok [HTTP 200]'; fi""",
}


def run_reload_script(tmp_path, **env):
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, body in FAKES.items():
        (fakes / name).write_text("#!/bin/sh\n" + body + "\n")
        (fakes / name).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    environment = {"PATH": f"{fakes}:/usr/bin:/bin", "STATE": str(state), **env}
    # the script as reload_command passes it, without the sudo in front
    args = reload_command(HostSettings().paths, "blue", timeout=3)[2:]
    assert args[0] == "sh"
    done = subprocess.run(args, env=environment, capture_output=True, text=True, timeout=30)
    return done, state


def test_the_reload_waits_for_the_old_workers_to_go_and_a_new_one_to_answer(tmp_path):
    done, state = run_reload_script(tmp_path, FAKE_LINGER="3", FAKE_STARTING="2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "old workers gone; ok [HTTP 200]"
    assert (state / "pgrep").read_text().strip() == "4"  # three polls saw worker 202 linger
    assert (state / "curl").read_text().strip() == "3"  # the socket asked until it answered


@pytest.mark.parametrize(
    ("env", "code", "says"),
    [({"FAKE_MAIN": "0"}, 2, "is not running"), ({"FAKE_REFUSE": "1"}, 3, ""),
     ({"FAKE_LINGER": "1000"}, 1, "old workers still running after 3 s"),
     ({"FAKE_STARTING": "1000"}, 1, "[HTTP 502]")],
)  # fmt: skip
def test_the_reload_fails_with_a_reason(tmp_path, env, code, says):
    done, _ = run_reload_script(tmp_path, **env)
    assert done.returncode == code
    assert says in done.stdout


def test_a_web_host_runs_token_lists_joined_in_one_place():
    """The release code's probes are token lists (deploy.release.state.probe_command): the
    bench's host joins them, as the release tasks do, instead of handing Fabric a list."""
    from bench.drive import WebHost
    from deploy.host_model import HostSettings
    from deploy.release.state import probe_command
    from deploy.shell import join

    ran = []

    class Recorder:
        def run(self, line, **_):
            ran.append(line)

    host = WebHost.__new__(WebHost)
    host.c = Recorder()
    command = probe_command(HostSettings().paths)
    host.run(command)
    host.run("nproc")
    assert ran == [join(command), "nproc"]
