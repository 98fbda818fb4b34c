"""The live Gunicorn slot (systemd/dropstack@.service, .socket): running, sandboxed, as the app
user, reachable only through its unix socket."""

from __future__ import annotations

import re

import pytest

MAX_EXPOSURE = 2.0


def unit_name(settings, slot: str) -> str:
    return f"{settings.app_name}@{slot}.service"


@pytest.fixture
def unit_processes(host, settings, live_slot) -> list[tuple[str, int, str]]:
    """(user, pid, command) of every process in the live slot's unit."""
    unit = unit_name(settings, live_slot)
    rows = []
    for line in host.run("ps -eo unit=,user=,pid=,comm=").stdout.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[0] == unit:
            rows.append((fields[1], int(fields[2]), fields[3]))
    return rows


def test_live_slot_running(host, settings, live_slot):
    """The slot live.sock names is up. (The idle one is stopped; deploys enable the live one
    at boot and disable the other.)"""
    unit = unit_name(settings, live_slot)
    state = host.run(f"systemctl show -p ActiveState -p SubState -p UnitFileState {unit}").stdout
    props = dict(line.split("=", 1) for line in state.splitlines() if "=" in line)
    assert (props.get("ActiveState"), props.get("SubState")) == ("active", "running"), (
        f"Nginx routes to {unit}, which is {props.get('ActiveState')}/{props.get('SubState')}: "
        f"every request gets 503; see `journalctl -u {unit}`"
    )


def test_live_slot_starts_at_boot(host, settings, live_slot):
    """Deploys enable the live slot and disable the other: after a reboot the live release
    serves again instead of Nginx's 503."""
    unit = unit_name(settings, live_slot)
    state = host.run(f"systemctl is-enabled {unit}").stdout.strip()
    assert state == "enabled", (
        f"{unit} is live but {state or 'unknown'} at boot: after a reboot the site answers 503 "
        "until the next deploy; `systemctl enable` it"
    )


def test_live_slot_sandbox_exposure(host, settings, live_slot):
    unit = unit_name(settings, live_slot)
    out = host.run(f"sudo -n systemd-analyze security --no-pager {unit}").stdout
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
    assert match, f"`systemd-analyze security {unit}` printed no exposure level:\n{out[-500:]}"
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, (
        f"{unit} has sandbox exposure {exposure}, above {MAX_EXPOSURE}: the unit's hardening "
        "(systemd/_sandbox.j2) is not in effect; re-run `fab provision` and check the unit file"
    )


def test_app_processes_run_as_app_user(unit_processes, settings, live_slot):
    assert len(unit_processes) >= 2, (
        f"{unit_name(settings, live_slot)} has {len(unit_processes)} process(es); "
        "expected Gunicorn's arbiter and at least one worker"
    )
    wrong = [
        f"pid {pid} ({cmd}) as {user}"
        for user, pid, cmd in unit_processes
        if user != settings.app_user
    ]
    assert not wrong, f"app processes not running as {settings.app_user}: {', '.join(wrong)}"


def test_app_listens_on_no_network_port(host, unit_processes):
    """Gunicorn serves only the unix socket systemd hands it; a TCP or UDP listener would be
    reachable past Nginx (its headers, limits and logs)."""
    pids = {pid for _, pid, _ in unit_processes}
    listeners = host.run("sudo -n ss -ltunpH").stdout.splitlines()
    owned = [line for line in listeners if {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids]
    assert not owned, "the app listens on network ports:\n" + "\n".join(owned)


def test_live_slot_socket_permissions(host, settings, live_slot):
    path = settings.paths.socket(live_slot)
    with host.sudo():
        sock = host.file(path)
        exists, is_socket = sock.exists, sock.exists and sock.is_socket
        owner = (sock.user, sock.group, sock.mode) if exists else None
    assert exists and is_socket, f"{path} is missing or not a socket: the live slot cannot serve"
    assert owner == ("root", settings.web_group, 0o660), (
        f"{path} is {owner[0]}:{owner[1]} {owner[2]:04o}; must be root:{settings.web_group} "
        "0660 so only Nginx can reach Gunicorn"
    )
