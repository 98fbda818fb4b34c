"""Running the local stack's managed Redis stand-in: redis-server in its own namespace
(deploy/local/redis.py builds what it runs). ``lifecycle`` starts it during ``up``, starts it
again on its own files when it stopped, and ``down`` stops whatever runs in its namespace.

Its state (configuration with the password, certificates, the append-only file) lives in the
stack's state directory and survives the server stopping, so a restarted stand-in keeps its
password, its certificate and its queued jobs, as a managed cluster does.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.local import redis
from deploy.local.database import make_tls_material
from deploy.local.machine import alive, namespace_processes, send_signal, wait_gone
from deploy.local.network import REDIS_ADDRESS, HostPlan, redis_host
from deploy.local.state import DOWN_HINT, LocalStackError, StatePaths, write_private

Say = Callable[[str], None]
START_SECONDS = 15
NETNS = redis_host().netns


@dataclass(frozen=True)
class RedisKeys:
    """What the inventory gets: the URI (a secret) and the CA its certificate chains to."""

    uri: str
    ca_cert: str


def the_server(paths: StatePaths) -> redis.RedisStandIn:
    return redis.RedisStandIn(str(paths.root / "redis"), REDIS_ADDRESS)


def create(paths: StatePaths, say: Say) -> RedisKeys:
    """A new stand-in's files: a password, a CA and a certificate for its address, the
    configuration. Called once per stack; ``start`` runs it."""
    server = the_server(paths)
    Path(server.data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    tls = make_tls_material(server.address, ca_name=redis.CA_NAME)
    write_private(Path(server.ca_cert), tls.ca_cert_pem, mode=0o644)
    write_private(Path(server.server_cert), tls.server_cert_pem, mode=0o644)
    write_private(Path(server.server_key), tls.server_key_pem)
    write_private(Path(server.config_path), redis.server_config(server, password))
    say(f"redis: a managed-Redis stand-in at {server.address}:{server.port} (TLS only, user "
        f"{redis.REDIS_USER} and a password, web hosts only)")  # fmt: skip
    return RedisKeys(redis.redis_uri(server.address, password, server.port), tls.ca_cert_pem)


def start(paths: StatePaths, namespace: HostPlan) -> None:
    """redis-server on its files, detached, in its namespace; up once it answers PING over
    TLS with its password."""
    server = the_server(paths)
    if not Path(server.config_path).exists():
        raise LocalStackError(f"redis: {server.config_path} is missing; {DOWN_HINT}")
    with Path(server.log_path).open("ab") as log:
        subprocess.Popen(
            redis.in_namespace(namespace.netns, redis.server_command(server)),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    env = {**os.environ, "REDISCLI_AUTH": _password(server)}
    deadline = time.monotonic() + START_SECONDS
    while True:
        ping = subprocess.run(
            redis.in_namespace(namespace.netns, redis.ping_command(server)),
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if ping.stdout.strip() == "PONG":
            return
        if time.monotonic() > deadline:
            last = Path(server.log_path).read_text().strip().splitlines()[-1:] or ["no log"]
            raise LocalStackError(f"redis: redis-server did not answer: {last[0]}; {DOWN_HINT}")
        time.sleep(0.1)


def _password(server: redis.RedisStandIn) -> str:
    for line in Path(server.config_path).read_text().splitlines():
        if line.startswith("requirepass "):
            return line.split(None, 1)[1].strip()
    raise LocalStackError(f"redis: {server.config_path} has no requirepass; {DOWN_HINT}")


def running() -> bool:
    return bool(namespace_processes(NETNS))


def stop() -> list[int]:
    """SIGTERM to what runs in the stand-in's namespace (the server; nothing else is started
    there): redis-server flushes its append-only file and exits."""
    pids = namespace_processes(NETNS)
    for pid in pids:
        send_signal(pid, signal.SIGTERM)
    wait_gone(pids)
    for pid in [p for p in pids if alive(p)]:
        send_signal(pid, signal.SIGKILL)
    return pids
