"""What the host tests do from this machine, outside the host: TCP connects, HTTP requests and
SSH logins, each reduced to a plain result a test can assert on and print.

Nothing here knows an address: callers pass the inventory's.
"""

from __future__ import annotations

import errno
import http.client
import json
import shlex
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import paramiko

from deploy.provision.tls import SYSTEM_CA_BUNDLE

CONNECT_TIMEOUT_SECONDS = 3.0

ACCEPTED = "accepted"
NOT_OFFERED = "method not offered"


def tcp_outcome(address: str, port: int, timeout: float = CONNECT_TIMEOUT_SECONDS) -> str:
    """What a TCP connect from here to address:port gets, in words an operator can act on."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return ACCEPTED
    except ConnectionRefusedError:
        return "refused (the host answered with a reset: nothing listening, or a reject rule)"
    except TimeoutError:
        return f"timed out after {timeout:.0f}s (dropped by a firewall)"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable (rejected on the way by a firewall: ICMP admin-prohibited)"
        return f"failed: {exc.strerror or exc}"


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass(frozen=True)
class Site:
    """The site as one web host serves it: requests go to that host's address, with the name
    the site answers to (the domain, else the address) as Host header and TLS server name."""

    address: str
    name: str
    tls: bool
    # The CA bundle HTTPS is verified against, given explicitly: the environment's
    # SSL_CERT_FILE is for package registries, not for this site.
    cafile: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def get(self, path: str, headers: dict[str, str] | None = None, timeout=10.0) -> Response:
        return self.request("GET", path, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout=10.0) -> Response:  # fmt: skip
        conn = self._connection(timeout)
        try:
            conn.request(
                method, path, body=body,
                headers={"Host": self.name, "Connection": "close", **(headers or {})},
            )  # fmt: skip
            response = conn.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            conn.close()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if not self.tls:
            return http.client.HTTPConnection(self.address, 80, timeout=timeout)
        return _PinnedHTTPSConnection(self.address, self.name, timeout=timeout, cafile=self.cafile)

    def get_http(self, path: str, timeout: float = 10.0) -> Response:
        """GET over plain HTTP on port 80 with the site's name, whatever ``tls`` says."""
        conn = http.client.HTTPConnection(self.address, 80, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": self.name, "Connection": "close"})
            response = conn.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            conn.close()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to one host's address, verifying the certificate for the site's name (SNI), so each
    web host is checked on its own even behind a load balancer's DNS name."""

    def __init__(self, address: str, server_name: str, timeout: float, cafile: str | None):
        context = ssl.create_default_context(cafile=cafile or SYSTEM_CA_BUNDLE)
        super().__init__(server_name, 443, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def raw_http_exchange(address: str, host_header: str, timeout: float = 10) -> bytes:
    """Everything port 80 sends back to a bare GET with this Host header, until it closes."""
    request = f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode()
    received = b""
    with socket.create_connection((address, 80), timeout=timeout) as sock:
        sock.sendall(request)
        while chunk := sock.recv(4096):
            received += chunk
    return received


@dataclass(frozen=True)
class SshTarget:
    """How this machine reaches a host's sshd: its address, the key and the known host keys."""

    address: str
    key_path: str | None
    known_hosts: Path | None

    def client(self) -> paramiko.SSHClient:
        """A client that checks the host key against known_hosts when there is one."""
        client = paramiko.SSHClient()
        if self.known_hosts:
            client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            # No known_hosts beside the inventory: the user's own, and a warning for a new key,
            # as testinfra does (Fabric, which deploys, even adds new keys silently).
            client.load_system_host_keys()
            client.set_missing_host_key_policy(paramiko.WarningPolicy())  # noqa: S507
        return client

    def connect(self, user: str, **auth) -> paramiko.SSHClient:
        """Log in as ``user``; ``auth`` overrides the key (e.g. ``password=...``)."""
        client = self.client()
        if not auth:
            auth = {"key_filename": self.key_path} if self.key_path else {"allow_agent": True}
        options = {"look_for_keys": False, "allow_agent": False, **auth}
        client.connect(
            self.address,
            username=user,
            timeout=10,
            banner_timeout=15,
            auth_timeout=15,
            **options,
        )
        return client

    def login_outcome(self, user: str, **auth) -> str:
        """``ACCEPTED`` when the login succeeds, else how sshd refused it: ``NOT_OFFERED`` when
        it does not even offer the method (the answer to a password attempt on a keys-only
        server), else the credentials were tried and rejected."""
        try:
            self.connect(user, **auth).close()
            return ACCEPTED
        except paramiko.BadAuthenticationType as exc:
            return f"{NOT_OFFERED}; sshd offers only: {', '.join(exc.allowed_types)}"
        except paramiko.AuthenticationException as exc:
            return f"method offered, credentials rejected: {exc}"


def python_as_app(host, settings, script: str, *args: str) -> dict:
    """Run a Python ``script`` on the host as the app runs: as the app user, with the app's
    EnvironmentFile read by systemd, with the live release's interpreter; its last line of
    output, as JSON (the scripts print one JSON object and never a secret)."""
    python = f"{settings.paths.current}/.venv/bin/python"
    command = shlex.join(
        [
            "sudo", "-n", "systemd-run", "--quiet", "--pipe", "--wait", "--collect",
            "-p", f"User={settings.app_user}",
            "-p", f"EnvironmentFile={settings.env_file}",
            python, "-c", script, *args,
        ]
    )  # fmt: skip
    result = host.run(command)
    assert result.rc == 0 and result.stdout.strip(), (
        f"could not run the check as {settings.app_user} with {python}: "
        f"{result.stderr.strip()[-300:]}"
    )
    return json.loads(result.stdout.strip().splitlines()[-1])
