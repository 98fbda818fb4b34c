"""The Redis tier (infra/valkey.py): a managed Valkey cluster only when ``dropstack:redis`` is on,
in the stack's VPC and region, behind its own firewall trusting only the web tier, exported as a
secret rediss:// URI; its settings refused before any resource is declared; its alerts; and the
policy pack judging its firewall."""

from __future__ import annotations

import ssl
from dataclasses import replace
from urllib.parse import unquote, urlsplit

import pytest
import redis
from pulumi_policy import (
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import PolicyResource

from deploy.inventory import INVENTORY_KEYS, SECRET_KEYS, parse_inventory
from infra import alert_policy
from infra.firewall_rules import POSTGRES_POOL_PORT, VALKEY_PORT, web_outbound_rules
from infra.outputs import redis_uri
from infra.policy import rules
from infra.policy.policies import POLICIES
from infra.settings import SettingsError, parse_settings
from tests.infra.mock_cloud import VALKEY_PASSWORD, VPC_CIDR, VPC_ID, ProgramRun, run_program
from tests.infra.sample_config import valid_config

CLUSTER = rules.DATABASE_CLUSTER
DB_FIREWALL = rules.DATABASE_FIREWALL
MONITOR_ALERT = "digitalocean:index/monitorAlert:MonitorAlert"
WEB_TAG = "dropstack-test-web"
REDIS_NAME = "dropstack-test-redis"


@pytest.fixture(scope="module")
def with_redis() -> ProgramRun:
    run = run_program(valid_config(redis=True, region="ams3", dbPoolSize=5))
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def without_redis() -> ProgramRun:
    run = run_program(valid_config())
    assert run.error is None, run.error
    return run


def valkey_cluster(run: ProgramRun):
    (cluster,) = [r for r in run.of_type(CLUSTER) if r.inputs["engine"] == "valkey"]
    return cluster


def firewall_of(run: ProgramRun, cluster_id: str):
    (firewall,) = [r for r in run.of_type(DB_FIREWALL) if r.inputs["clusterId"] == cluster_id]
    return firewall


# --- the cluster -----------------------------------------------------------------------------


def test_the_cluster_is_valkey_8_in_the_stacks_vpc_region_and_project(with_redis):
    cluster = valkey_cluster(with_redis)
    project = with_redis.one("digitalocean:index/project:Project")
    assert cluster.name == cluster.inputs["name"] == REDIS_NAME
    assert (cluster.inputs["engine"], cluster.inputs["version"]) == ("valkey", "8")
    assert cluster.inputs["region"] == "ams3"
    assert cluster.inputs["privateNetworkUuid"] == VPC_ID
    assert cluster.inputs["projectId"] == project.id
    assert cluster.inputs["size"] == "db-s-1vcpu-1gb"
    assert cluster.inputs["nodeCount"] == 1
    # The workers' queues: a full Valkey refuses writes rather than dropping queued jobs.
    assert cluster.inputs["evictionPolicy"] == "noeviction"
    assert "dropstack:valkey:RedisTier" in cluster.parent_types


def test_the_cluster_is_protected_like_the_database_and_follows_protect_database(with_redis):
    assert valkey_cluster(with_redis).options.protect is True
    assert valkey_cluster(with_redis).options.retain_on_delete is True
    run = run_program(valid_config(redis=True, protectDatabase=False))
    assert run.error is None
    assert valkey_cluster(run).options.protect is False


def test_settings_reach_the_cluster():
    config = valid_config(
        redis=True, redisSize="db-s-2vcpu-4gb", redisNodeCount=2, redisEvictionPolicy="allkeys_lru"
    )
    run = run_program(config)
    assert run.error is None, run.error
    inputs = valkey_cluster(run).inputs
    assert (inputs["size"], inputs["nodeCount"], inputs["evictionPolicy"]) == (
        "db-s-2vcpu-4gb",
        2,
        "allkeys_lru",
    )


def test_no_cluster_no_firewall_and_an_absent_uri_when_redis_is_off(without_redis):
    assert [r.inputs["engine"] for r in without_redis.of_type(CLUSTER)] == ["pg"]
    assert len(without_redis.of_type(DB_FIREWALL)) == 1
    assert without_redis.outputs["redis_uri"] == ""
    assert "redis_uri" not in without_redis.secret_outputs
    assert not [r for r in without_redis.of_type(MONITOR_ALERT) if "redis" in r.name]


# --- its firewall: the web tier and nothing else ----------------------------------------------


def test_the_clusters_own_firewall_trusts_exactly_the_web_tier(with_redis):
    cluster = valkey_cluster(with_redis)
    firewall = firewall_of(with_redis, cluster.id)
    assert "dropstack:valkey:RedisTier" in firewall.parent_types
    assert firewall.inputs["rules"] == [{"type": "tag", "value": WEB_TAG}]
    # That tag is the web droplets' own, and only theirs.
    droplets = with_redis.of_type("digitalocean:index/droplet:Droplet")
    assert droplets and all(d.inputs["tags"] == [WEB_TAG] for d in droplets)
    # PostgreSQL keeps its own firewall: two clusters, two firewalls, one each.
    assert sorted(r.inputs["clusterId"] for r in with_redis.of_type(DB_FIREWALL)) == sorted(
        r.id for r in with_redis.of_type(CLUSTER)
    )


def test_web_droplets_may_reach_valkey_inside_the_vpc_only(with_redis, without_redis):
    def private_rules(run):
        firewall = run.one("digitalocean:index/firewall:Firewall")
        return [r for r in firewall.inputs["outboundRules"] if r.get("destinationAddresses") != ANY]

    ANY = ["0.0.0.0/0", "::/0"]
    with_ports = {r["portRange"]: r["destinationAddresses"] for r in private_rules(with_redis)}
    assert with_ports == {"25060": [VPC_CIDR], str(VALKEY_PORT): [VPC_CIDR]}
    without_ports = [r["portRange"] for r in private_rules(without_redis)]
    assert without_ports == ["25060"]


def test_a_port_shared_by_the_pool_and_valkey_is_one_rule():
    ports = [r.port_range for r in web_outbound_rules(VPC_CIDR, pool_port=POSTGRES_POOL_PORT,
                                                      redis_port=VALKEY_PORT)]  # fmt: skip
    assert ports.count(str(VALKEY_PORT)) == 1
    (shared,) = [
        r for r in web_outbound_rules(VPC_CIDR, pool_port=25061, redis_port=25061)
        if r.port_range == "25061"
    ]  # fmt: skip
    assert shared.description == "postgresql pool and valkey inside the vpc"
    assert shared.addresses == (VPC_CIDR,)


# --- the exported URI --------------------------------------------------------------------------


def test_redis_uri_is_a_secret_tls_uri_on_the_private_host(with_redis):
    cluster = valkey_cluster(with_redis)
    uri = with_redis.outputs["redis_uri"]
    assert "redis_uri" in with_redis.secret_outputs
    parts = urlsplit(uri)
    assert parts.scheme == "rediss"
    assert parts.hostname == cluster.outputs["privateHost"]
    assert parts.hostname.startswith("private-")
    assert parts.port == VALKEY_PORT
    assert (unquote(parts.username), unquote(parts.password)) == ("default", VALKEY_PASSWORD)


def test_redis_py_reads_the_uri_as_tls_with_the_exact_credentials(with_redis):
    """The client the workers run (redis-py, under RQ) parses the URI: TLS, host, credentials."""
    pool = redis.ConnectionPool.from_url(with_redis.outputs["redis_uri"])
    kwargs = pool.connection_kwargs
    assert pool.connection_class is redis.SSLConnection
    assert (kwargs["host"], kwargs["port"]) == (
        valkey_cluster(with_redis).outputs["privateHost"],
        VALKEY_PORT,
    )
    assert (kwargs["username"], kwargs["password"]) == ("default", VALKEY_PASSWORD)
    # Made, not opened: the certificate is required and must name the host it dials.
    connection = pool.make_connection()
    assert connection.cert_reqs == ssl.CERT_REQUIRED and connection.check_hostname is True


def test_redis_uri_encodes_what_a_uri_cannot_carry():
    uri = redis_uri("default", "a/b@c:d#e", "private-x.db.ondigitalocean.com", 25061)
    assert uri == "rediss://default:a%2Fb%40c%3Ad%23e@private-x.db.ondigitalocean.com:25061"


def test_the_inventory_carries_redis_uri_as_a_secret(with_redis):
    assert "redis_uri" in INVENTORY_KEYS and "redis_uri" in SECRET_KEYS
    inv = parse_inventory(dict(with_redis.outputs), "test")
    assert inv.has_redis
    assert inv.redacted()["redis_uri"] == "[secret]"
    assert VALKEY_PASSWORD not in str(inv.redacted())


def test_an_inventory_from_before_the_redis_tier_reads_as_none(without_redis):
    older = {k: v for k, v in without_redis.outputs.items() if k != "redis_uri"}
    inv = parse_inventory(older, "test")
    assert inv["redis_uri"] == "" and not inv.has_redis
    assert list(inv.data) == list(INVENTORY_KEYS)


# --- alerts ------------------------------------------------------------------------------------


def test_the_cluster_has_cpu_memory_and_disk_alerts(with_redis):
    cluster = valkey_cluster(with_redis)
    alerts = {r.name: r.inputs for r in with_redis.of_type(MONITOR_ALERT) if "-redis-" in r.name}
    assert {name.rsplit("-", 1)[-1] for name in alerts} == {"cpu", "memory", "disk"}
    assert {a["type"] for a in alerts.values()} == {
        alert_policy.DATABASE_CPU,
        alert_policy.DATABASE_MEMORY,
        alert_policy.DATABASE_DISK,
    }
    assert all(a["entities"] == [cluster.id] for a in alerts.values())
    memory = alerts["dropstack-test-alerts-redis-memory"]
    assert memory["description"] == "dropstack-test-alerts: redis memory used % > 90 over 5m"


def test_no_redis_alerts_when_alerts_are_off():
    run = run_program(valid_config(redis=True, alerts=False))
    assert run.error is None
    assert run.of_type(MONITOR_ALERT) == []


# --- settings: one line per problem, before any resource ---------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"redis": "yes"}, "dropstack:redis: 'yes' is not true or false"),
        ({"redisSize": "db-s-9vcpu-1gb"}, "dropstack:redisSize: 'db-s-9vcpu-1gb' is not a Valkey"),
        ({"redisNodeCount": 3}, "dropstack:redisNodeCount: 3 is outside 1..2"),
        ({"redisNodeCount": 2}, "dropstack:redisNodeCount: 2 nodes means a standby node"),
        (
            {"redisEvictionPolicy": "allkeys-lru"},
            "dropstack:redisEvictionPolicy: 'allkeys-lru' is not a Valkey eviction policy; "
            "use one of noeviction, allkeys_lru",
        ),
    ],
    ids=str,
)
def test_bad_redis_settings_are_one_line_each(extra, message):
    with pytest.raises(SettingsError) as caught:
        parse_settings(valid_config(**{"redis": True, **extra}))
    (error,) = caught.value.errors
    assert error.startswith(message) and "\n" not in error


