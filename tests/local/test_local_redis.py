"""The managed-Redis stand-in: its configuration, URI, commands, place in the network and the
firewall, and the generated configuration run by a real redis-server on loopback."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ConnectionError

from deploy.inventory import parse_inventory
from deploy.local.database import make_tls_material
from deploy.local.network import REDIS_ADDRESS, VPC_CIDR, largest_plan, plan_stack
from deploy.local.outputs import local_inventory
from deploy.local.redis import (
    CA_NAME,
    REDIS_PORT,
    RedisStandIn,
    in_namespace,
    ping_command,
    redis_uri,
    server_config,
)
from infra.firewall_rules import web_outbound_rules
from tests.local.test_local_nftables import chains, make

AUTH = "horse-battery-staple-1"  # the requirepass value of these tests


def config_lines(text: str) -> dict[str, str]:
    """directive -> value, comments and blank lines left out."""
    pairs = (line.split(None, 1) for line in text.splitlines() if line and line[0] != "#")
    return {key: value for key, value in pairs}


def test_tls_only_on_the_managed_port_of_the_private_address():
    conf = config_lines(server_config(RedisStandIn("/state/redis", REDIS_ADDRESS), AUTH))
    assert conf["bind"] == "198.18.1.101"
    assert conf["port"] == "0"  # no plain-text listener at all
    assert conf["tls-port"] == "25061" == str(REDIS_PORT)
    assert conf["tls-cert-file"] == "/state/redis/server.crt"
    assert conf["tls-key-file"] == "/state/redis/server.key"
    assert conf["tls-auth-clients"] == "no"  # a password, not a client certificate
    assert conf["tls-protocols"] == '"TLSv1.2 TLSv1.3"'
    assert conf["requirepass"] == AUTH


def test_queued_jobs_are_kept_and_never_evicted():
    conf = config_lines(server_config(RedisStandIn("/state/redis", REDIS_ADDRESS), AUTH))
    assert conf["dir"] == "/state/redis/data"
    assert (conf["appendonly"], conf["maxmemory-policy"]) == ("yes", "noeviction")


@pytest.mark.parametrize("password", ["", "has space", 'quo"te', "new\nline"])
def test_a_password_that_would_need_quoting_is_refused(password):
    with pytest.raises(ValueError, match="redis password"):
        server_config(RedisStandIn("/s", REDIS_ADDRESS), password)


@pytest.mark.parametrize(
    ("address", "port", "message"),
    [("not-an-ip", 25061, "not-an-ip"), ("198.18.1.101", 0, "redis port: 0")],
)
def test_a_bad_address_or_port_is_refused(address, port, message):
    with pytest.raises(ValueError, match=message):
        RedisStandIn("/s", address, port)


def test_the_uri_is_what_digitalocean_hands_out():
    assert redis_uri("198.18.1.101", AUTH) == f"rediss://default:{AUTH}@198.18.1.101:25061"
    encoded = urlsplit(redis_uri("10.0.0.5", "a/b+c"))
    assert (encoded.username, encoded.password) == ("default", "a%2Fb%2Bc")


def test_the_readiness_ping_verifies_tls_and_keeps_the_password_off_the_command_line():
    server = RedisStandIn("/state/redis", REDIS_ADDRESS)
    command = in_namespace("ds-redis", ping_command(server))
    assert command[:4] == ["ip", "netns", "exec", "ds-redis"]
    assert command[5:8] == ["--tls", "--cacert", "/state/redis/ca.crt"]
    assert command[-1] == "ping" and not any(AUTH in part for part in command)


def test_the_stand_in_has_a_vpc_address_only_in_every_stack():
    for plan in (plan_stack(1), plan_stack(3), plan_stack(2, acme=True), largest_plan()):
        assert plan.redis is not None and plan.redis in plan.namespaces
        assert plan.redis not in plan.hosts  # a process in a namespace, not a container
    redis = plan_stack(1).redis
    assert (redis.public_ip, redis.private_ip, redis.netns) == (None, "198.18.1.101", "ds-redis")
    assert [link.root_name for link in redis.links] == ["ds-redis-vpc"]


def test_only_the_web_tier_reaches_the_tls_port_and_the_stand_in_opens_nothing():
    rules = chains(make(web_count=2))
    assert rules["redis_inbound"] == [
        "tcp dport 25061 ip saddr { 198.18.1.11, 198.18.1.12 } accept"
        ' comment "trusted sources: the web tier"',
        "reject with icmpx type admin-prohibited",
    ]
    assert rules["redis_outbound"] == [
        'reject with icmpx type admin-prohibited comment "a managed Redis opens nothing"'
    ]
    # How its chains are reached (this machine's packets too, so it is filtered like anyone
    # else): tests/local/test_local_nftables.py, for every service.


def test_web_hosts_may_open_the_redis_port_inside_the_vpc_only():
    rules = web_outbound_rules(VPC_CIDR, redis_port=REDIS_PORT)
    (redis,) = [r for r in rules if r.description == "valkey inside the vpc"]
    assert (redis.protocol, redis.ports, redis.addresses) == ("tcp", (25061, 25061), (VPC_CIDR,))
    # With a connection pool on the same port the pool's rule already opens it.
    pooled = web_outbound_rules(VPC_CIDR, pool_port=25061, redis_port=REDIS_PORT)
    assert [r.ports for r in pooled].count((25061, 25061)) == 1


def test_the_inventory_carries_the_uri_as_a_secret_and_the_ca():
    plan = plan_stack(1)
    uri = redis_uri(REDIS_ADDRESS, AUTH)
    inv = local_inventory(
        plan, key_path=Path("/k"), public_key="ssh-ed25519 AAAA", app_password="a",
        admin_password="b", ca_cert_pem="DBCA", source="test", redis_uri=uri,
        redis_ca_cert="REDISCA",
    )  # fmt: skip
    assert (inv["redis_uri"], inv["redis_ca_cert"]) == (uri, "REDISCA")
    assert inv.redacted()["redis_uri"] == "[secret]"
    again = parse_inventory({k: v for k, v in inv.data.items() if not k.startswith("redis")}, "t")
    # A stack exported before it had a Redis still loads: no Redis ("").
    assert again.data["redis_uri"] == "" and "redis_ca_cert" not in again.data


# --- the generated configuration, run by a real redis-server on loopback ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """redis-server with server_config's file, on 127.0.0.1 (the stack's runs on its VPC
    address in its namespace), certificates from the same CA maker as the stack's."""
    directory = tmp_path_factory.mktemp("redis")
    server = RedisStandIn(str(directory), "127.0.0.1", free_port())
    (directory / "data").mkdir()
    tls = make_tls_material("127.0.0.1", ca_name=CA_NAME)
    for path, text in ((server.ca_cert, tls.ca_cert_pem), (server.server_cert,
                       tls.server_cert_pem), (server.server_key, tls.server_key_pem)):  # fmt: skip
        Path(path).write_text(text)
    Path(server.config_path).write_text(server_config(server, AUTH))
    process = subprocess.Popen(["redis-server", server.config_path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 10
    while socket.socket().connect_ex(("127.0.0.1", server.port)) != 0:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "redis-server did not listen within 10 s"
        time.sleep(0.05)
    yield server
    process.terminate()
    process.wait(timeout=10)


def test_a_tls_client_with_the_password_and_the_ca_gets_pong(stand_in):
    url = f"{redis_uri(stand_in.address, AUTH, stand_in.port)}?ssl_ca_certs={stand_in.ca_cert}"
    client = Redis.from_url(url, socket_timeout=5)
    assert client.ping() is True
    assert client.acl_whoami() in ("default", b"default")


def test_a_wrong_password_is_refused(stand_in):
    url = f"{redis_uri(stand_in.address, 'wrong', stand_in.port)}?ssl_ca_certs={stand_in.ca_cert}"
    with pytest.raises(AuthenticationError):
        Redis.from_url(url, socket_timeout=5).ping()


def test_plain_text_gets_no_answer(stand_in):
    client = Redis(host=stand_in.address, port=stand_in.port, password=AUTH,
                   username="default", socket_timeout=5)  # fmt: skip
    with pytest.raises(ConnectionError):
        client.ping()


def test_a_client_without_the_ca_does_not_trust_the_server(stand_in):
    client = Redis.from_url(redis_uri(stand_in.address, AUTH, stand_in.port), socket_timeout=5)
    with pytest.raises(ConnectionError, match=re.compile("certificate verify failed", re.I)):
        client.ping()
