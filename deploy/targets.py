"""From a target (local droplet, Pulumi stack or inventory file) to SSH connections.

Every task that touches hosts calls ``resolve_inventory`` and ``connect``; testinfra's conftest
uses the same two functions, so deploys and host tests always agree on what the target is.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote

from deploy.inventory import Inventory, InventoryError, WebHost, load_inventory

CONNECT_TIMEOUT_SECONDS = 10
# A known_hosts file that pins the hosts' SSH keys. Unset, Fabric accepts any host key (paramiko's
# AutoAddPolicy, docs/provisioning.md); set, as the continuous-delivery job sets it from a
# repository secret, a host missing from the file or offering another key is refused.
KNOWN_HOSTS_ENV = "DROPSTACK_KNOWN_HOSTS"


class HostUnreachable(Exception):
    """SSH to a host failed; the message is one line naming the host and the reason."""


def resolve_inventory(stack: str | None = None, inventory: str | None = None) -> Inventory:
    """The target's inventory: ``--stack`` wins over ``--inventory``; default: the local droplet."""
    return load_inventory(path=inventory or None, stack=stack or None)


def select_hosts(inv: Inventory, names: str | None) -> list[WebHost]:
    """The web hosts named in a comma-separated list, in inventory order; all when empty."""
    hosts = inv.web_hosts
    if not names:
        return hosts
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {h.name for h in hosts}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        have = ", ".join(sorted(known))
        raise InventoryError(f"--hosts: unknown host {', '.join(unknown)}; this target has {have}")
    return [h for h in hosts if h.name in wanted]