def test_bad_redis_settings_stop_the_program_before_any_resource():
    run = run_program(valid_config(redis=True, redisSize="db-s-9vcpu-1gb", redisNodeCount=5))
    assert run.error is not None
    assert run.resources == []
    lines = str(run.error).splitlines()
    assert [line.split(":")[1] for line in lines] == ["redisSize", "redisNodeCount"]


def test_redis_defaults_are_off_1gb_one_node_noeviction():
    settings = parse_settings(valid_config())
    assert (settings.redis, settings.redis_size) == (False, "db-s-1vcpu-1gb")
    assert (settings.redis_node_count, settings.redis_eviction_policy) == (1, "noeviction")
    # A standby on a 2 GB plan is allowed.
    assert parse_settings(valid_config(redisSize="db-s-1vcpu-2gb", redisNodeCount=2)).redis_size


# --- the policy pack: each cluster its own firewall, trusting only the web tier -----------------


def stack_reports(resources) -> list[tuple[str, str]]:
    args = StackValidationArgs(
        [PolicyResource(r.typ, r.outputs, r.urn, r.name, None, None, None, [], {})
         for r in resources]
    )  # fmt: skip
    reports = []
    for policy in POLICIES:
        if isinstance(policy, StackValidationPolicy):
            policy.validate(args, lambda message, urn, p=policy: reports.append((p.name, message)))
    return reports


