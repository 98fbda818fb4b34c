"""The managed-Redis stand-in on a fleet: every web host reaches its TLS port, the load
balancer (which holds a VPC address too) does not, and neither does this machine."""

from __future__ import annotations

from urllib.parse import urlsplit

from deploy.local.network import plan_stack
from tests.host.probes import tcp_outcome
from tests.redis_probe import tcp_in_namespace

# From a web host, over SSH: bash's /dev/tcp is a bare TCP connect, enough to show the port is
# open to it (tests/host and tests/local speak TLS and the password to it).
CONNECT = 'timeout 5 bash -c \'exec 3<>/dev/tcp/"$0"/"$1"\' {host} {port} && echo accepted'


def redis_address(inventory) -> tuple[str, int]:
    uri = urlsplit(inventory["redis_uri"])
    return uri.hostname, uri.port


def test_every_web_host_reaches_the_redis_port(inventory, conn):
    host, port = redis_address(inventory)
    for web in inventory.web_hosts:
        result = conn(web.name).run(CONNECT.format(host=host, port=port), hide=True, warn=True)
        assert result.stdout.strip() == "accepted", f"{web.name}: {result.stderr.strip()}"


def test_the_load_balancer_and_this_machine_do_not(inventory):
    host, port = redis_address(inventory)
    lb = plan_stack(len(inventory.web_hosts), load_balancer=True).lb
    assert tcp_in_namespace(lb.netns, host, port) == "unreachable"
    assert tcp_outcome(host, port).startswith("unreachable")
