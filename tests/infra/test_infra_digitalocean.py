"""What DigitalOcean does that the mock runtime cannot show, pinned on the real program: data
protection, key rotation without replacement, creation order, the whole inbound rule set, the
load balancer's policy data, and keys already in the account."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from infra.firewall_rules import ANYWHERE
from infra.load_balancer_policy import HEALTH_CHECK, droplet_inbound_rules, forwarding_rules
from infra.settings import ssh_key_fingerprint
from tests.infra.mock_cloud import ProgramRun, run_program
from tests.infra.sample_config import ADMIN_CIDRS, ADMIN_KEY, SECOND_KEY, valid_config

DROPLET = "digitalocean:index/droplet:Droplet"
FIREWALL = "digitalocean:index/firewall:Firewall"
LOAD_BALANCER = "digitalocean:index/loadBalancer:LoadBalancer"
DB_CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster"
DB_DATABASE = "digitalocean:index/databaseDb:DatabaseDb"
DB_USER = "digitalocean:index/databaseUser:DatabaseUser"
DB_FIREWALL = "digitalocean:index/databaseFirewall:DatabaseFirewall"
SSH_KEY = "digitalocean:index/sshKey:SshKey"
SPACES_BUCKET = "digitalocean:index/spacesBucket:SpacesBucket"
# What holds data: the database and the off-site backups of it.
DATA = (DB_CLUSTER, DB_DATABASE, DB_USER, SPACES_BUCKET)
WORLD = tuple(ANYWHERE)

SCENARIOS = {
    "one": {},
    "lb-domain": {"webCount": 3, "domain": "example.com"},
    "pool": {"dbPoolSize": 5, "dbSize": "db-s-2vcpu-4gb", "dbNodeCount": 3},
}


@pytest.fixture(scope="module")
def runs() -> dict[str, ProgramRun]:
    results = {name: run_program(valid_config(**extra)) for name, extra in SCENARIOS.items()}
    assert {name: run.error for name, run in results.items()} == dict.fromkeys(SCENARIOS)
    return results


def inbound_set(run: ProgramRun) -> set[tuple]:
    """Every inbound rule as (protocol, port range, source kind, sources)."""
    found = set()
    for rule in run.one(FIREWALL).inputs["inboundRules"]:
        sources = {
            key: tuple(value)
            for key, value in rule.items()
            if key.startswith("source") and value is not None
        }
        found.add((rule["protocol"], rule.get("portRange", ""), tuple(sorted(sources.items()))))
    return found


# --- the whole inbound rule set, pinned: any extra port open to anyone fails here --------------


def test_inbound_rules_without_load_balancer_are_exactly(runs):
    for name in ("one", "pool"):
        assert inbound_set(runs[name]) == {
            ("tcp", "22", (("sourceAddresses", tuple(ADMIN_CIDRS)),)),
            ("tcp", "80", (("sourceAddresses", WORLD),)),
            ("tcp", "443", (("sourceAddresses", WORLD),)),
            ("icmp", "", (("sourceAddresses", WORLD),)),
        }, name


def test_inbound_rules_behind_the_load_balancer_are_exactly(runs):
    run = runs["lb-domain"]
    lb = (("sourceLoadBalancerUids", (run.one(LOAD_BALANCER).id,)),)
    assert inbound_set(run) == {
        ("tcp", "22", (("sourceAddresses", tuple(ADMIN_CIDRS)),)),
        ("tcp", "80", lb),
        ("tcp", "443", lb),
        ("icmp", "", (("sourceAddresses", WORLD),)),
    }
    # The same data the local stand-in reads (load_balancer_policy), so the two cannot drift.
    assert [(r.protocol, r.port_range) for r in droplet_inbound_rules(tuple(ADMIN_CIDRS))] == [
        ("tcp", "22"),
        ("tcp", "80"),
        ("tcp", "443"),
        ("icmp", ""),
    ]


def test_every_droplet_is_covered_by_the_firewall(runs):
    for run in runs.values():
        covered = set(run.one(FIREWALL).inputs["tags"])
        assert all(set(d.inputs["tags"]) & covered for d in run.of_type(DROPLET))


# --- data protection ----------------------------------------------------------------------------


@pytest.mark.parametrize("typ", DATA)
def test_data_is_protected_and_retained_by_default(runs, typ):
    for run in runs.values():
        options = run.one(typ).options
        assert (options.protect, options.retain_on_delete) == (True, True)


def test_only_the_data_is_protected(runs):
    protected = {r.typ for r in runs["lb-domain"].resources if r.options.protect}
    assert protected == set(DATA)


def test_protection_is_switched_off_deliberately():
    run = run_program(valid_config(protectDatabase="false"))
    assert run.error is None
    for typ in DATA:
        assert (run.one(typ).options.protect, run.one(typ).options.retain_on_delete) == (
            False,
            False,
        )


def test_cluster_name_depends_on_the_stack_only():
    """The name forces a replacement, so no setting may change it."""
    names = {
        run_program(valid_config(**extra), stack="prod").one(DB_CLUSTER).inputs["name"]
        for extra in ({}, {"region": "ams3"}, {"dbSize": "db-s-2vcpu-4gb"}, {"dbVersion": "17"})
    }
    assert names == {"dropstack-prod-db"}


# --- key rotation never replaces a droplet ------------------------------------------------------


def test_droplets_ignore_their_boot_time_keys_and_user_data(runs):
    for run in runs.values():
        for droplet in run.of_type(DROPLET):
            assert set(droplet.options.ignore_changes) == {"sshKeys", "userData"}
            assert droplet.inputs["gracefulShutdown"] is True


def test_changing_the_keys_changes_no_input_that_replaces_a_droplet():
    before = run_program(valid_config()).of_type(DROPLET)
    after = run_program(valid_config(sshPublicKeys=[SECOND_KEY])).of_type(DROPLET)
    ignored = {"sshKeys", "userData"}
    for old, new in zip(before, after, strict=True):
        assert old.inputs["userData"] != new.inputs["userData"], "the test must change something"
        assert {k: v for k, v in old.inputs.items() if k not in ignored} == {
            k: v for k, v in new.inputs.items() if k not in ignored
        }


# --- creation order: nothing is born outside its firewall ---------------------------------------


def test_droplets_wait_for_their_firewall(runs):
    for run in runs.values():
        firewall = run.one(FIREWALL).urn
        assert all(firewall in d.options.dependencies for d in run.of_type(DROPLET))


@pytest.mark.parametrize("typ", [DB_DATABASE, DB_USER])
def test_app_database_and_user_wait_for_the_database_firewall(runs, typ):
    for run in runs.values():
        assert run.one(DB_FIREWALL).urn in run.one(typ).options.dependencies


# --- the load balancer reads its behaviour from load_balancer_policy ---------------------------


def test_the_health_check_is_within_what_digitalocean_accepts():
    """The limits DigitalOcean's control panel offers (both times 3-300 s, both thresholds
    2-10; its OpenAPI spec states none), and a timeout that ends before the next check."""
    assert 3 <= HEALTH_CHECK.check_interval_seconds <= 300
    assert 3 <= HEALTH_CHECK.response_timeout_seconds <= 300
    assert 2 <= HEALTH_CHECK.healthy_threshold <= 10
    assert 2 <= HEALTH_CHECK.unhealthy_threshold <= 10
    assert HEALTH_CHECK.response_timeout_seconds < HEALTH_CHECK.check_interval_seconds


def test_load_balancer_health_check_and_listeners_come_from_the_policy_module(runs):
    lb = runs["lb-domain"].one(LOAD_BALANCER).inputs
    assert lb["healthcheck"] == {
        "protocol": "http",
        "port": 80,
        "path": "/readyz",
        "checkIntervalSeconds": 5,
        "responseTimeoutSeconds": 3,
        "healthyThreshold": 3,
        "unhealthyThreshold": 3,
    }
    assert (
        asdict(HEALTH_CHECK)["check_interval_seconds"] == lb["healthcheck"]["checkIntervalSeconds"]
    )
    listeners = [
        (r["entryPort"], r["entryProtocol"], r["targetPort"], r["targetProtocol"])
        for r in lb["forwardingRules"]
    ]
    assert listeners == [
        (r.entry_port, r.entry_protocol, r.target_port, r.target_protocol)
        for r in forwarding_rules(with_domain=True)
    ]
    assert listeners == [(80, "http", 80, "http"), (443, "https", 80, "http")]


def test_certificate_name_follows_the_domain():
    names = {
        run_program(valid_config(webCount=2, domain=domain))
        .one("digitalocean:index/certificate:Certificate")
        .inputs["name"]
        for domain in ("example.com", "example.org")
    }
    assert len(names) == 2


# --- SSH keys already in the account are reused, not uploaded again (422) -----------------------


def test_existing_key_is_used_by_fingerprint():
    existing = ssh_key_fingerprint(ADMIN_KEY)
    run = run_program(valid_config(existingSshKeyFingerprints=[existing]))
    assert run.error is None
    assert [k.inputs["publicKey"] for k in run.of_type(SSH_KEY)] == [SECOND_KEY]
    uploaded = run.one(SSH_KEY).outputs["fingerprint"]
    for droplet in run.of_type(DROPLET):
        assert droplet.inputs["sshKeys"] == [uploaded, existing]


def test_fingerprint_is_what_digitalocean_shows():
    # `ssh-keygen -l -E md5 -f` printed this for the sample key (its 32 key bytes are 0x01).
    assert ssh_key_fingerprint(ADMIN_KEY) == "d6:9a:30:45:17:cf:91:c4:27:94:f3:22:92:a3:00:0e"
