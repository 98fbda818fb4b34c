"""The SSH connection's latency fixes (deploy/targets.py): a socket that sends and acknowledges
at once, and a runner that returns as soon as the command's exit status has arrived. Their
effect is measured on the droplet (docs/benchmarks.md); here, that they do what they say and
fail the way paramiko's own connect would. Loopback only."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

import pytest

from deploy import targets
from deploy.targets import LowLatencyConnection, PromptRemote, QuickAckSocket, quick_socket


@pytest.fixture
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def test_the_socket_sends_and_acknowledges_at_once(listener):
    sock = quick_socket("127.0.0.1", listener.getsockname()[1], timeout=5)
    peer, _ = listener.accept()
    try:
        assert isinstance(sock, QuickAckSocket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        peer.sendall(b"SSH-2.0-test\r\n")
        assert sock.recv(64) == b"SSH-2.0-test\r\n"
        # Linux leaves quick-ACK mode by itself; each read asks for it again.
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)
    finally:
        peer.close()
        sock.close()


def test_without_quick_acks_the_socket_still_reads(listener, monkeypatch):
    # macOS and the BSDs have no TCP_QUICKACK: fab runs from there too.
    monkeypatch.setattr(targets, "TCP_QUICKACK", None)
    sock = quick_socket("127.0.0.1", listener.getsockname()[1], timeout=5)
    peer, _ = listener.accept()
    try:
        peer.sendall(b"hello")
        assert sock.recv(64) == b"hello"
    finally:
        peer.close()
        sock.close()


def test_a_refused_connection_fails_as_paramiko_would_and_leaves_nothing_behind(listener):
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(ConnectionRefusedError):
        quick_socket("127.0.0.1", port, timeout=5)
    conn = LowLatencyConnection("127.0.0.1", port=port, connect_timeout=5)
    with pytest.raises(ConnectionRefusedError):
        conn.open()
    assert "sock" not in conn.connect_kwargs  # a later open() makes a socket of its own


class FakeChannel:
    def __init__(self) -> None:
        self.status_event = threading.Event()

    def exit_status_ready(self) -> bool:
        return self.status_event.is_set()


def runner(channel: FakeChannel, threads: dict | None = None) -> PromptRemote:
    remote = PromptRemote.__new__(PromptRemote)  # only wait()'s inputs, no context
    remote.channel = channel
    remote.threads = threads or {}
    return remote


def test_the_runner_returns_when_the_exit_status_arrives():
    channel = FakeChannel()
    threading.Timer(0.05, channel.status_event.set).start()
    runner(channel).wait()
    assert channel.exit_status_ready()


def test_the_runner_stops_waiting_when_an_io_thread_died():
    # As Invoke's own wait: a reader that failed ends the wait, the error is raised after it.
    dead = SimpleNamespace(is_dead=True)
    channel = FakeChannel()
    runner(channel, {"stdout": dead}).wait()
    assert not channel.exit_status_ready()
