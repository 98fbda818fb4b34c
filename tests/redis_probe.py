"""Reaching the stack's Redis from somewhere, reduced to a plain result a test can assert on.

``PING_SCRIPT`` needs nothing but Python's standard library, so it runs on a bare host image
and in any namespace of this machine: it connects, with TLS verified against a CA file or in
plain text, sends ``AUTH default <password>`` and ``PING`` and prints one JSON line with the
server's first two replies (``+OK``, ``+PONG`` when all is well). The password travels on
stdin, never on a command line. ``tcp_in_namespace`` is a bare TCP connect from a namespace.
"""

from __future__ import annotations

import json
import subprocess

PING_SCRIPT = r"""
import json, socket, ssl, sys
host, port, cafile, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
password = sys.stdin.readline().strip()

def command(*words):
    text = "*%d\r\n" % len(words)
    for word in words:
        text += "$%d\r\n%s\r\n" % (len(word.encode()), word)
    return text.encode()

try:
    sock = socket.create_connection((host, port), timeout=5)
    version = None
    if mode == "tls":
        sock = ssl.create_default_context(cafile=cafile).wrap_socket(sock, server_hostname=host)
        version = sock.version()
    sock.sendall(command("AUTH", "default", password) + command("PING"))
    data = b""
    while data.count(b"\r\n") < 2:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    replies = [r for r in data.decode(errors="replace").split("\r\n") if r][:2]
    print(json.dumps({"connected": True, "tls": version, "replies": replies}))
except OSError as exc:
    print(json.dumps({"connected": False, "error": type(exc).__name__, "message": str(exc)}))
"""


def ping_command(python: str, address: str, port: int, cafile: str, mode: str) -> list[str]:
    """``mode``: "tls" (verified against ``cafile``) or "plain"; feed the password on stdin."""
    return [python, "-c", PING_SCRIPT, address, str(port), cafile, mode]


def parse(output: str) -> dict:
    lines = output.strip().splitlines()
    assert lines, "the Redis probe printed nothing"
    return json.loads(lines[-1])


def tcp_in_namespace(netns: str, address: str, port: int) -> str:
    """ "accepted", "refused" (a reset) or "unreachable" (a firewall's reject), from inside a
    network namespace of this machine (the load balancer's, the CA's)."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()\n"
        "    print('accepted')\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
        "except OSError as exc:\n"
        "    print('unreachable' if exc.errno == 113 else f'failed: {exc}')\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "python3", "-c", probe, address, str(port)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.stdout.strip() or f"probe failed: {done.stderr.strip()[-200:]}"
