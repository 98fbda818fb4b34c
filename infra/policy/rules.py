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
DOMAIN = "digitalocean:index/domain:Domain"
UPTIME_CHECK = "digitalocean:index/uptimeCheck:UptimeCheck"
UPTIME_ALERT = "digitalocean:index/uptimeAlert:UptimeAlert"
SSH_PORT = 22
# What the world may reach on a droplet: the site, over TCP. SSH has its own policy.
WORLD_PORTS = {"tcp": frozenset({80, 443})}
ALL_PORTS = (1, 65535)
IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

Props = Mapping[str, Any]


def firewall_ssh_violations(props: Props) -> list[str]:
    """A cloud firewall must not open SSH to the whole internet: sources whose union is all of
    IPv4 or IPv6 (0.0.0.0/0, ::/0, 0.0.0.0/1 + 128.0.0.0/1, ::ffff:0:0/96)."""
    violations = []
    for rule in props.get("inboundRules") or ():
        if rule.get("protocol") != "tcp" or not _covers(rule.get("portRange"), SSH_PORT):
            continue
        whole = _world(rule)
        if whole:
            ports = rule.get("portRange") or "all"
            violations.append(
                f"inbound tcp {ports} opens SSH to all of {whole}; allow only the admins' networks"
            )
    return violations


def firewall_world_port_violations(props: Props) -> list[str]:
    """Only TCP 80 and 443 may be open to the whole internet (SSH is judged by its own rule).

    ICMP carries no port and stays allowed (ping, path-MTU discovery). A rule with no source at
    all admits nobody, so it is never a violation.
    """
    violations = []
    for rule in props.get("inboundRules") or ():
        protocol = rule.get("protocol")
        if protocol not in ("tcp", "udp") or not _world(rule):
            continue
        first, last = _port_bounds(rule.get("portRange"))
        allowed = WORLD_PORTS.get(protocol, frozenset()) | (
            {SSH_PORT} if protocol == "tcp" else set()
        )
        # The length test first, so a range like 1-65535 is never walked port by port.
        if last - first + 1 > len(allowed) or any(
            port not in allowed for port in range(first, last + 1)
        ):
            violations.append(
                f"inbound {protocol} {rule.get('portRange') or 'all'} is open to all of "
                f"{_world(rule)}; only tcp 80 and 443 may be, put anything else behind "
                "source tags or the admins' networks"
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
    FIREWALL: lambda props: firewall_ssh_violations(props) + firewall_world_port_violations(props),
    DATABASE_FIREWALL: database_firewall_violations,
    DROPLET: droplet_violations,
    DATABASE_CLUSTER: database_cluster_violations,
}


def database_trust_violations(
    resources: Iterable[tuple[str, str, Props]],
) -> list[tuple[str | None, str]]:
    """Across the stack: every database cluster (PostgreSQL, the Valkey of the Redis tier, any
    engine) has a database firewall of its own, and every tag a database firewall trusts is
    carried by droplets of this stack. With the tags-only rule, a cluster then trusts nothing
    but the web tier.

    A firewall belongs to a cluster through ``clusterId``: the cluster's ``id`` when the engine
    passed it, else the uuid at the end of its ``clusterUrn`` (``do:dbaas:<uuid>``). A cluster
    whose identity is not known yet (a preview) is judged by count: fewer firewalls than
    clusters means one goes without. ``resources`` are (type, urn, props); returns (urn or None,
    message) pairs.
    """
    resources = list(resources)
    droplet_tags = {tag for typ, _, p in resources if typ == DROPLET for tag in p.get("tags") or ()}
    violations: list[tuple[str | None, str]] = []
    firewalls = [(urn, p) for typ, urn, p in resources if typ == DATABASE_FIREWALL]
    guarded = {str(p.get("clusterId")) for _, p in firewalls if "clusterId" in list(p)}
    clusters = [(urn, _cluster_identity(p)) for typ, urn, p in resources if typ == DATABASE_CLUSTER]
    for urn, identity in clusters:
        if identity is not None and identity not in guarded:
            violations.append((urn, "this database cluster has no database firewall of its own"))
    unknown = [urn for urn, identity in clusters if identity is None]
    if unknown and len(firewalls) < len(clusters):
        violations.append((None, "a database cluster has no database firewall"))
    for urn, props in firewalls:
        for rule in props.get("rules") or ():
            if rule.get("type") == "tag" and rule.get("value") not in droplet_tags:
                violations.append(
                    (urn, f"trusts tag {rule.get('value')!r}, which no droplet in this stack has")
                )
    return violations


def _cluster_identity(props: Props) -> str | None:
    """The id a database firewall's ``clusterId`` names: ``id``, else the ``clusterUrn``'s uuid."""
    keys = list(props)
    if "id" in keys and props.get("id"):
        return str(props.get("id"))
    if "clusterUrn" in keys:
        urn = str(props.get("clusterUrn") or "")
        if urn.startswith("do:dbaas:"):
            return urn.removeprefix("do:dbaas:")
    return None


