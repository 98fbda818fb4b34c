"""The release's shell scripts run for real against a temporary tree: atomic links, unpacking,
the health wait, the live.sock switch, draining the old slot, the deploy lock and the state
probe. `sudo` and `systemctl` are small shims on PATH; sockets and `ss` are real."""

import json
import os
import socket
import socketserver
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from deploy.host_model import HostLayout, HostSettings
from deploy.release import commands as cmd
from deploy.release import plan
from deploy.shell import join
from tests.loopback import QuietHandler


@pytest.fixture
def shell(tmp_path, monkeypatch):
    """Run a command with `sudo` and `systemctl` shims; units are active when a file says so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    units = tmp_path / "units"
    units.mkdir()
    (bin_dir / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    (bin_dir / "systemd-run").write_text(f'#!/bin/sh\necho systemd-run "$@" >> {units}/calls\n')
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\n"
        f"units={units}\n"
        # is-active: a line per unit, as systemctl prints; 0 when any of them is active.
        'case "$1" in is-active) shift; q=; [ "$1" = --quiet ] && q=1 && shift; r=3; '
        'for u in "$@"; do if [ -e "$units/$u" ]; then s=active; r=0; else s=inactive; fi; '
        '[ -n "$q" ] || echo $s; done; exit $r;; '
        '*) echo "$@" >> "$units/calls";; esac\n'
    )
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def run(command) -> subprocess.CompletedProcess:
        line = command if isinstance(command, str) else join(command)
        return subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=30)

    run.units = units
    return run


@pytest.fixture
def layout(tmp_path) -> HostLayout:
    root = tmp_path / "srv"
    (root / "releases").mkdir(parents=True)
    (root / "slots").mkdir()
    (tmp_path / "run").mkdir()
    return HostSettings(app_root=str(root), runtime_dir=str(tmp_path / "run")).paths


def test_unpack_makes_the_release_appear_whole_with_metadata(shell, layout, tmp_path):
    archive = tmp_path / "source.tar.gz"
    module = tmp_path / "mod.py"
    module.write_text("X = 1\n")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(module, arcname="app/mod.py")
    assert shell(cmd.prepare_staging_command(layout, "R")).returncode == 0
    done = shell(cmd.unpack_command(layout, "R", str(archive), {"revision": "abc"}))
    assert done.returncode == 0, done.stderr
    release = Path(layout.release("R"))
    assert (release / "app" / "mod.py").read_text() == "X = 1\n"
    assert list((release / "app" / "__pycache__").glob("mod.*.pyc"))  # compiled for the app user
    assert json.loads((release / ".dropstack-release.json").read_text()) == {"revision": "abc"}
    assert not Path(cmd.staging_dir(layout, "R"), "tree").exists()
    # A second unpack of the same name refuses rather than mixing two trees.
    shell(cmd.prepare_staging_command(layout, "R"))
    assert shell(cmd.unpack_command(layout, "R", str(archive), {})).returncode != 0


def test_slot_and_current_links_point_at_the_release(shell, layout):
    Path(layout.release("R1")).mkdir()
    Path(layout.release("R2")).mkdir()
    assert shell(cmd.point_slot_command(layout, "blue", "R1")).returncode == 0
    assert shell(cmd.point_slot_command(layout, "blue", "R2")).returncode == 0
    assert os.readlink(layout.slot("blue")) == layout.release("R2")
    assert Path(layout.slot_env("blue")).read_text() == "DROPSTACK_RELEASE=R2\n"
    assert shell(cmd.switch_current_command(layout, "R1")).returncode == 0
    assert shell(cmd.switch_current_command(layout, "R2")).returncode == 0
    assert os.readlink(layout.current) == layout.release("R2")
    assert Path(layout.release("R2"), ".dropstack-served").exists()
    assert not Path(layout.current + ".tmp").exists()


class ReadyAfter(QuietHandler):
    """/readyz answers 503 for the first ``fails`` requests, then 200."""

    fails = 2
    seen = 0

    def do_GET(self):
        type(self).seen += 1
        ready = self.seen > self.fails
        body = json.dumps({"status": "ready" if ready else "unavailable"}).encode()
        self.reply(200 if ready else 503, body)


@pytest.fixture
def slot_server(layout):
    server = socketserver.UnixStreamServer(layout.socket("green"), ReadyAfter)
    ReadyAfter.seen = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_health_gate_retries_the_slot_socket_until_ready(shell, layout, slot_server):
    (shell.units / "dropstack@green.service").touch()
    ReadyAfter.fails = 2
    done = shell(cmd.health_wait_command(layout, "green", "/readyz", 10))
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip() == '{"status": "ready"} [HTTP 200]'
    assert ReadyAfter.seen == 3


def test_health_gate_gives_up_with_the_last_response(shell, layout, slot_server):
    (shell.units / "dropstack@green.service").touch()
    ReadyAfter.fails = 10**6
    done = shell(cmd.health_wait_command(layout, "green", "/readyz", 1))
    assert done.returncode == 1
    assert done.stdout.strip() == '{"status": "unavailable"} [HTTP 503]'


def test_health_gate_stops_waiting_when_the_unit_dies(shell, layout):
    done = shell(cmd.health_wait_command(layout, "green", "/readyz", 30))
    assert done.returncode == 2  # no socket, unit inactive: no 30 s wait


# --- the switch: the live.sock link, draining, boot ---


class SlotName(socketserver.BaseRequestHandler):
    """Answers with the name of the slot whose socket the connection reached, then holds the
    connection until the client closes it (like a keep-alive upstream connection)."""

    def handle(self):
        self.request.sendall(self.server.slot.encode())
        while self.request.recv(64):
            pass


@pytest.fixture
def slots(layout):
    """A server on each slot's socket, as systemd's socket units provide them."""
    servers = []
    for slot in ("blue", "green"):
        server = socketserver.ThreadingUnixStreamServer(layout.socket(slot), SlotName)
        server.daemon_threads = True
        server.slot = slot
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield
    for server in servers:
        server.shutdown()
        server.server_close()


def reached(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)
        return client.recv(64).decode()


def test_route_moves_new_connections_through_the_link_without_touching_old_ones(
    shell, layout, slots
):
    assert shell(cmd.route_command(layout, "blue")).returncode == 0
    assert reached(layout.live_socket) == "blue"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as kept:
        kept.connect(layout.live_socket)  # a cached upstream connection to blue
        assert kept.recv(64) == b"blue"
        done = shell(cmd.route_command(layout, "green"))
        assert done.returncode == 0, done.stderr
        # connect() follows the link anew: the next connection reaches green...
        assert reached(layout.live_socket) == "green"
        # ...while the one already open stays on blue until its owner closes it.
        kept.sendall(b"still here")
    assert os.readlink(layout.live_socket) == layout.socket("green")
    assert not Path(layout.live_socket + ".tmp").exists()


def test_drain_waits_for_the_last_connection_to_the_old_slot(shell, layout, slots):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as kept:
        kept.connect(layout.socket("blue"))
        assert kept.recv(64) == b"blue"
        busy = shell(cmd.drain_wait_command(layout, "blue", 1))
        assert busy.returncode == 1 and busy.stdout.strip() == "1 left", busy.stdout
        assert shell(cmd.drain_wait_command(layout, "green", 1)).returncode == 0
    # Closed by the client (Nginx), then by the server: nothing left, the wait ends by itself.
    done = shell(cmd.drain_wait_command(layout, "blue", 10))
    assert done.returncode == 0, done.stdout


def test_boot_starts_the_live_slot_and_not_the_retired_one(shell, layout):
    assert shell(cmd.boot_slot_command(layout, "green")).returncode == 0
    assert (shell.units / "calls").read_text().splitlines() == [
        "enable --quiet --no-reload dropstack@green.service",
        "disable --quiet --no-reload dropstack@blue.service",
        # The reload is systemd's to run; the switch goes on (only `status` waits for it).
        "systemd-run --quiet --no-block --collect --description=dropstack: daemon-reload after a "
        "switch's boot links systemctl daemon-reload",
    ]


# --- the deploy lock ---


def holder(token: str, pid: int = 4242, machine: str = "laptop"):
    from deploy.release.lock import Holder

    return Holder(
        "ana", machine, pid, "deploy", "0123456789", "R", "2026-11-21T15:00:00+00:00", token
    )


def test_lock_is_taken_once_and_reports_its_holder(shell, layout):
    from deploy.release import lock

    first, second = holder("aaaa"), holder("bbbb", pid=4343)
    assert shell(lock.acquire_command(layout.lock, first)).returncode == lock.ACQUIRED
    held = shell(lock.acquire_command(layout.lock, second))
    assert held.returncode == lock.HELD
    assert lock.parse_holder(held.stdout) == first
    # Releasing someone else's lock does nothing; releasing ours frees it.
    shell(lock.release_command(layout.lock, second))
    assert Path(layout.lock).is_dir()
    shell(lock.release_command(layout.lock, first))
    assert not Path(layout.lock).exists()


def test_only_one_of_many_simultaneous_deploys_gets_the_lock(shell, layout):
    from deploy.release import lock

    commands = [lock.acquire_command(layout.lock, holder(f"t{i:03d}", pid=i)) for i in range(20)]
    procs = [subprocess.Popen(["sh", "-c", join(c)], stdout=subprocess.PIPE) for c in commands]
    codes = [p.wait() for p in procs]
    for p in procs:
        p.stdout.close()
    assert codes.count(lock.ACQUIRED) == 1 and codes.count(lock.HELD) == 19


def test_takeover_replaces_only_the_stale_holder_it_saw(shell, layout):
    from deploy.release import lock

    stale, mine, later = holder("dead"), holder("mine", pid=2), holder("late", pid=3)
    shell(lock.acquire_command(layout.lock, stale))
    assert shell(lock.takeover_command(layout.lock, stale, mine)).returncode == 0
    assert lock.parse_holder(Path(layout.lock, "holder.json").read_text()) == mine
    # A second deploy that also saw the dead holder must not steal the lock from us.
    assert shell(lock.takeover_command(layout.lock, stale, later)).returncode == lock.HELD
    assert lock.parse_holder(Path(layout.lock, "holder.json").read_text()) == mine
    assert not Path(layout.lock + ".takeover").exists()


# --- the state probe ---


def test_probe_reads_releases_slots_units_and_lock(shell, layout):
    from deploy.release import lock
    from deploy.release.state import parse_state, probe_command

    for name, venv in [("20261121140000-aaaaaaa", "v1"), ("20261121150000-bbbbbbb", "v2")]:
        Path(layout.release(name)).mkdir()
        os.symlink(layout.venv(venv), layout.release(name) + "/.venv")
    Path(layout.release("20261121150000-bbbbbbb"), ".dropstack-failed").write_text("{}\n")
    Path(layout.release("20261121140000-aaaaaaa"), ".dropstack-served").touch()
    Path(layout.releases_dir, ".incoming-20261121160000-ccccccc").mkdir()
    for key, complete in [("v1", True), ("v2", False)]:
        Path(layout.venv(key)).mkdir(parents=True)
        if complete:
            Path(layout.venv(key), ".complete").touch()
    os.symlink(layout.release("20261121140000-aaaaaaa"), layout.current)
    os.symlink(layout.release("20261121140000-aaaaaaa"), layout.slot("blue"))
    (shell.units / "dropstack@blue.service").touch()
    (shell.units / "nginx").touch()
    os.symlink(layout.socket("blue"), layout.live_socket)
    shell(lock.acquire_command(layout.lock, holder("cccc")))

    out = shell(probe_command(layout))
    assert out.returncode == 0, out.stderr
    state = parse_state(out.stdout, layout)
    assert state.current == "20261121140000-aaaaaaa"
    assert state.slots == {"blue": "20261121140000-aaaaaaa", "green": None}
    assert state.active == {"blue": True, "green": False}
    assert state.routed_slot == "blue" and state.live_slot == "blue"
    assert state.nginx_active
    assert [(r.name, r.failed, r.venv, r.served) for r in state.releases] == [
        ("20261121140000-aaaaaaa", False, "v1", True),
        ("20261121150000-bbbbbbb", True, "v2", False),
    ]
    assert state.venvs == {"v1": True, "v2": False}
    assert state.locked and state.lock == holder("cccc")


def test_probe_of_a_fresh_host(shell, layout):
    from deploy.release.state import parse_state, probe_command

    state = parse_state(shell(probe_command(layout)).stdout, layout)
    assert state.current is None and state.releases == () and state.live_slot is None
    assert not state.locked


def test_lock_on_an_unprovisioned_host_is_an_error_not_a_holder(shell, tmp_path):
    from deploy.release import lock

    missing = str(tmp_path / "no-such-root" / "deploy.lock")
    done = shell(lock.acquire_command(missing, holder("aaaa")))
    assert done.returncode not in (lock.ACQUIRED, lock.HELD)
    assert "No such file" in done.stderr


def test_left_over_uploads_are_cleaned(shell, layout):
    Path(layout.release("R")).mkdir()
    Path(cmd.staging_dir(layout, "OLD"), "tree").mkdir(parents=True)
    assert shell(cmd.clean_incoming_command(layout)).returncode == 0
    assert sorted(p.name for p in Path(layout.releases_dir).iterdir()) == ["R"]


# --- retiring the old slot: warm window, stop in the background, freeing the idle slot ---


def calls(shell) -> list[str]:
    path = shell.units / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_retiring_drains_first_then_stops_the_slot(shell, layout, slots):
    (shell.units / "dropstack@blue.service").touch()  # blue runs
    shell(cmd.route_command(layout, "green"))
    program = cmd.retire_program(layout, "blue", 10)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as kept:
        kept.connect(layout.socket("blue"))  # Nginx still has a connection to blue
        assert kept.recv(64) == b"blue"
        running = subprocess.Popen(["sh", "-c", join(program)], text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            running.wait(timeout=1)  # draining: not stopped while the connection is open
        assert calls(shell) == []
    assert running.wait(timeout=10) == 0
    assert calls(shell) == ["stop dropstack@blue.service"]


def test_retiring_never_stops_the_slot_live_sock_names(shell, layout, slots):
    # A rollback moved traffic back to blue before its retirement ran: it must serve on.
    (shell.units / "dropstack@blue.service").touch()
    shell(cmd.route_command(layout, "blue"))
    done = shell(cmd.retire_program(layout, "blue", 1))
    assert done.returncode == 0, done.stderr
    assert calls(shell) == []


def test_retiring_a_slot_that_is_not_running_waits_for_nothing(shell, layout, slots):
    shell(cmd.route_command(layout, "green"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as kept:
        kept.connect(layout.socket("blue"))  # its socket unit is not its service: no drain
        done = shell(cmd.retire_program(layout, "blue", 5))
    assert done.returncode == 0, done.stderr
    # systemctl stop waits for a stop already under way (deactivating) and is a no-op otherwise.
    assert calls(shell) == ["stop dropstack@blue.service"]


@pytest.fixture
def systemd_run(shell, tmp_path):
    """A systemd-run shim: records its arguments, one per line."""
    record = tmp_path / "systemd-run.args"
    shim = Path(os.environ["PATH"].split(":")[0]) / "systemd-run"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    shim.chmod(0o755)
    return record


def test_the_host_retires_a_warm_slot_by_itself_when_the_window_ends(
    shell, layout, slots, systemd_run
):
    (shell.units / "dropstack@blue.service").touch()
    shell(cmd.route_command(layout, "green"))
    done = shell(cmd.keep_warm_command(layout, "blue", 300, 15))
    assert done.returncode == 0, done.stderr
    # Any earlier retirement of blue is cancelled first (a unit name is used once at a time).
    assert calls(shell) == ["stop dropstack-retire-blue.timer dropstack-retire-blue.service"]
    args = systemd_run.read_text().splitlines()
    assert args[:6] == [
        "--quiet", "--collect", "--unit=dropstack-retire-blue", "--on-active=300s",
        "--timer-property=AccuracySec=1s",
        "--description=dropstack: drain and stop slot blue after its warm window",
    ]  # fmt: skip
    sh, c, program = args[6:]
    assert (sh, c) == ("sh", "-c")
    # systemd would expand '$' itself: the program has none, and runs as it stands.
    assert "$" not in program and "%" not in program
    assert program == join(cmd.retire_program(layout, "blue", 15))
    fired = subprocess.run(["sh", "-c", program], capture_output=True, text=True, timeout=30)
    assert fired.returncode == 0, fired.stderr
    assert calls(shell)[-1] == "stop dropstack@blue.service"


def test_the_migration_lines_of_several_releases_come_in_one_command(shell, layout):
    for name, revisions in (("R1", ["0001"]), ("R2", ["0001", "0002"]), ("R3", [])):
        versions = Path(cmd.migrations_dir(layout, name))
        versions.mkdir(parents=True)
        for rev in revisions:
            (versions / f"{rev}_m.py").write_text(f'revision = "{rev}"\ndown_revision = None\n')
    done = shell(cmd.migration_revisions_command(layout, "R1", "R2", "R3"))
    assert done.returncode == 0, done.stderr  # R3 has none: no error
    found = plan.revisions_by_release(
        done.stdout, {n: cmd.migrations_dir(layout, n) for n in ("R1", "R2", "R3")}
    )
    assert found == {"R1": ({"0001"}, {"0001"}), "R2": ({"0001", "0002"}, {"0001", "0002"}),
                     "R3": (set(), set())}  # fmt: skip


def test_after_a_rollback_the_host_drains_and_stops_the_old_slot_now(
    shell, layout, slots, systemd_run
):
    (shell.units / "dropstack@blue.service").touch()
    shell(cmd.route_command(layout, "green"))
    done = shell(cmd.retire_now_command(layout, "blue", 15))
    assert done.returncode == 0, done.stderr
    assert calls(shell) == ["stop dropstack-retire-blue.timer dropstack-retire-blue.service"]
    args = systemd_run.read_text().splitlines()
    # A service, not a timer, and systemd-run does not wait for it to start.
    assert args[:5] == [
        "--quiet", "--collect", "--unit=dropstack-retire-blue", "--no-block",
        "--description=dropstack: drain and stop slot blue after a rollback",
    ]  # fmt: skip
    assert not any(a.startswith("--on-active") for a in args)
    assert args[5:] == ["sh", "-c", join(cmd.retire_program(layout, "blue", 15))]
    fired = subprocess.run(["sh", "-c", args[-1]], capture_output=True, text=True, timeout=30)
    assert fired.returncode == 0, fired.stderr
    assert calls(shell)[-1] == "stop dropstack@blue.service"


@pytest.mark.parametrize(("running", "expected_state"), [(True, "active"), (False, "inactive")])
def test_freeing_the_idle_slot_cancels_its_window_and_stops_it(
    shell, layout, slots, running, expected_state
):
    if running:
        (shell.units / "dropstack@blue.service").touch()
    shell(cmd.route_command(layout, "green"))
    done = shell(cmd.stop_idle_command(layout, "blue", 5))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == expected_state
    assert calls(shell) == [
        "stop dropstack-retire-blue.timer dropstack-retire-blue.service",
        "stop dropstack@blue.service",
    ]


@pytest.mark.parametrize(
    ("running", "release", "reusable"),
    [(True, "R1", True), (True, "R2", False), (False, "R1", False)],
)
def test_a_warm_slot_is_reused_only_if_it_still_runs_the_release(
    shell, layout, running, release, reusable
):
    for name in ("R1", "R2"):
        Path(layout.release(name)).mkdir()
    shell(cmd.point_slot_command(layout, "blue", "R1"))
    if running:
        (shell.units / "dropstack@blue.service").touch()
    done = shell(cmd.reuse_warm_command(layout, "blue", release))
    assert (done.returncode == 0) == reusable, done.stderr
    assert calls(shell) == ["stop dropstack-retire-blue.timer dropstack-retire-blue.service"]


def test_the_lock_and_the_state_under_it_come_in_one_round_trip(shell, layout, tmp_path):
    from invoke.runners import Result

    from deploy.release import lock
    from deploy.release.host import LockHeld, ReleaseHost, acquire_lock
    from deploy.release.settings import ReleaseSettings

    class Local:
        """The real scripts through the shims, counted."""

        def __init__(self):
            self.commands = []

        def run(self, line, **_):
            self.commands.append(line)
            done = shell(line)
            return Result(stdout=done.stdout, stderr=done.stderr, exited=done.returncode)

    settings = HostSettings(app_root=str(tmp_path / "srv"), runtime_dir=str(tmp_path / "run"))
    Path(layout.releases_dir, "20261121150001-0000001").mkdir()
    first = ReleaseHost(Local(), "web-1", ReleaseSettings(), settings)
    acquire_lock(first, holder("aaaa"))
    state = first.state()
    assert len(first.c.commands) == 1  # the state came with the lock
    assert state.locked and state.lock == holder("aaaa")
    assert [r.name for r in state.releases] == ["20261121150001-0000001"]
    first.state()
    assert len(first.c.commands) == 2  # used once; then probed again
    second = ReleaseHost(Local(), "web-1", ReleaseSettings(), settings)
    with pytest.raises(LockHeld) as held:
        acquire_lock(second, holder("bbbb"))
    assert held.value.holder == holder("aaaa") and second.locked_state is None
    shell(lock.release_command(layout.lock, holder("aaaa")))