def test_the_program_with_redis_complies_with_the_pack(with_redis):
    resources = [r for r in with_redis.resources if r.typ.startswith("digitalocean:")]
    assert stack_reports(resources) == []


def test_the_pack_catches_a_valkey_cluster_without_its_own_firewall(with_redis):
    redis_firewall = firewall_of(with_redis, valkey_cluster(with_redis).id)
    resources = [
        r
        for r in with_redis.resources
        if r.typ.startswith("digitalocean:") and r is not redis_firewall
    ]
    reports = stack_reports(resources)
    assert reports == [
        ("database-trusts-this-stacks-droplets",
         "this database cluster has no database firewall of its own"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "policy"),
    [
        ({"type": "tag", "value": "someone-else"}, "database-trusts-this-stacks-droplets"),
        ({"type": "ip_addr", "value": "10.0.0.0/8"}, "database-firewall-tags-only"),
        ({"type": "droplet", "value": "400001"}, "database-firewall-tags-only"),
    ],
    ids=str,
)
def test_the_pack_catches_a_valkey_firewall_trusting_anything_but_the_web_tier(
    with_redis, rule, policy
):
    firewall = firewall_of(with_redis, valkey_cluster(with_redis).id)
    widened = replace(
        firewall, outputs={**firewall.outputs, "rules": [*firewall.outputs["rules"], rule]}
    )
    resources = [
        widened if r is firewall else r
        for r in with_redis.resources
        if r.typ.startswith("digitalocean:")
    ]
    reports = stack_reports(resources) + resource_reports(widened)
    assert [name for name, _ in reports] == [policy]


def resource_reports(resource) -> list[tuple[str, str]]:
    reports = []
    for policy in POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            args = ResourceValidationArgs(
                resource.typ, resource.outputs, resource.urn, resource.name, None, None
            )
            policy.validate(args, lambda message, urn, p=policy: reports.append((p.name, message)))
    return reports
