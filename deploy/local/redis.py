"""The local stand-in for DigitalOcean's managed Valkey (the Redis-compatible engine), as data.

Like the managed cluster it answers on port 25061 with TLS only (no plain-text port at all),
asks for the user ``default`` and a password, and is reachable on the private network from the
web hosts alone (its own firewall chain, deploy/local/nftables.py). The server is Debian's
``redis-server`` 7.0; Valkey 8 speaks the same protocol and commands (docs/local-droplet.md
lists what differs).

The certificate: DigitalOcean's Valkey presents a Let's Encrypt certificate for the cluster's
name, which clients verify against the system trust store, so Pulumi exports no CA for it. The
stand-in has an address and no public name, so its certificate comes from a CA made for the
stack (as the local database's does) and the inventory carries that CA as ``redis_ca_cert``;
provisioning puts it on the hosts and names it in REDIS_URL.

Pure builders only; deploy/local/redis_setup.py runs them in the stand-in's namespace.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import quote

from infra.firewall_rules import REDIS_PORT  # DigitalOcean's: TLS on 25061

REDIS_USER = "default"  # DigitalOcean hands out the default user's password
CA_NAME = "dropstack local Redis CA"
SERVER = "redis-server"


@dataclass(frozen=True)
class RedisStandIn:
    """Where the stand-in listens and keeps its files (a directory of the stack's state)."""

    directory: str
    address: str
    port: int = REDIS_PORT

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.address)  # ValueError names the bad value
        if not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise ValueError(f"redis port: {self.port!r} is not a TCP port (1..65535)")

    @property
    def config_path(self) -> str:
        return f"{self.directory}/redis.conf"

    @property
    def ca_cert(self) -> str:
        return f"{self.directory}/ca.crt"

    @property
    def server_cert(self) -> str:
        return f"{self.directory}/server.crt"

    @property
    def server_key(self) -> str:
        return f"{self.directory}/server.key"

    @property
    def data_dir(self) -> str:
        return f"{self.directory}/data"

    @property
    def log_path(self) -> str:
        return f"{self.directory}/redis.log"


def server_config(r: RedisStandIn, password: str) -> str:
    """redis.conf: TLS only on the private address, a password for ``default``, jobs kept on
    disk. The password is what ``secrets.token_urlsafe`` makes: no quoting needed."""
    if not password or not all(ch.isalnum() or ch in "-_" for ch in password):
        raise ValueError("redis password: must be non-empty URL-safe base64 (A-Z a-z 0-9 - _)")
    return f"""\
# Written by `fab local.up`: the local stand-in for a managed Valkey (Redis) cluster.
bind {r.address}
# No plain-text listener at all: TLS on the managed port only.
port 0
tls-port {r.port}
tls-cert-file {r.server_cert}
tls-key-file {r.server_key}
tls-ca-cert-file {r.ca_cert}
# Clients prove themselves with the password, not a certificate (as on DigitalOcean).
tls-auth-clients no
tls-protocols "TLSv1.2 TLSv1.3"
requirepass {password}
protected-mode yes
# A job queue must not lose what it was given: every write in the append-only file, and no key
# evicted when memory runs out (writes fail instead).
dir {r.data_dir}
appendonly yes
appendfsync everysec
maxmemory-policy noeviction
daemonize no
logfile ""
"""


def redis_uri(address: str, password: str, port: int = REDIS_PORT) -> str:
    """The URI a managed Valkey cluster hands out: rediss:// (TLS), user ``default``."""
    return f"rediss://{REDIS_USER}:{quote(password, safe='')}@{address}:{port}"


def in_namespace(netns: str, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *command]


def server_command(r: RedisStandIn) -> list[str]:
    return [SERVER, r.config_path]


def ping_command(r: RedisStandIn) -> list[str]:
    """A PING over TLS, verified against the stand-in's CA; the password comes from
    REDISCLI_AUTH in the environment, never the command line. Prints PONG when ready."""
    return ["redis-cli", "--tls", "--cacert", r.ca_cert, "-h", r.address, "-p", str(r.port),
            "--user", REDIS_USER, "ping"]  # fmt: skip
