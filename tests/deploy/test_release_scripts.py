"""The release's shell scripts run for real against a temporary tree: atomic links, unpacking,
the health wait, the upstream swap, waiting for Nginx, the deploy lock and the state probe.
`sudo`, `systemctl` (and where needed `nginx`, `pgrep`) are small shims on PATH."""

import http.server
import json
import os
import socketserver
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from deploy.release import commands as cmd
from deploy.release.layout import Layout


@pytest.fixture
def shell(tmp_path, monkeypatch):
    """Run a command with `sudo` and `systemctl` shims; units are active when a file says so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    units = tmp_path / "units"
    units.mkdir()
    (bin_dir / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\n"
        f"units={units}\n"
        'case "$1" in is-active) shift; q=; [ "$1" = --quiet ] && q=1 && shift; '
        'if [ -e "$units/$1" ]; then s=active; r=0; else s=inactive; r=3; fi; '
        '[ -n "$q" ] || echo $s; exit $r;; '
        '*) echo "$@" >> "$units/calls";; esac\n'
    )
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)

    run.units = units
    return run


@pytest.fixture
def layout(tmp_path) -> Layout:
    root = tmp_path / "srv"
    (root / "releases").mkdir(parents=True)
    (root / "slots").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "nginx" / "dropstack").mkdir(parents=True)
    return Layout(
        app_root=str(root), nginx_dir=str(tmp_path / "nginx"), runtime_dir=str(tmp_path / "run")
    )


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


def test_upstream_is_kept_only_when_nginx_accepts_it(shell, layout, tmp_path):
    conf = Path(layout.upstream_conf)
    conf.write_text("old\n")
    new = tmp_path / "new.conf"
    new.write_text("new\n")
    nginx = tmp_path / "bin" / "nginx"
    nginx.write_text(
        '#!/bin/sh\ngrep -q new "$0.conf" 2>/dev/null && exit 0; echo "emerg: bad"; exit 1\n'
    )
    nginx.chmod(0o755)
    install = cmd.install_upstream_command(layout, str(new)).replace(
        "install -m 0644 -o root -g root", "cp"
    )

    Path(f"{nginx}.conf").write_text("")  # this nginx -t rejects everything
    rejected = shell(install)
    assert rejected.returncode == 1 and "emerg: bad" in rejected.stdout
    assert conf.read_text() == "old\n"

    Path(f"{nginx}.conf").write_text("new")  # and this one accepts
    assert shell(install).returncode == 0
    assert conf.read_text() == "new\n"
    assert not Path(layout.upstream_conf + ".dropstack-old").exists()


class ReadyAfter(http.server.BaseHTTPRequestHandler):
    """/readyz answers 503 for the first ``fails`` requests, then 200."""

    fails = 2
    seen = 0

    def do_GET(self):
        type(self).seen += 1
        ready = self.seen > self.fails
        body = json.dumps({"status": "ready" if ready else "unavailable"}).encode()
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


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


def test_switch_waits_for_old_workers_and_needs_new_ones(shell, tmp_path):
    old = subprocess.Popen(["sleep", "30"])
    try:
        # pgrep -P "$(cat /run/nginx.pid)": the shim lists the "workers" instead.
        workers = tmp_path / "workers"
        pgrep = tmp_path / "bin" / "pgrep"
        pgrep.write_text(f"#!/bin/sh\ncat {workers}\n")
        pgrep.chmod(0o755)
        command = cmd.wait_switched_command([old.pid], 1)
        workers.write_text(f"{old.pid}\n")
        assert shell(command).returncode == 3  # reload never took: no new workers
        workers.write_text(f"{old.pid}\n999999\n")
        busy = shell(command)
        assert busy.returncode == 1 and str(old.pid) in busy.stdout
        workers.write_text("999999\n")
        assert shell(command).returncode == 0
    finally:
        old.kill()
        old.wait()


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
    procs = [subprocess.Popen(["sh", "-c", c], stdout=subprocess.PIPE) for c in commands]
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
    Path(layout.releases, ".incoming-20261121160000-ccccccc").mkdir()
    for key, complete in [("v1", True), ("v2", False)]:
        Path(layout.venv(key)).mkdir(parents=True)
        if complete:
            Path(layout.venv(key), ".complete").touch()
    os.symlink(layout.release("20261121140000-aaaaaaa"), layout.current)
    os.symlink(layout.release("20261121140000-aaaaaaa"), layout.slot("blue"))
    (shell.units / "dropstack@blue.service").touch()
    (shell.units / "nginx").touch()
    Path(layout.upstream_conf).write_text(
        f"upstream x {{\n  server unix:{layout.socket('blue')};\n}}\n"
    )
    shell(lock.acquire_command(layout.lock, holder("cccc")))

    out = shell(probe_command(layout))
    assert out.returncode == 0, out.stderr
    state = parse_state(out.stdout, layout)
    assert state.current == "20261121140000-aaaaaaa"
    assert state.slots == {"blue": "20261121140000-aaaaaaa", "green": None}
    assert state.active == {"blue": True, "green": False}
    assert state.upstream_slot == "blue" and state.live_slot == "blue"
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
    assert sorted(p.name for p in Path(layout.releases).iterdir()) == ["R"]
