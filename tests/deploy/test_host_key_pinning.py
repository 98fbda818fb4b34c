"""Host key pinning ($DROPSTACK_KNOWN_HOSTS, deploy/targets.py) against a real sshd on loopback:
the continuous-delivery job pins the hosts' keys with it, so a host with another key, or one the
file does not list, is refused before any command runs; unset, connections behave as before."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fabric import Config

from deploy.inventory import InventoryError, parse_inventory
from deploy.targets import KNOWN_HOSTS_ENV, HostUnreachable, WebHost, connect
from tests.deploy.test_inventory import sample
from tests.loopback import free_port, stop, wait_for_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="sshd -D needs root for privilege separation"
)


@dataclass(frozen=True)
class Sshd:
    port: int
    host_key_line: str  # "ssh-ed25519 AAAA..." of the server
    client_key: Path

    def known_hosts_line(self, key_line: str | None = None) -> str:
        return f"[127.0.0.1]:{self.port} {key_line or self.host_key_line}\n"


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Iterator[Sshd]:
    """sshd on 127.0.0.1 with its own ed25519 host key, letting root in with one client key."""
    d = tmp_path_factory.mktemp("sshd")
    host_key_line = keygen(d / "host_key")
    client_public = keygen(d / "client_key")
    (d / "authorized_keys").write_text(client_public + "\n")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\n"
        "UsePAM no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, server, "sshd")
        yield Sshd(port, host_key_line, d / "client_key")
    finally:
        stop(server)


def open_connection(sshd: Sshd):
    inv = parse_inventory(
        sample(
            web_names=["web-1"],
            web_public_ips=["127.0.0.1"],
            web_private_ips=["127.0.0.1"],
            ssh_user="root",
            ssh_key_path=str(sshd.client_key),
        ),
        "test",
    )
    # Only the loopback sshd's port differs from a host's (collection level: connect() replaces
    # a config's overrides with its own).
    config = Config()
    config.load_collection({"port": sshd.port})
    return connect(inv, WebHost("web-1", "127.0.0.1", "127.0.0.1"), config)


def test_unpinned_connections_accept_the_host_as_before(sshd, monkeypatch):
    monkeypatch.delenv(KNOWN_HOSTS_ENV, raising=False)
    conn = open_connection(sshd)
    try:
        assert conn.run("echo reached", hide=True).stdout.strip() == "reached"
    finally:
        conn.close()


def test_the_pinned_key_lets_the_connection_in(sshd, tmp_path, monkeypatch):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    monkeypatch.setenv(KNOWN_HOSTS_ENV, str(known))
    conn = open_connection(sshd)
    try:
        assert conn.run("echo reached", hide=True).stdout.strip() == "reached"
    finally:
        conn.close()
    # Refusing never writes: the file is exactly what the operator put there.
    assert known.read_text() == sshd.known_hosts_line()


def test_another_key_for_the_host_is_refused(sshd, tmp_path, monkeypatch):
    other = keygen(tmp_path / "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(other))
    monkeypatch.setenv(KNOWN_HOSTS_ENV, str(known))
    with pytest.raises(HostUnreachable, match="its SSH host key is not the one") as caught:
        open_connection(sshd)
    assert "\n" not in str(caught.value) and str(known) in str(caught.value)


def test_a_host_the_file_does_not_list_is_refused(sshd, tmp_path, monkeypatch):
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port + 1} {sshd.host_key_line}\n")
    monkeypatch.setenv(KNOWN_HOSTS_ENV, str(known))
    with pytest.raises(HostUnreachable, match=f"not in \\${KNOWN_HOSTS_ENV}"):
        open_connection(sshd)


def test_a_missing_known_hosts_file_is_one_line(sshd, tmp_path, monkeypatch):
    monkeypatch.setenv(KNOWN_HOSTS_ENV, str(tmp_path / "absent"))
    with pytest.raises(InventoryError, match="is not a file; give a known_hosts file"):
        open_connection(sshd)
