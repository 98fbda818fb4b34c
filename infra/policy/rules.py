"""dropstack's guardrails as pure functions over resource properties.

Properties use Pulumi's (camelCase) names, as CrossGuard passes them: ``inboundRules``,
``sourceAddresses``, ``vpcUuid``, ``privateNetworkUuid``. Each function returns violation
messages (empty when the resource complies) and reads its argument only through the Mapping and
Sequence protocols, so plain dicts and CrossGuard's unknown-checking proxies both work.
This module imports nothing from the program: a policy pack judges what it is given.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

FIREWALL = "digitalocean:index/firewall:Firewall"
DATABASE_FIREWALL = "digitalocean:index/databaseFirewall:DatabaseFirewall"
DROPLET = "digitalocean:index/droplet:Droplet"
DATABASE_CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster"
LOAD_BALANCER = "digitalocean:index/loadBalancer:LoadBalancer"
SSH_PORT = 22

Props = Mapping[str, Any]


def firewall_ssh_violations(props: Props) -> list[str]:
    """A cloud firewall must not open SSH to the whole internet (0.0.0.0/0 or ::/0)."""
    violations = []
    for rule in props.get("inboundRules") or ():
        if rule.get("protocol") != "tcp" or not _covers(rule.get("portRange"), SSH_PORT):
            continue
        anywhere = [a for a in rule.get("sourceAddresses") or () if _is_anywhere(a)]
        if anywhere:
            ports = rule.get("portRange") or "all"
            violations.append(
                f"inbound tcp {ports} opens SSH to {', '.join(anywhere)}; "
                "allow only the admins' networks"
            )
    return violations


def database_firewall_violations(props: Props) -> list[str]:
    """A database firewall trusts droplet tags only: never IPs, droplets, apps or clusters."""
    rules = props.get("rules") or ()
    if not rules:
        return ["has no trusted sources; trust the web tier's droplet tag"]
    return [
        f"trusts {rule.get('type')} {rule.get('value')!r}; only droplet tags may be trusted sources"
        for rule in rules
        if rule.get("type") != "tag"
    ]


def droplet_violations(props: Props) -> list[str]:
    """A droplet has monitoring on (the metrics agent) and sits in a VPC."""
    violations = []
    if props.get("monitoring") is not True:
        violations.append("monitoring is off; set monitoring=True")
    if not _present(props, "vpcUuid"):
        violations.append("is not in a VPC; set vpc_uuid")
    return violations


def database_cluster_violations(props: Props) -> list[str]:
    """A database cluster lives on a private network (the stack's VPC)."""
    if not _present(props, "privateNetworkUuid"):
        return ["has no private network; set private_network_uuid to the stack's VPC"]
    return []


RESOURCE_RULES = {
    FIREWALL: firewall_ssh_violations,
    DATABASE_FIREWALL: database_firewall_violations,
    DROPLET: droplet_violations,
    DATABASE_CLUSTER: database_cluster_violations,
}


def database_trust_violations(
    resources: Iterable[tuple[str, str, Props]],
) -> list[tuple[str | None, str]]:
    """Across the stack: every tag a database firewall trusts is carried by droplets of this
    stack, and a database cluster never goes without a database firewall.

    ``resources`` are (type, urn, props); returns (urn or None, message) pairs.
    """
    resources = list(resources)
    droplet_tags = {tag for typ, _, p in resources if typ == DROPLET for tag in p.get("tags") or ()}
    violations: list[tuple[str | None, str]] = []
    firewalls = [(urn, p) for typ, urn, p in resources if typ == DATABASE_FIREWALL]
    if any(typ == DATABASE_CLUSTER for typ, _, _ in resources) and not firewalls:
        violations.append((None, "a database cluster has no database firewall"))
    for urn, props in firewalls:
        for rule in props.get("rules") or ():
            if rule.get("type") == "tag" and rule.get("value") not in droplet_tags:
                violations.append(
                    (urn, f"trusts tag {rule.get('value')!r}, which no droplet in this stack has")
                )
    return violations


def placement_violations(
    resources: Iterable[tuple[str, str, Props]],
) -> list[tuple[str | None, str]]:
    """Across the stack: droplets, load balancers and database clusters share one VPC and region."""
    network_key = {
        DROPLET: "vpcUuid",
        LOAD_BALANCER: "vpcUuid",
        DATABASE_CLUSTER: "privateNetworkUuid",
    }
    placed = [(urn, typ, p) for typ, urn, p in resources if typ in network_key]
    vpcs = {p.get(network_key[typ]) for _, typ, p in placed}
    regions = {p.get("region") for _, typ, p in placed}
    violations: list[tuple[str | None, str]] = []
    if len(vpcs) > 1:
        violations.append((None, f"resources are spread over {len(vpcs)} VPCs; use one"))
    if len(regions) > 1:
        listed = ", ".join(sorted(str(r) for r in regions))
        violations.append((None, f"resources are spread over regions {listed}; use one"))
    return violations


def _present(props: Props, key: str) -> bool:
    """Whether ``key`` is set. Pulumi leaves unset (None) inputs out, so presence is what counts;
    iterating the keys never reads a value, which CrossGuard refuses during preview when the value
    is not known yet (the id of a VPC still to be created)."""
    return key in list(props)


def _covers(port_range: str | None, port: int) -> bool:
    """Whether a DigitalOcean port range ('22', '20-30', 'all' or empty for all) includes port."""
    if not port_range or port_range == "all":
        return True
    first, _, last = str(port_range).partition("-")
    return int(first) <= port <= int(last or first)


def _is_anywhere(address: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).prefixlen == 0
    except ValueError:
        return False
