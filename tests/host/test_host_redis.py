"""The workers and their Redis, on the host: REDIS_URL names a TLS Redis, the workers run from
the live slot's release, the app's own client reaches the Redis over TLS with its password,
plain text gets nothing, and (on the local stack) only the web hosts can reach it at all.

The checks run on the host as the app runs: as the app user, with the app's EnvironmentFile,
with the live release's Python and redis-py. The URL and password are never printed.
With workers off (``app.worker_count`` 0) the host must have no REDIS_URL, and the Redis checks
say why they do not apply; bin/test runs this suite with workers on.
"""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

import pytest

from deploy.local.network import plan_stack
from tests.host.probes import python_as_app
from tests.redis_probe import tcp_in_namespace

# argv[1]: "as-configured" (the app's REDIS_URL) or "plaintext" (redis://, same host and port).
CONNECT = r"""
import json, os, sys, urllib.parse
from redis import Redis

url = os.environ.get("REDIS_URL") or ""
parts = urllib.parse.urlsplit(url)
password = urllib.parse.unquote(parts.password or "")
query = dict(urllib.parse.parse_qsl(parts.query))
facts = {"scheme": parts.scheme, "user": parts.username, "port": parts.port,
         "cert_reqs": query.get("ssl_cert_reqs"), "ca_file": query.get("ssl_ca_certs")}
if sys.argv[1] == "plaintext":
    url = urllib.parse.urlunsplit(("redis", parts.netloc, parts.path, "", ""))
try:
    client = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    pong = client.ping()
    whoami = client.acl_whoami()
    print(json.dumps({**facts, "connected": True, "pong": pong, "whoami": str(whoami)}))
except Exception as exc:
    message = " ".join(str(exc).split())
    if password:
        message = message.replace(password, "***")
    print(json.dumps({**facts, "connected": False, "error": type(exc).__name__,
                      "message": message}))
"""


@pytest.fixture
def workers(settings):
    """The contract's worker count; the Redis checks apply only with workers."""
    if not settings.app.has_workers:
        pytest.skip(
            "workers are off (app.worker_count 0), so the app has no REDIS_URL; bin/test runs "
            "this suite with FABRIC_DROPSTACK_APP_WORKER_COUNT=2"
        )
    return settings.app.worker_count


def connect_as_app(host, settings, mode: str) -> dict:
    return python_as_app(host, settings, CONNECT, mode)


def env_keys(host, settings) -> set[str]:
    """The names (never the values) in the app's environment file."""
    text = host.run(f"sudo -n cat {shlex.quote(settings.env_file)}").stdout
    return {line.split("=", 1)[0] for line in text.splitlines() if "=" in line}


def test_redis_url_is_set_exactly_when_workers_are(host, settings):
    has_url = "REDIS_URL" in env_keys(host, settings)
    assert has_url == settings.app.has_workers, (
        f"app.worker_count is {settings.app.worker_count} but {settings.env_file} "
        f"{'has' if has_url else 'lacks'} REDIS_URL; run `fab provision`"
    )


def test_redis_url_names_a_verified_tls_redis(host, settings, inventory, workers):
    facts = connect_as_app(host, settings, "as-configured")
    assert facts["scheme"] == "rediss", "REDIS_URL must be rediss:// (TLS); the Redis is TLS only"
    assert (facts["user"], facts["cert_reqs"]) == ("default", "required")
    uri = urlsplit(inventory["redis_uri"])
    assert facts["port"] == uri.port
    ca = inventory.data.get("redis_ca_cert")
    assert facts["ca_file"] == (settings.paths.redis_ca_cert if ca else None)
    if ca:
        on_host = host.run(f"sudo -n cat {shlex.quote(settings.paths.redis_ca_cert)}").stdout
        assert on_host == ca, f"{settings.paths.redis_ca_cert} is not the inventory's CA"


def test_the_app_reaches_redis_over_tls_with_its_password(host, settings, workers):
    outcome = connect_as_app(host, settings, "as-configured")
    assert outcome["connected"], (
        f"the app cannot reach Redis with its REDIS_URL: {outcome['error']}: {outcome['message']}"
    )
    assert outcome["pong"] is True and outcome["whoami"] == "default"


def test_redis_gives_plain_text_nothing(host, settings, workers):
    outcome = connect_as_app(host, settings, "plaintext")
    assert not outcome["connected"], (
        "Redis answered a plain-text client: passwords and jobs would cross the network in clear"
    )


def test_the_workers_run_from_the_live_slots_release(host, settings, live_slot, workers):
    layout = settings.paths
    release = host.run(f"readlink -f {shlex.quote(layout.slot(live_slot))}").stdout.strip()
    for unit in layout.worker_units(live_slot, workers):
        state = host.run(f"systemctl is-active {unit}").stdout.strip()
        assert state == "active", f"{unit} is {state}, not active"
        pid = host.run(f"systemctl show -p MainPID --value {unit}").stdout.strip()
        cwd = host.run(f"sudo -n readlink /proc/{pid}/cwd").stdout.strip()
        assert cwd == release, f"{unit} runs in {cwd}, not the live slot's release {release}"


def test_only_the_web_hosts_reach_redis_on_the_local_stack(inventory, workers):
    """From the namespaces beside the web hosts (the load balancer, the ACME CA) the Redis
    port is closed by its firewall; a Pulumi stack's cloud firewall is DigitalOcean's to
    enforce (tests/infra checks the rules)."""
    if inventory["stack"] != "local":
        pytest.skip("the other namespaces exist on the local stack only")
    plan = plan_stack(
        len(inventory.web_hosts),
        load_balancer=bool(inventory["load_balancer_ip"]),
        acme=bool(inventory.data.get("acme_directory")),
    )
    others = [n for n in (plan.lb, plan.acme) if n]
    if not others:
        pytest.skip("this local stack has neither a load balancer nor a CA namespace")
    uri = urlsplit(inventory["redis_uri"])
    for namespace in others:
        outcome = tcp_in_namespace(namespace.netns, uri.hostname, uri.port)
        assert outcome == "unreachable", f"from {namespace.name}: {outcome}"
