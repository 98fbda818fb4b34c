"""The real program (infra/__main__.py) on Pulumi's mock runtime, checked resource by resource.

Each scenario is run once; every test then asserts one invariant across the scenarios where it
applies: the firewall, the database's reach, placement, cloud-init, DNS and the exported inventory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from deploy.inventory import BACKUP_KEYS, INVENTORY_KEYS
from infra.cloudinit import SSHD_HARDENING_PATH, render_user_data
from infra.firewall_rules import ANYWHERE, POSTGRES_POOL_PORT, POSTGRES_PORT
from infra.web import certificate_name
from tests.infra.mock_cloud import (
    CA_CERT,
    DB_PASSWORD,
    LB_IP,
    PROGRAM_DIR,
    RESERVED_IP,
    SPACES_ACCESS_KEY,
    SPACES_SECRET_KEY,
    VPC_CIDR,
    VPC_ID,
    ProgramRun,
    engine_config,
    run_program,
)
from tests.infra.sample_config import ADMIN_CIDRS, ADMIN_KEY, SECOND_KEY, valid_config

DROPLET = "digitalocean:index/droplet:Droplet"
FIREWALL = "digitalocean:index/firewall:Firewall"
LOAD_BALANCER = "digitalocean:index/loadBalancer:LoadBalancer"
VPC = "digitalocean:index/vpc:Vpc"
DB_CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster"
DB_FIREWALL = "digitalocean:index/databaseFirewall:DatabaseFirewall"
DB_POOL = "digitalocean:index/databaseConnectionPool:DatabaseConnectionPool"
DOMAIN = "digitalocean:index/domain:Domain"
DNS_RECORD = "digitalocean:index/dnsRecord:DnsRecord"
RESERVED = "digitalocean:index/reservedIp:ReservedIp"
RESERVED_ASSIGNMENT = "digitalocean:index/reservedIpAssignment:ReservedIpAssignment"
CERTIFICATE = "digitalocean:index/certificate:Certificate"
PROJECT = "digitalocean:index/project:Project"
PROJECT_RESOURCES = "digitalocean:index/projectResources:ProjectResources"
SSH_KEY = "digitalocean:index/sshKey:SshKey"
WEB_TAG = "dropstack-test-web"

SCENARIOS = {
    "one-droplet": {},
    "three-droplets-lb": {"webCount": 3},
    "one-droplet-domain": {"domain": "example.com"},
    "three-droplets-lb-domain": {"webCount": 3, "domain": "Example.com."},
    "pool": {"dbPoolSize": 10, "region": "nyc3", "dbNodeCount": 2, "dbSize": "db-s-1vcpu-2gb"},
}


@pytest.fixture(scope="module")
def runs() -> dict[str, ProgramRun]:
    results = {name: run_program(valid_config(**extra)) for name, extra in SCENARIOS.items()}
    for name, run in results.items():
        assert run.error is None, f"{name}: {run.error}"
    return results


def scenarios(predicate=lambda extra: True) -> list[str]:
    return [name for name, extra in SCENARIOS.items() if predicate(extra)]


def web_count(name: str) -> int:
    return SCENARIOS[name].get("webCount", 1)


def region(name: str) -> str:
    return SCENARIOS[name].get("region", "fra1")


def inbound(run: ProgramRun, port: str) -> list[dict]:
    return [r for r in run.one(FIREWALL).inputs["inboundRules"] if r.get("portRange") == port]


# --- the exported inventory --------------------------------------------------------------------


@pytest.mark.parametrize("name", scenarios())
def test_outputs_are_exactly_the_inventory_keys(runs, name):
    outputs = runs[name].outputs
    assert list(outputs) == list(INVENTORY_KEYS)
    assert all(value is not None for value in outputs.values()), "None outputs vanish in Pulumi"


@pytest.mark.parametrize("name", scenarios())
def test_backup_outputs_name_the_bucket_and_its_key(runs, name):
    outputs = runs[name].outputs
    assert (
        outputs["backup_endpoint"] == f"https://{outputs['backup_region']}.digitaloceanspaces.com"
    )
    assert outputs["backup_bucket"] == "dropstack-test-backups"
    assert outputs["backup_access_key_id"] == SPACES_ACCESS_KEY
    assert outputs["backup_secret_access_key"] == SPACES_SECRET_KEY


def test_backups_off_export_absent_bucket_keys_and_no_bucket_secret():
    run = run_program(valid_config(backups=False))
    assert run.error is None
    assert list(run.outputs) == list(INVENTORY_KEYS)
    assert {key: run.outputs[key] for key in BACKUP_KEYS} == dict.fromkeys(BACKUP_KEYS, "")
    assert run.secret_outputs == {"db_uri", "db_admin_uri"}


@pytest.mark.parametrize("name", scenarios())
def test_db_uris_and_the_bucket_key_are_the_only_secrets_and_require_tls(runs, name):
    run = runs[name]
    assert run.secret_outputs == {"db_uri", "db_admin_uri", "backup_secret_access_key"}
    admin = urlsplit(run.outputs["db_admin_uri"])
    # The admin URI goes straight to the app's database on the cluster, never through a pool.
    assert (unquote(admin.username), unquote(admin.password)) == ("doadmin", "admin-secret")
    assert (admin.port, admin.path, admin.query) == (25060, "/dropstack", "sslmode=require")
    assert admin.hostname == run.outputs["db_host"]
    uri = urlsplit(run.outputs["db_uri"])
    assert uri.scheme == "postgresql"
    assert uri.query == "sslmode=require"
    assert (uri.hostname, uri.port) == (run.outputs["db_host"], run.outputs["db_port"])
    assert unquote(uri.username) == run.outputs["db_user"] == "dropstack"
    assert unquote(uri.password) == DB_PASSWORD
    assert run.outputs["db_host"].startswith("private-"), "the app must use the private network"


@pytest.mark.parametrize("name", scenarios())
def test_inventory_describes_the_droplets(runs, name):
    run, count = runs[name], web_count(name)
    droplets = run.of_type(DROPLET)
    assert run.outputs["web_names"] == [d.inputs["name"] for d in droplets]
    assert run.outputs["web_names"] == [f"{WEB_TAG}-{n}" for n in range(1, count + 1)]
    assert run.outputs["web_public_ips"] == [d.outputs["ipv4Address"] for d in droplets]
    assert run.outputs["web_private_ips"] == [d.outputs["ipv4AddressPrivate"] for d in droplets]
    assert run.outputs["ssh_user"] == "deploy"
    assert run.outputs["ssh_key_path"] == ""
    assert (run.outputs["stack"], run.outputs["region"]) == ("test", region(name))
    assert run.outputs["vpc_cidr"] == VPC_CIDR
    assert run.outputs["db_ca_cert"] == CA_CERT
    assert run.outputs["db_name"] == "dropstack"


@pytest.mark.parametrize(
    ("name", "url", "lb_ip", "domain"),
    [
        ("one-droplet", "http://192.0.2.1", "", ""),
        ("three-droplets-lb", f"http://{LB_IP}", LB_IP, ""),
        ("one-droplet-domain", "https://example.com", "", "example.com"),
        ("three-droplets-lb-domain", "https://example.com", LB_IP, "example.com"),
    ],
)
def test_url_load_balancer_and_domain_outputs(runs, name, url, lb_ip, domain):
    outputs = runs[name].outputs
    assert (outputs["url"], outputs["load_balancer_ip"], outputs["domain"]) == (url, lb_ip, domain)


# --- the cloud firewall -----------------------------------------------------------------------


@pytest.mark.parametrize("name", scenarios())
def test_no_inbound_rule_opens_ssh_to_anywhere(runs, name):
    for rule in runs[name].one(FIREWALL).inputs["inboundRules"]:
        if rule["protocol"] == "tcp" and rule.get("portRange") in (None, "22", "1-65535", "all"):
            assert not set(rule.get("sourceAddresses", [])) & set(ANYWHERE), rule


@pytest.mark.parametrize("name", scenarios())
def test_ssh_is_open_to_the_admin_networks_only(runs, name):
    (ssh,) = inbound(runs[name], "22")
    assert ssh == {"protocol": "tcp", "portRange": "22", "sourceAddresses": ADMIN_CIDRS}


@pytest.mark.parametrize("name", scenarios())
def test_firewall_applies_to_the_web_tag(runs, name):
    firewall = runs[name].one(FIREWALL)
    assert firewall.inputs["tags"] == [WEB_TAG]
    for droplet in runs[name].of_type(DROPLET):
        assert droplet.inputs["tags"] == [WEB_TAG]


@pytest.mark.parametrize("name", scenarios(lambda extra: extra.get("webCount", 1) > 1))
def test_http_reaches_droplets_only_from_the_load_balancer(runs, name):
    run = runs[name]
    lb_id = run.one(LOAD_BALANCER).id
    for port in ("80", "443"):
        (rule,) = inbound(run, port)
        assert rule == {"protocol": "tcp", "portRange": port, "sourceLoadBalancerUids": [lb_id]}


@pytest.mark.parametrize("name", scenarios(lambda extra: extra.get("webCount", 1) == 1))
def test_http_is_open_to_the_world_without_a_load_balancer(runs, name):
    assert runs[name].of_type(LOAD_BALANCER) == []
    for port in ("80", "443"):
        (rule,) = inbound(runs[name], port)
        assert rule == {"protocol": "tcp", "portRange": port, "sourceAddresses": list(ANYWHERE)}


@pytest.mark.parametrize("name", scenarios())
def test_outbound_is_dns_ntp_web_and_the_database_inside_the_vpc(runs, name):
    rules = runs[name].one(FIREWALL).inputs["outboundRules"]
    opened = {(r["protocol"], r.get("portRange", "")): r["destinationAddresses"] for r in rules}
    db_ports = {POSTGRES_PORT, POSTGRES_POOL_PORT} if name == "pool" else {POSTGRES_PORT}
    expected_world = {("udp", "53"), ("tcp", "53"), ("udp", "123"), ("tcp", "80"), ("tcp", "443")}
    assert opened == {
        **{key: list(ANYWHERE) for key in expected_world | {("icmp", "")}},
        **{("tcp", str(port)): [VPC_CIDR] for port in db_ports},
    }


# --- the database -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", scenarios())
def test_database_firewall_trusts_only_the_web_tag(runs, name):
    run = runs[name]
    db_firewall = run.one(DB_FIREWALL)
    assert db_firewall.inputs["rules"] == [{"type": "tag", "value": WEB_TAG}]
    assert db_firewall.inputs["clusterId"] == run.one(DB_CLUSTER).id


@pytest.mark.parametrize("name", scenarios())
def test_database_cluster_settings(runs, name):
    cluster = runs[name].one(DB_CLUSTER).inputs
    assert cluster["engine"] == "pg"
    assert cluster["version"] == "16"
    assert cluster["size"] == SCENARIOS[name].get("dbSize", "db-s-1vcpu-1gb")
    assert cluster["nodeCount"] == SCENARIOS[name].get("dbNodeCount", 1)


def test_pool_is_used_by_the_app_when_configured(runs):
    run = runs["pool"]
    pool = run.one(DB_POOL).inputs
    assert pool == {
        "clusterId": run.one(DB_CLUSTER).id,
        "name": "dropstack-pool",
        "dbName": "dropstack",
        "user": "dropstack",
        "mode": "transaction",
        "size": 10,
    }
    assert run.outputs["db_port"] == POSTGRES_POOL_PORT
    assert urlsplit(run.outputs["db_uri"]).path == "/dropstack-pool"


@pytest.mark.parametrize("name", scenarios(lambda extra: "dbPoolSize" not in extra))
def test_no_pool_means_the_cluster_port(runs, name):
    assert runs[name].of_type(DB_POOL) == []
    assert runs[name].outputs["db_port"] == POSTGRES_PORT
    assert urlsplit(runs[name].outputs["db_uri"]).path == "/dropstack"


@pytest.mark.parametrize("name", scenarios())
def test_ca_certificate_comes_from_the_cluster(runs, name):
    run = runs[name]
    assert run.calls == [
        ("digitalocean:index/getDatabaseCa:getDatabaseCa", {"clusterId": run.one(DB_CLUSTER).id})
    ]


# --- placement --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", scenarios())
def test_everything_in_one_vpc_and_region(runs, name):
    run, where = runs[name], region(name)
    vpc = run.one(VPC)
    assert (vpc.id, vpc.inputs["region"]) == (VPC_ID, where)
    for droplet in run.of_type(DROPLET):
        assert (droplet.inputs["vpcUuid"], droplet.inputs["region"]) == (VPC_ID, where)
    for lb in run.of_type(LOAD_BALANCER):
        assert (lb.inputs["vpcUuid"], lb.inputs["region"]) == (VPC_ID, where)
    cluster = run.one(DB_CLUSTER)
    assert (cluster.inputs["privateNetworkUuid"], cluster.inputs["region"]) == (VPC_ID, where)
    for reserved in run.of_type(RESERVED):
        assert reserved.inputs["region"] == where


@pytest.mark.parametrize("name", scenarios())
def test_project_groups_the_stack(runs, name):
    run = runs[name]
    project = run.one(PROJECT)
    assert project.inputs["name"] == "dropstack-test"
    assert run.one(DB_CLUSTER).inputs["projectId"] == project.id
    for lb in run.of_type(LOAD_BALANCER):
        assert lb.inputs["projectId"] == project.id
    grouped = run.one(PROJECT_RESOURCES).inputs
    assert grouped["project"] == project.id
    expected = [d.outputs["dropletUrn"] for d in run.of_type(DROPLET)]
    expected += [r.outputs["reservedIpUrn"] for r in run.of_type(RESERVED)]
    expected += [d.outputs["domainUrn"] for d in run.of_type(DOMAIN)]
    assert grouped["resources"] == expected


@pytest.mark.parametrize("name", scenarios())
def test_every_resource_belongs_to_a_tier_component(runs, name):
    run = runs[name]
    components = {r.typ for r in run.resources if not r.typ.startswith("digitalocean:")}
    assert components == {
        "dropstack:network:Network",
        "dropstack:web:WebTier",
        "dropstack:database:DatabaseTier",
        "dropstack:monitoring:Monitoring",
        "dropstack:backups:BackupStorage",
    }
    for resource in run.resources:
        if resource.typ.startswith("digitalocean:"):
            assert len(resource.parent_types) == 1, resource.urn
            assert resource.parent_types[0] in components
            assert resource.name.startswith("dropstack-test"), resource.name


# --- the droplets -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", scenarios())
def test_droplets_are_monitored_debian_with_the_configured_keys(runs, name):
    run = runs[name]
    droplets = run.of_type(DROPLET)
    assert len(droplets) == web_count(name)
    fingerprints = [key.outputs["fingerprint"] for key in run.of_type(SSH_KEY)]
    # The mock runtime records resources as they register, which is not declaration order.
    assert sorted(key.inputs["publicKey"] for key in run.of_type(SSH_KEY)) == sorted(
        [ADMIN_KEY, SECOND_KEY]
    )
    for droplet in droplets:
        assert droplet.inputs["monitoring"] is True
        assert droplet.inputs["image"] == "debian-12-x64"
        assert droplet.inputs["size"] == "s-1vcpu-1gb"
        assert sorted(droplet.inputs["sshKeys"]) == sorted(fingerprints)


@pytest.mark.parametrize("name", scenarios())
def test_user_data_is_the_cloudinit_contract(runs, name):
    for droplet in runs[name].of_type(DROPLET):
        user_data = droplet.inputs["userData"]
        assert user_data == render_user_data(
            hostname=droplet.inputs["name"],
            deploy_user="deploy",
            ssh_public_keys=[ADMIN_KEY, SECOND_KEY],
        )
        assert user_data.startswith("#cloud-config\n")
        config = yaml.safe_load(user_data)
        assert config["hostname"] == droplet.inputs["name"]
        assert config["disable_root"] is True
        assert config["ssh_pwauth"] is False
        (user,) = config["users"]
        assert user["name"] == "deploy"
        assert user["lock_passwd"] is True
        assert user["ssh_authorized_keys"] == [ADMIN_KEY, SECOND_KEY]
        (sshd,) = [f for f in config["write_files"] if f["path"] == SSHD_HARDENING_PATH]
        assert "PermitRootLogin no\n" in sshd["content"]
        assert "PasswordAuthentication no\n" in sshd["content"]


# --- load balancer, TLS and DNS ---------------------------------------------------------------


@pytest.mark.parametrize("name", scenarios(lambda extra: extra.get("webCount", 1) > 1))
def test_load_balancer_checks_readyz_and_targets_the_web_tag(runs, name):
    run = runs[name]
    lb = run.one(LOAD_BALANCER).inputs
    assert lb["dropletTag"] == WEB_TAG
    assert lb["healthcheck"]["protocol"] == "http"
    assert lb["healthcheck"]["port"] == 80
    assert lb["healthcheck"]["path"] == "/readyz"
    rules = {rule["entryPort"]: rule for rule in lb["forwardingRules"]}
    assert rules[80] == {
        "entryPort": 80,
        "entryProtocol": "http",
        "targetPort": 80,
        "targetProtocol": "http",
    }
    if "domain" in SCENARIOS[name]:
        certificate = run.one(CERTIFICATE).inputs
        assert certificate == {
            "name": certificate_name(WEB_TAG, "example.com"),
            "type": "lets_encrypt",
            "domains": ["example.com"],
        }
        assert rules[443]["entryProtocol"] == "https"
        assert rules[443]["certificateName"] == certificate["name"]
        assert (rules[443]["targetPort"], rules[443]["targetProtocol"]) == (80, "http")
        assert lb["redirectHttpToHttps"] is True
    else:
        assert set(rules) == {80}
        assert run.of_type(CERTIFICATE) == []
        assert lb["redirectHttpToHttps"] is False


@pytest.mark.parametrize(
    ("name", "target"),
    [("one-droplet-domain", RESERVED_IP), ("three-droplets-lb-domain", LB_IP)],
)
def test_dns_a_record_points_at_the_entry_point(runs, name, target):
    run = runs[name]
    domain = run.one(DOMAIN)
    assert domain.inputs == {"name": "example.com"}
    record = run.one(DNS_RECORD).inputs
    assert record == {"domain": domain.id, "type": "A", "name": "@", "value": target, "ttl": 300}


def test_single_droplet_with_domain_gets_a_reserved_ip(runs):
    run = runs["one-droplet-domain"]
    (droplet,) = run.of_type(DROPLET)
    assignment = run.one(RESERVED_ASSIGNMENT).inputs
    assert assignment == {"ipAddress": RESERVED_IP, "dropletId": int(droplet.id)}


@pytest.mark.parametrize("name", scenarios(lambda extra: "domain" not in extra))
def test_no_domain_means_no_dns(runs, name):
    run = runs[name]
    for typ in (DOMAIN, DNS_RECORD, RESERVED, RESERVED_ASSIGNMENT, CERTIFICATE):
        assert run.of_type(typ) == []


# --- the program as Pulumi starts it: a fresh interpreter, outside the repository ---------------

DRIVER = """
import json, runpy, sys
import pulumi

class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return args.name + "-id", dict(args.inputs, password="pw", user="doadmin")
    def call(self, args):
        return {"certificate": "ca"}

assert not any(p.endswith("/infra") or p == sys.argv[2] for p in sys.path), sys.path
pulumi.runtime.set_all_config(json.loads(sys.argv[3]))
pulumi.runtime.set_mocks(Mocks(), project="dropstack", stack="smoke", preview=False)

@pulumi.runtime.test
def program():
    runpy.run_path(sys.argv[1], run_name="__main__")

program()
print(sorted(pulumi.runtime.settings.get_root_resource().outputs))
"""


def test_program_imports_itself_when_run_by_pulumi(tmp_path):
    """`main: infra/` runs with infra/ on sys.path, not the repository root."""
    program_dir = PROGRAM_DIR
    config = json.dumps(engine_config(valid_config()))
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(program_dir), str(program_dir.parent), config],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(sorted(INVENTORY_KEYS))