def firewall_coverage_violations(
    resources: Iterable[tuple[str, str, Props]],
) -> list[tuple[str | None, str]]:
    """Across the stack: every droplet is covered by a cloud firewall, through one of its tags
    or its id in a firewall's ``dropletIds``. A droplet outside every firewall is open on every
    port its services listen on."""
    resources = list(resources)
    firewalls = [p for typ, _, p in resources if typ == FIREWALL]
    tags = {tag for p in firewalls for tag in p.get("tags") or ()}
    ids = {str(i) for p in firewalls for i in p.get("dropletIds") or ()}
    return [
        (urn, f"droplet {p.get('name') or urn} is covered by no firewall (tags or dropletIds)")
        for typ, urn, p in resources
        if typ == DROPLET
        and not (set(p.get("tags") or ()) & tags)
        and not ("id" in list(p) and str(p.get("id")) in ids)
    ]


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


def uptime_violations(
    resources: Iterable[tuple[str, str, Props]],
) -> list[tuple[str | None, str]]:
    """Across the stack: every domain the stack serves has an enabled uptime check on
    ``https://<domain>``, and that check has an alert for the site being down.

    An alert belongs to a check through ``checkId``. When the check's own ``id`` is not among
    the properties the engine passed, any down alert of the stack is taken to be its alert.
    (During a preview, a value not known yet makes CrossGuard skip the stack policy.)
    """
    resources = list(resources)
    checks = [(urn, p) for typ, urn, p in resources if typ == UPTIME_CHECK]
    down_alert_checks = [
        str(p.get("checkId"))
        for typ, _, p in resources
        if typ == UPTIME_ALERT and p.get("type") in ("down", "down_global")
    ]
    violations: list[tuple[str | None, str]] = []
    for typ, urn, props in resources:
        if typ != DOMAIN:
            continue
        domain = str(props.get("name") or "").lower().rstrip(".")
        site = f"https://{domain}"
        watching = [
            (check_urn, p)
            for check_urn, p in checks
            if str(p.get("target") or "").lower().rstrip("/") == site
            and p.get("enabled") is not False
        ]
        if not watching:
            violations.append(
                (urn, f"domain {domain} has no enabled uptime check on {site}; add one")
            )
            continue
        ids = {str(p.get("id")) for _, p in watching if "id" in list(p)}
        if not any(not ids or check in ids for check in down_alert_checks):
            violations.append(
                (urn, f"the uptime check on {site} has no alert for the site being down")
            )
    return violations


def _present(props: Props, key: str) -> bool:
    """Whether ``key`` is set. Pulumi leaves unset (None) inputs out, so presence is what counts;
    iterating the keys never reads a value, which CrossGuard refuses during preview when the value
    is not known yet (the id of a VPC still to be created)."""
    return key in list(props)


def _port_bounds(port_range: object) -> tuple[int, int]:
    """First and last port of a DigitalOcean port range: '22', '20-30', or all ports as 'all',
    '0' (the API's own word for all), '1-65535' or nothing."""
    text = str(port_range or "").strip().lower()
    if text in ("", "all", "0"):
        return ALL_PORTS
    first, _, last = text.partition("-")
    return int(first), int(last or first)


def _covers(port_range: object, port: int) -> bool:
    first, last = _port_bounds(port_range)
    return first <= port <= last


def _world(rule: Props) -> str | None:
    """ "IPv4"/"IPv6" when the rule's source addresses together cover that whole family."""
    networks = []
    for address in rule.get("sourceAddresses") or ():
        try:
            networks.append(ipaddress.ip_network(str(address).strip(), strict=False))
        except ValueError:
            continue
    return covered_internet(networks)


ALL_IPV4 = ipaddress.IPv4Network("0.0.0.0/0")
ALL_IPV6 = ipaddress.IPv6Network("::/0")


def covered_internet(networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]):
    """``"IPv4"``/``"IPv6"`` when the networks' union is that whole address family, else None.

    The union is what a firewall admits, so 0.0.0.0/1 + 128.0.0.0/1 is as open as 0.0.0.0/0.
    An IPv4-mapped IPv6 network (inside ::ffff:0:0/96) counts as the IPv4 network it maps, and an
    IPv6 network holding all of ::ffff:0:0/96 (::/1, ::/8) therefore covers all of IPv4 too.
    The program's settings (infra/settings.py) refuse admin CIDRs with this same function.
    """
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for network in networks:
        if isinstance(network, ipaddress.IPv4Network):
            v4.append(network)
            continue
        v6.append(network)
        if network.subnet_of(IPV4_MAPPED):
            address = int(network.network_address) & 0xFFFFFFFF
            v4.append(ipaddress.IPv4Network((address, network.prefixlen - 96)))
        elif IPV4_MAPPED.subnet_of(network):
            v4.append(ALL_IPV4)
    covered = [
        family
        for family, found, everything in (("IPv4", v4, ALL_IPV4), ("IPv6", v6, ALL_IPV6))
        if list(ipaddress.collapse_addresses(found)) == [everything]
    ]
    return " and ".join(covered) or None