# Linux only: elsewhere (macOS, the BSDs) the socket is a plain one with TCP_NODELAY.
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once (TCP_QUICKACK after each recv).

    Right after authentication sshd sends its host keys (an 800-byte global request that
    needs no answer) and then, when asked, the first channel's confirmation. Nothing we send
    carries the ACK of the first, so Linux delays it (40 ms), and sshd's Nagle holds the
    confirmation until it comes: the first command of every connection took 55-60 ms more than
    the next. Setting TCP_QUICKACK sends an ACK that is due now; Linux clears the mode again by
    itself, hence after every recv. Costs a system call per read and a few more bare ACKs."""

    def recv(self, bufsize: int, *flags: int) -> bytes:
        data = super().recv(bufsize, *flags)
        if TCP_QUICKACK is not None:
            # A socket another thread has just closed has nothing left to acknowledge.
            with contextlib.suppress(OSError):
                self.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        return data


def quick_socket(host: str, port: int, timeout: float) -> QuickAckSocket:
    """A connected QuickAckSocket with TCP_NODELAY set before the first byte is sent (the
    handshake's small packets, too, waited for delayed ACKs). Raises TimeoutError or OSError,
    as paramiko's own connect would."""
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = QuickAckSocket(family, kind, proto)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class LowLatencyConnection(Connection):
    """A Fabric connection whose TCP socket sends at once (TCP_NODELAY) and acknowledges at
    once (QuickAckSocket).

    Every command opens an SSH channel: a few small packets each way. With Nagle's algorithm
    on, one of them waits for the peer's delayed ACK (40 ms on Linux), so each command cost
    about 50 ms where it takes 4 ms without; a rollback runs some twenty (measured on the local
    droplet, docs/benchmarks.md). The connection itself, and its first command, took about 45
    ms more each for the same reason, in the handshake and in sshd (QuickAckSocket): opening
    one now takes 20-25 ms, not 65-75.
    Through a gateway the transport's socket is an SSH channel, which has no such option."""

    def open(self):
        if self.is_connected or self.gateway or "sock" in self.connect_kwargs:
            return super().open()
        timeout = self.connect_timeout or CONNECT_TIMEOUT_SECONDS
        self.connect_kwargs["sock"] = quick_socket(self.host, self.port, timeout)
        try:
            return super().open()
        except BaseException:
            self.connect_kwargs["sock"].close()
            raise
        finally:
            del self.connect_kwargs["sock"]


class PromptRemote(Remote):
    """Fabric's remote runner, told at once when a command has exited.

    Invoke's ``Runner.wait`` checks whether the command has finished every ``input_sleep``
    (10 ms) and sleeps in between: a command that took 4 ms returned after 10-15 ms. Here the
    wait blocks on the channel's exit-status event (paramiko sets it when the exit status
    arrives), checking the I/O threads for errors every 50 ms as Invoke does every 10: about 7
    ms less per command, some twenty of them in a rollback (docs/benchmarks.md)."""

    def wait(self) -> None:
        while not (self.process_is_finished or self.has_dead_threads):
            self.channel.status_event.wait(0.05)


def connection_config(base: Config | None = None) -> Config:
    """Fabric config for our connections. Remote commands get no stdin: nothing we run is
    interactive, and forwarding stdin breaks under pytest and costs time (Invoke polls it)."""
    config = base.clone() if base is not None else Config()
    config.load_overrides(
        {"run": {"in_stream": False}, "sudo": {"password": None},
         "runners": {"remote": PromptRemote}}
    )  # fmt: skip
    return config


def pinned_known_hosts() -> Path | None:
    """The known_hosts file named by $DROPSTACK_KNOWN_HOSTS, or None (no pinning)."""
    named = os.environ.get(KNOWN_HOSTS_ENV, "").strip()
    if not named:
        return None
    path = Path(named).expanduser()
    if not path.is_file():
        raise InventoryError(f"${KNOWN_HOSTS_ENV}: {path} is not a file; give a known_hosts file")
    return path


def connection_for(inv: Inventory, host: WebHost, config: Config | None = None) -> Connection:
    """An unopened Fabric connection to a web host as the inventory's deploy user; with a pinned
    known_hosts file, one that refuses any host key but the file's."""
    config = connection_config(config)
    connect_kwargs = {"key_filename": [inv["ssh_key_path"]]} if inv["ssh_key_path"] else {}
    conn = LowLatencyConnection(
        host.public_ip,
        user=inv["ssh_user"],
        config=config,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_kwargs={**connect_kwargs, "banner_timeout": 15, "auth_timeout": 15},
    )
    known_hosts = pinned_known_hosts()
    if known_hosts:
        conn.client.load_host_keys(str(known_hosts))
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def connect(inv: Inventory, host: WebHost, config: Config | None = None) -> Connection:
    """Open a connection, turning every SSH failure into one line that says what to check."""
    conn = connection_for(inv, host, config)
    where = f"{host.name} ({host.public_ip})"
    try:
        conn.open()
    except paramiko.AuthenticationException:
        key = inv["ssh_key_path"] or "ssh-agent / ~/.ssh keys"
        raise HostUnreachable(
            f"{where}: SSH refused the key for user {inv['ssh_user']} ({key}); "
            "check sshPublicKeys / the key path"
        ) from None
    except paramiko.BadHostKeyException:
        raise HostUnreachable(
            f"{where}: its SSH host key is not the one ${KNOWN_HOSTS_ENV} pins "
            f"({pinned_known_hosts()}); if the host was rebuilt, update that file"
        ) from None
    except paramiko.SSHException as exc:
        if "not found in known_hosts" not in str(exc):
            raise HostUnreachable(f"{where}: cannot open SSH: {exc}") from None
        raise HostUnreachable(
            f"{where}: not in ${KNOWN_HOSTS_ENV} ({pinned_known_hosts()}), which pins the "
            "hosts' SSH keys; add the host's key (ssh-keyscan -t ed25519 HOST, checked) to it"
        ) from None
    except TimeoutError:
        raise HostUnreachable(
            f"{where}: SSH timed out after {CONNECT_TIMEOUT_SECONDS}s; is the host up and port 22 "
            "open to you (adminCidrs)?"
        ) from None
    except OSError as exc:
        raise HostUnreachable(f"{where}: cannot open SSH: {exc}") from None
    return conn
