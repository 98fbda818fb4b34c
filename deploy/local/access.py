"""Reaching the local hosts over SSH: the stack's key pair, waiting for a booting host to take
it, waiting for cloud-init, and Fabric connections that check each host's own key."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fabric import Connection

from deploy.local import hosts
from deploy.local.machine import nspawn_leaders, supervisors
from deploy.local.network import HostPlan, StackPlan
from deploy.local.state import DOWN_HINT, LocalStackError, StatePaths, last_words, write_private
from deploy.targets import LowLatencyConnection, connection_config
from infra.cloudinit import DEPLOY_USER

Say = Callable[[str], None]
SSH_READY_SECONDS = 60
CLOUD_INIT_SECONDS = 120


def ensure_key_pair(paths: StatePaths, say: Say) -> str:
    """The stack's SSH key pair, made once and kept across `down` like a key in ~/.ssh."""
    if paths.key.exists() and paths.public_key.exists():
        return paths.public_key.read_text().strip()
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    public = f"{public} dropstack-local\n"
    write_private(paths.key, private)
    write_private(paths.public_key, public, mode=0o644)
    say(f"generated the SSH key pair {paths.key}")
    return public.strip()


def wait_for_ssh(paths: StatePaths, plan: StackPlan, only=None) -> None:
    """Until the deploy user can log in to every host (or those in ``only``), verifying each
    host's own key; known_hosts is rewritten with every host of the plan."""
    deadline = time.monotonic() + SSH_READY_SECONDS
    waiting = list(only if only is not None else plan.hosts)
    known: dict[str, str] = {}
    while waiting:
        for host in list(waiting):
            # Its reboot loop starts nspawn a moment after it starts itself.
            if not nspawn_leaders(host) and not supervisors(host):
                raise LocalStackError(
                    f"{host.name}: the container stopped while booting; see "
                    f"{paths.console_log(host)}, then {DOWN_HINT}"
                )
            line = ssh_login_works(paths, host)
            if line:
                known[host.name] = line
                waiting.remove(host)
        if not waiting:
            break
        if time.monotonic() > deadline:
            host = waiting[0]
            raise LocalStackError(
                f"{host.name}: SSH not ready after {SSH_READY_SECONDS} s; see its console log "
                f"{paths.console_log(host)}, then {DOWN_HINT}"
            )
        time.sleep(0.25)
    if only is not None and paths.known_hosts.exists():
        # Keep the other hosts' lines; the waited-for hosts' keys are read again.
        mine = {h.ssh_address for h in only}
        kept = [line + "\n" for line in paths.known_hosts.read_text().splitlines()
                if line.split(" ", 1)[0] not in mine]  # fmt: skip
        write_private(paths.known_hosts, "".join(kept) + "".join(known.values()), mode=0o644)
        return
    write_private(paths.known_hosts, "".join(known[h.name] for h in plan.hosts), mode=0o644)


def ssh_login_works(paths: StatePaths, host: HostPlan) -> str | None:
    """The host's known_hosts line once a key login as the deploy user succeeds, else None.

    sshd only starts once cloud-init has generated the host keys, so the key file read from the
    host's root is the key sshd presents; anything else is rejected.
    """
    if not port_answers(host.ssh_address, 22, timeout=0.5):
        return None
    key_file = paths.host_root(host) / "etc/ssh/ssh_host_ed25519_key.pub"
    try:
        line = hosts.known_hosts_line(host, key_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        with ssh_client(line) as client:
            client.connect(
                host.ssh_address,
                username=DEPLOY_USER,
                key_filename=str(paths.key),
                look_for_keys=False,
                allow_agent=False,
                timeout=3,
                auth_timeout=3,
                banner_timeout=3,
            )
    except (paramiko.SSHException, OSError):
        return None
    return line


def ssh_client(known_hosts_text: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    for line in known_hosts_text.splitlines():
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        if entry:
            for name in entry.hostnames:
                client.get_host_keys().add(name, entry.key.get_name(), entry.key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


@contextlib.contextmanager
def quiet_paramiko():
    """While polling a booting host, a refused or reset connection is expected; paramiko's
    transport thread would print each one as a traceback."""
    logger = logging.getLogger("paramiko.transport")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def port_answers(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-") if port == 22 else True
    except OSError:
        return False


def connection(paths: StatePaths, host: HostPlan) -> Connection:
    """A Fabric connection to a local host as the deploy user, checking the host's key; made
    like the deploy's own (deploy.targets), so it is as quick per command."""
    conn = LowLatencyConnection(
        host.ssh_address,
        user=DEPLOY_USER,
        config=connection_config(),
        connect_timeout=10,
        connect_kwargs={
            "key_filename": [str(paths.key)],
            "look_for_keys": False,
            "allow_agent": False,
        },
    )
    conn.client.load_host_keys(str(paths.known_hosts))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def wait_for_cloud_init(paths: StatePaths, host: HostPlan) -> None:
    """Until cloud-init reports done; its config stage restarts sshd, so a refused or dropped
    connection in that moment is retried rather than taken for a failure."""
    deadline = time.monotonic() + CLOUD_INIT_SECONDS
    while True:
        try:
            with connection(paths, host) as conn:
                result = conn.run(
                    f"timeout {CLOUD_INIT_SECONDS} cloud-init status --wait --format json",
                    hide=True,
                    warn=True,
                )
            break
        except (paramiko.SSHException, OSError) as exc:
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"{host.name}: SSH failed while waiting for cloud-init ({last_words(exc)}); "
                    f"see {paths.console_log(host)}, then {DOWN_HINT}"
                ) from None
            time.sleep(0.5)
    try:
        report = json.loads(result.stdout[result.stdout.find("{") :])
    except json.JSONDecodeError:
        report = {"status": "unknown", "errors": [result.stderr.strip() or "no output"]}
    if report.get("status") != "done" or report.get("errors"):
        first = (report.get("errors") or [report.get("status")])[0]
        raise LocalStackError(
            f"{host.name}: cloud-init did not finish cleanly ({first}); see "
            f"{paths.console_log(host)} and /var/log/cloud-init.log on the host, then {DOWN_HINT}"
        )
