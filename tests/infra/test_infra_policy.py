"""The policy pack (infra/policy): pure rules on plain dicts, the CrossGuard wiring, the program's
own resources against it, and the pack served exactly as the Pulumi CLI starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import PolicyResource
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from infra.policy import rules
from infra.policy.policies import PACK_NAME, POLICIES
from tests.infra.mock_cloud import run_program
from tests.infra.sample_config import valid_config

POLICY_DIR = Path(__file__).resolve().parents[2] / "infra" / "policy"
SSH_ANYWHERE = {"protocol": "tcp", "portRange": "22", "sourceAddresses": ["0.0.0.0/0"]}


# --- the pure rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inbound", "violations"),
    [
        ([{"protocol": "tcp", "portRange": "22", "sourceAddresses": ["198.18.0.7/32"]}], 0),
        ([SSH_ANYWHERE], 1),
        ([{"protocol": "tcp", "portRange": "22", "sourceAddresses": ["::/0"]}], 1),
        ([{"protocol": "tcp", "portRange": "1-65535", "sourceAddresses": ["0.0.0.0/0"]}], 1),
        ([{"protocol": "tcp", "portRange": "all", "sourceAddresses": ["0.0.0.0/0"]}], 1),
        ([{"protocol": "tcp", "sourceAddresses": ["0.0.0.0/0"]}], 1),
        ([{"protocol": "tcp", "portRange": "80", "sourceAddresses": ["0.0.0.0/0"]}], 0),
        ([{"protocol": "udp", "portRange": "22", "sourceAddresses": ["0.0.0.0/0"]}], 0),
        ([{"protocol": "tcp", "portRange": "22", "sourceLoadBalancerUids": ["lb"]}], 0),
        ([], 0),
    ],
)
def test_firewall_ssh_rule(inbound, violations):
    assert len(rules.firewall_ssh_violations({"inboundRules": inbound})) == violations


@pytest.mark.parametrize(
    ("db_rules", "violations"),
    [
        ([{"type": "tag", "value": "dropstack-prod-web"}], 0),
        ([{"type": "ip_addr", "value": "0.0.0.0/0"}], 1),
        ([{"type": "tag", "value": "web"}, {"type": "droplet", "value": "1234"}], 1),
        ([{"type": "app", "value": "x"}, {"type": "k8s", "value": "y"}], 2),
        ([], 1),
    ],
)
def test_database_firewall_rule(db_rules, violations):
    assert len(rules.database_firewall_violations({"rules": db_rules})) == violations


@pytest.mark.parametrize(
    ("props", "messages"),
    [
        ({"monitoring": True, "vpcUuid": "vpc-1"}, []),
        ({"monitoring": False, "vpcUuid": "vpc-1"}, ["monitoring is off"]),
        ({"vpcUuid": "vpc-1"}, ["monitoring is off"]),
        ({"monitoring": True}, ["is not in a VPC"]),
        ({}, ["monitoring is off", "is not in a VPC"]),
    ],
)
def test_droplet_rule(props, messages):
    found = rules.droplet_violations(props)
    assert [m for m in messages if not any(m in f for f in found)] == []
    assert len(found) == len(messages)


def test_database_cluster_rule():
    assert rules.database_cluster_violations({"privateNetworkUuid": "vpc-1"}) == []
    assert rules.database_cluster_violations({"engine": "pg"}) != []


def test_database_trust_stack_rule():
    droplet = (rules.DROPLET, "urn:d", {"tags": ["web"]})
    cluster = (rules.DATABASE_CLUSTER, "urn:c", {})
    trusting = (rules.DATABASE_FIREWALL, "urn:f", {"rules": [{"type": "tag", "value": "web"}]})
    stranger = (rules.DATABASE_FIREWALL, "urn:g", {"rules": [{"type": "tag", "value": "other"}]})
    assert rules.database_trust_violations([droplet, cluster, trusting]) == []
    assert rules.database_trust_violations([droplet, cluster]) == [
        (None, "a database cluster has no database firewall")
    ]
    assert [urn for urn, _ in rules.database_trust_violations([droplet, stranger])] == ["urn:g"]


def test_placement_stack_rule():
    def placed(typ, vpc, region):
        key = "privateNetworkUuid" if typ == rules.DATABASE_CLUSTER else "vpcUuid"
        return (typ, f"urn:{typ}", {key: vpc, "region": region})

    same = [placed(rules.DROPLET, "v1", "fra1"), placed(rules.DATABASE_CLUSTER, "v1", "fra1")]
    assert rules.placement_violations(same) == []
    split = [*same, placed(rules.LOAD_BALANCER, "v2", "ams3")]
    messages = [m for _, m in rules.placement_violations(split)]
    assert any("2 VPCs" in m for m in messages)
    assert any("ams3, fra1" in m for m in messages)


# --- the CrossGuard wiring --------------------------------------------------------------------


def resource_reports(typ: str, props: dict) -> list[tuple[str, str]]:
    reports = []
    for policy in POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            args = ResourceValidationArgs(typ, props, f"urn:x::{typ}::r", "r", None, None)
            policy.validate(args, lambda message, urn, p=policy: reports.append((p.name, message)))
    return reports


def test_policies_are_mandatory_and_named():
    assert PACK_NAME == "dropstack-guardrails"
    assert [p.name for p in POLICIES] == [
        "no-ssh-from-anywhere",
        "only-web-ports-open-to-the-world",
        "database-firewall-tags-only",
        "droplet-monitoring-and-vpc",
        "database-on-private-network",
        "database-trusts-this-stacks-droplets",
        "every-droplet-behind-a-firewall",
        "one-vpc-one-region",
        "domain-has-an-uptime-check",
    ]
    assert {p.enforcement_level.value for p in POLICIES} == {"mandatory"}


@pytest.mark.parametrize(
    ("typ", "props", "policy"),
    [
        (rules.FIREWALL, {"inboundRules": [SSH_ANYWHERE]}, "no-ssh-from-anywhere"),
        (rules.DATABASE_FIREWALL, {"rules": [{"type": "ip_addr", "value": "1.1.1.1"}]}, None),
        (rules.DROPLET, {"monitoring": False}, "droplet-monitoring-and-vpc"),
        (rules.DATABASE_CLUSTER, {}, "database-on-private-network"),
    ],
)
def test_each_resource_policy_applies_its_rule_to_its_type_only(typ, props, policy):
    policy = policy or "database-firewall-tags-only"
    reports = resource_reports(typ, props)
    assert reports and {name for name, _ in reports} == {policy}
    assert all(message.startswith("r: ") for _, message in reports)
    assert resource_reports("digitalocean:index/vpc:Vpc", props) == []


# --- the program's own resources pass; an opted-in SSH-from-anywhere stack does not -------------


def program_reports(config: dict) -> list[tuple[str, str]]:
    """Violations of the program's resources: resource policies judge inputs (as in an update),
    stack policies the resulting state."""
    run = run_program(config)
    assert run.error is None
    resources = [r for r in run.resources if r.typ.startswith("digitalocean:")]
    reports = []
    stack_args = StackValidationArgs(
        [
            PolicyResource(r.typ, r.outputs, r.urn, r.name, None, None, None, [], {})
            for r in resources
        ]
    )
    for policy in POLICIES:
        if isinstance(policy, StackValidationPolicy):
            policy.validate(
                stack_args, lambda message, urn, p=policy: reports.append((p.name, message))
            )
    for resource in resources:
        reports += resource_reports(resource.typ, resource.inputs)
    return reports


@pytest.mark.parametrize(
    "extra",
    [{}, {"webCount": 3, "domain": "example.com"}, {"dbPoolSize": 5}, {"redis": True}],
    ids=str,
)
def test_the_program_complies_with_its_policy_pack(extra):
    assert program_reports(valid_config(**extra)) == []


def test_the_policy_pack_catches_ssh_opened_to_the_world_even_when_opted_in():
    config = valid_config(adminCidrs=["0.0.0.0/0"], allowSshFromAnywhere=True)
    reports = program_reports(config)
    assert [name for name, _ in reports] == ["no-ssh-from-anywhere"]


# --- the pack as the CLI runs it: `python -m pulumi.policy <engine> infra/policy` over gRPC -----


def test_policy_pack_project_file():
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    requirements = (POLICY_DIR / "requirements.txt").read_text()
    assert "pulumi-policy==" in requirements


@pytest.fixture(scope="module")
def analyzer():
    server = subprocess.Popen(
        [sys.executable, "-m", "pulumi.policy", "127.0.0.1:1", str(POLICY_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As under sudo or a bare CI shell: the pack must announce its port without it.
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )
    port: list[str] = []
    reader = threading.Thread(
        target=lambda: port.append(server.stdout.readline().strip()), daemon=True
    )
    reader.start()
    reader.join(timeout=20)
    try:
        if not port or not port[0].isdigit():
            server.kill()
            pytest.fail(f"policy pack did not start: {server.stderr.read()[-2000:]}")
        with grpc.insecure_channel(f"127.0.0.1:{port[0]}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _struct(props: dict) -> struct_pb2.Struct:
    return json_format.ParseDict(props, struct_pb2.Struct())


def test_served_pack_lists_its_policies(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME
    assert [p.name for p in info.policies] == [p.name for p in POLICIES]
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def test_served_pack_rejects_ssh_from_anywhere(analyzer):
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type=rules.FIREWALL,
            properties=_struct({"inboundRules": [SSH_ANYWHERE]}),
            urn=f"urn:pulumi:prod::dropstack::{rules.FIREWALL}::fw",
            name="fw",
        )
    )
    (diagnostic,) = response.diagnostics
    assert diagnostic.policyName == "no-ssh-from-anywhere"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY


def test_served_pack_accepts_a_vpc_not_yet_known_in_preview(analyzer):
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type=rules.DROPLET,
            properties=_struct({"monitoring": True, "vpcUuid": UNKNOWN_STRING_VALUE}),
            urn=f"urn:pulumi:prod::dropstack::{rules.DROPLET}::web-1",
            name="web-1",
        )
    )
    assert list(response.diagnostics) == []


def test_served_pack_checks_the_stack(analyzer):
    def resource(typ, name, props):
        urn = f"urn:pulumi:prod::dropstack::{typ}::{name}"
        return analyzer_pb2.AnalyzerResource(
            type=typ, urn=urn, name=name, properties=_struct(props)
        )

    response = analyzer.AnalyzeStack(
        analyzer_pb2.AnalyzeStackRequest(
            resources=[
                resource(
                    rules.DROPLET, "web-1", {"tags": ["web"], "vpcUuid": "v", "region": "fra1"}
                ),
                resource(
                    rules.DATABASE_CLUSTER, "db", {"privateNetworkUuid": "v", "region": "fra1"}
                ),
                resource(
                    rules.DATABASE_FIREWALL, "dbfw", {"rules": [{"type": "tag", "value": "x"}]}
                ),
                resource(rules.FIREWALL, "fw", {"tags": ["web"], "inboundRules": []}),
                resource(
                    rules.DROPLET, "stray", {"tags": ["other"], "vpcUuid": "v", "region": "fra1"}
                ),
            ]
        )
    )
    assert sorted(d.policyName for d in response.diagnostics) == [
        "database-trusts-this-stacks-droplets",
        "every-droplet-behind-a-firewall",
    ]


# --- the gaps of issue 12: world-open ports, uncovered droplets, address-trusting databases -----

WORLD_OPEN = [
    ({"protocol": "tcp", "portRange": "5432", "sourceAddresses": ["0.0.0.0/0"]}, 1),
    ({"protocol": "tcp", "portRange": "8080", "sourceAddresses": ["::/0"]}, 1),
    ({"protocol": "udp", "portRange": "443", "sourceAddresses": ["0.0.0.0/0", "::/0"]}, 1),
    ({"protocol": "tcp", "portRange": "1-65535", "sourceAddresses": ["0.0.0.0/0"]}, 1),
    ({"protocol": "tcp", "portRange": "0", "sourceAddresses": ["0.0.0.0/0"]}, 1),
    ({"protocol": "tcp", "portRange": "all", "sourceAddresses": ["0.0.0.0/0"]}, 1),
    ({"protocol": "tcp", "sourceAddresses": ["0.0.0.0/0"]}, 1),
    ({"protocol": "tcp", "portRange": "79-81", "sourceAddresses": ["0.0.0.0/0"]}, 1),
    ({"protocol": "tcp", "portRange": "6379", "sourceAddresses": ["0.0.0.0/1", "128.0.0.0/1"]}, 1),
    ({"protocol": "tcp", "portRange": "6379", "sourceAddresses": ["::ffff:0:0/96"]}, 1),
    ({"protocol": "tcp", "portRange": "80", "sourceAddresses": ["0.0.0.0/0", "::/0"]}, 0),
    ({"protocol": "tcp", "portRange": "443", "sourceAddresses": ["0.0.0.0/0"]}, 0),
    ({"protocol": "icmp", "sourceAddresses": ["0.0.0.0/0", "::/0"]}, 0),
    ({"protocol": "tcp", "portRange": "5432", "sourceAddresses": ["0.0.0.0/1"]}, 0),
    ({"protocol": "tcp", "portRange": "5432", "sourceTags": ["web"]}, 0),
    ({"protocol": "tcp", "portRange": "80", "sourceLoadBalancerUids": ["lb-1"]}, 0),
    # An explicit deny: a rule that names no source admits nobody and is not a violation.
    ({"protocol": "tcp", "portRange": "1-65535", "sourceAddresses": []}, 0),
    ({"protocol": "tcp", "portRange": "22", "sourceAddresses": []}, 0),
]


@pytest.mark.parametrize(("rule", "violations"), WORLD_OPEN, ids=str)
def test_only_web_ports_may_be_open_to_the_world(rule, violations):
    assert len(rules.firewall_world_port_violations({"inboundRules": [rule]})) == violations


@pytest.mark.parametrize(
    "sources",
    [["0.0.0.0/1", "128.0.0.0/1"], ["::ffff:0:0/96"], ["::/1", "8000::/1"], ["::/0"]],
    ids=str,
)
def test_ssh_open_to_a_union_of_everything_is_caught(sources):
    rule = {"protocol": "tcp", "portRange": "22", "sourceAddresses": sources}
    assert len(rules.firewall_ssh_violations({"inboundRules": [rule]})) == 1


def test_explicit_deny_is_not_flagged_by_any_policy():
    deny = {"inboundRules": [{"protocol": "tcp", "portRange": "22", "sourceAddresses": []}]}
    assert resource_reports(rules.FIREWALL, deny) == []


def test_database_firewall_trusting_an_address_range_is_caught():
    for rule in (
        {"type": "ip_addr", "value": "10.0.0.0/8"},
        {"type": "ip_addr", "value": "1.2.3.4"},
    ):
        reports = resource_reports(rules.DATABASE_FIREWALL, {"rules": [rule]})
        assert [name for name, _ in reports] == ["database-firewall-tags-only"]


def test_droplet_covered_by_no_firewall_is_caught():
    fw = (rules.FIREWALL, "urn:fw", {"tags": ["web"], "dropletIds": [401]})
    by_tag = (rules.DROPLET, "urn:a", {"tags": ["web"]})
    by_id = (rules.DROPLET, "urn:b", {"id": "401", "tags": []})
    stray = (rules.DROPLET, "urn:c", {"tags": ["db"], "name": "stray"})
    assert rules.firewall_coverage_violations([fw, by_tag, by_id]) == []
    assert [urn for urn, _ in rules.firewall_coverage_violations([fw, by_tag, stray])] == ["urn:c"]
    assert len(rules.firewall_coverage_violations([by_tag])) == 1


def test_served_pack_rejects_a_world_open_port_in_the_engines_shape(analyzer):
    """Inputs exactly as the engine sends a digitalocean.Firewall: camelCase, dropletIds ints."""
    props = {
        "name": "web-fw",
        "tags": ["dropstack-prod-web"],
        "dropletIds": [401],
        "inboundRules": [
            {"protocol": "tcp", "portRange": "22", "sourceAddresses": ["198.18.0.7/32"]},
            {"protocol": "tcp", "portRange": "5432", "sourceAddresses": ["0.0.0.0/0", "::/0"]},
        ],
        "outboundRules": [
            {"protocol": "tcp", "portRange": "443", "destinationAddresses": ["0.0.0.0/0"]}
        ],
    }
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type=rules.FIREWALL,
            properties=_struct(props),
            urn=f"urn:pulumi:prod::dropstack::{rules.FIREWALL}::web-fw",
            name="web-fw",
        )
    )
    assert [d.policyName for d in response.diagnostics] == ["only-web-ports-open-to-the-world"]


def _with_extra_inbound_rule(rule: dict):
    """The program's resources with one more inbound rule on the web firewall (a mutation)."""
    run = run_program(valid_config())
    (firewall,) = [r for r in run.resources if r.typ == rules.FIREWALL]
    firewall.inputs = {**firewall.inputs, "inboundRules": [*firewall.inputs["inboundRules"], rule]}
    return resource_reports(rules.FIREWALL, firewall.inputs)


def test_the_pack_catches_an_extra_world_open_port_on_the_programs_firewall():
    extra = {"protocol": "tcp", "portRange": "5432", "sourceAddresses": ["0.0.0.0/0"]}
    assert [name for name, _ in _with_extra_inbound_rule(extra)] == [
        "only-web-ports-open-to-the-world"
    ]
