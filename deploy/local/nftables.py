"""The cloud firewall and NAT of the local stack, as one nftables table built from infra's rules.

infra/firewall_rules.py is the single source of what a droplet may send and receive; this module
turns the same ``FirewallRule`` tuples into nft text, so the local droplet is filtered like a real
one. DigitalOcean applies a droplet's firewall to its public and VPC interfaces alike; so does this.

A packet between two hosts passes the sender's outbound policy, then the receiver's inbound policy
(``return`` in an outbound chain means "allowed, go on"; inbound chains give the final verdict).
Everything is rejected with admin-prohibited rather than dropped, so a blocked port fails at once
and reads differently from a closed one ("No route to host" against "Connection refused").

Beyond DigitalOcean's semantics, one guard keeps the HARD RULE of this machine: traffic from the
hosts may leave this machine only as DNS to its resolvers and HTTP(S) (package archives), NATed;
and nothing addressed to the test range ever leaves through the uplink.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from deploy.local.network import ADMIN_CIDR, LINK_PREFIX, TEST_RANGE, StackPlan, site_address
from deploy.local.redis import REDIS_PORT
from infra.firewall_rules import POSTGRES_PORT, FirewallRule

# The local ACME CA's listeners (deploy/local/acme.py LOCAL_CA): the ACME API on 443 as Let's
# Encrypt's, and the two management APIs only this machine may use.
ACME_API_PORT = 443
ACME_MANAGEMENT_PORTS = (15000, 8055)

TABLE_FAMILY = "inet"
TABLE_NAME = "dropstack"
REJECT = "reject with icmpx type admin-prohibited"
OURS = f'"{LINK_PREFIX}*"'


def ruleset(
    plan: StackPlan,
    *,
    web_inbound: Sequence[FirewallRule],
    web_outbound: Sequence[FirewallRule],
    db_trusted_tags: Sequence[str],
    tag_addresses: Mapping[str, Sequence[str]],
    resolvers: Sequence[str],
    db_ports: Sequence[int] = (POSTGRES_PORT,),
    redis_port: int = REDIS_PORT,
) -> str:
    """The whole ``inet dropstack`` table as text for ``nft -f``.

    ``tag_addresses`` resolves droplet tags to addresses (the web tag -> the web hosts' VPC
    addresses), as DigitalOcean does for a firewall or trusted source naming a tag. The Redis
    stand-in trusts the same sources as the database (infra/ gives both clusters the web tier).
    """
    web_links = _names(link for host in plan.web for link in host.root_link_names)
    db_links = _names(plan.db.root_link_names)
    lb = plan.lb
    lb_links = _names(lb.root_link_names) if lb else None
    # The load balancer's address inside the VPC: what the droplets see its traffic come from.
    lb_peers = [lb.private_ip] if lb else []

    acme = plan.acme
    acme_links = _names(acme.root_link_names) if acme else None

    def lb_jumps(into: str, out: str) -> list[str]:
        return [f"iifname {lb_links} jump {out}", f"oifname {lb_links} jump {into}"] if lb else []

    redis = plan.redis
    redis_links = _names(redis.root_link_names) if redis else None

    def redis_jumps() -> list[str]:
        if not redis:
            return []
        return [f"iifname {redis_links} jump redis_outbound",
                f"oifname {redis_links} jump redis_inbound"]  # fmt: skip

    def acme_jumps() -> list[str]:
        return (
            [f"iifname {acme_links} jump acme_outbound", f"oifname {acme_links} jump acme_inbound"]
            if acme
            else []
        )

    db_sources = [a for tag in db_trusted_tags for a in _tag(tag_addresses, tag)]
    chains = [
        _chain(
            "forward",
            "type filter hook forward priority filter; policy accept;",
            [
                f'iifname != {OURS} oifname != {OURS} accept comment "not the local stack\'s"',
                "ct state established,related accept",
                "ct state invalid drop",
                f"iifname {web_links} jump web_outbound",
                f"iifname {db_links} jump db_outbound",
                f"oifname {web_links} jump web_inbound",
                f"oifname {db_links} jump db_inbound",
                *lb_jumps("lb_inbound", "lb_outbound"),
                *acme_jumps(),
                *redis_jumps(),
                f"oifname != {OURS} jump leave_machine",
            ],
        ),
        _chain(
            "output",
            "type filter hook output priority filter; policy accept;",
            [
                # Loopback first: the rejects below answer this machine's own packets with ICMP
                # sent to 198.18.0.1 over lo, which must not be caught by the next rule.
                'oifname "lo" accept',
                f"oifname != {OURS} ip daddr {TEST_RANGE} {REJECT}"
                ' comment "the test range stays here"',
                f"oifname != {OURS} accept",
                "ct state established,related accept",
                f"oifname {web_links} jump web_inbound",
                f"oifname {db_links} jump db_inbound",
                *([f"oifname {lb_links} jump lb_inbound"] if lb else []),
                *([f"oifname {acme_links} jump acme_inbound"] if acme else []),
                *([f"oifname {redis_links} jump redis_inbound"] if redis else []),
            ],
        ),
        _chain(
            "input",
            "type filter hook input priority filter; policy accept;",
            [
                f"iifname != {OURS} accept",
                "ct state established,related accept",
                f"iifname {web_links} jump web_outbound",
                f"iifname {db_links} jump db_outbound",
                *([f"iifname {lb_links} jump lb_outbound"] if lb else []),
                *([f"iifname {acme_links} jump acme_outbound"] if acme else []),
                *([f"iifname {redis_links} jump redis_outbound"] if redis else []),
            ],
        ),
        _chain(
            "web_inbound",
            None,
            [*_rule_lines(web_inbound, "inbound", tag_addresses, "accept", lb_peers), REJECT],
        ),
        _chain(
            "web_outbound",
            None,
            [*_rule_lines(web_outbound, "outbound", tag_addresses, "return"), REJECT],
        ),
        _chain(
            "db_inbound",
            None,
            [
                f"tcp dport {_set([str(p) for p in db_ports])} ip saddr {_set(db_sources)} accept"
                ' comment "trusted sources: the web tier"',
                # Not a DigitalOcean rule (a managed database has no SSH): `fab local.up`
                # configures the database host over SSH from the admin address.
                f'tcp dport 22 ip saddr {ADMIN_CIDR} accept comment "local only: admin ssh"',
                REJECT,
            ],
        ),
        _chain("db_outbound", None, [f'{REJECT} comment "a managed database opens nothing"']),
        *(
            [
                _chain(
                    "lb_inbound",
                    None,
                    [
                        'tcp dport { 80, 443 } accept comment "the load balancer\'s listeners"',
                        "meta l4proto icmp accept",
                        REJECT,
                    ],
                ),
                _chain(
                    "lb_outbound",
                    None,
                    [
                        f"tcp dport 80 ip daddr {_set(h.private_ip for h in plan.web)} return"
                        ' comment "to the droplets, and health checks"',
                        f'{REJECT} comment "a load balancer reaches only its droplets"',
                    ],
                ),
            ]
            if lb
            else []
        ),
        *(_acme_chains(plan) if acme else []),
        *(_redis_chains(db_sources, redis_port) if redis else []),
        _chain(
            "leave_machine",
            None,
            [
                f"ip daddr {TEST_RANGE} {REJECT}",
                *(
                    [f"meta l4proto {{ tcp, udp }} th dport 53 ip daddr {_set(resolvers)} accept"]
                    if resolvers
                    else []
                ),
                'tcp dport { 80, 443 } accept comment "package archives"',
                REJECT,
            ],
        ),
        _chain(
            "postrouting",
            "type nat hook postrouting priority srcnat; policy accept;",
            [f"ip saddr {TEST_RANGE} ip daddr != {TEST_RANGE} oifname != {OURS} masquerade"],
        ),
    ]
    header = (
        f"# Generated by deploy/local/nftables.py. `fab local.down` deletes this table whole.\n"
        f"table {TABLE_FAMILY} {TABLE_NAME}\n"
        # Declare-then-delete makes `nft -f` replace an old table atomically instead of failing.
        f"delete table {TABLE_FAMILY} {TABLE_NAME}\n"
    )
    return header + f"table {TABLE_FAMILY} {TABLE_NAME} {{\n" + "\n".join(chains) + "}\n"


def _acme_chains(plan: StackPlan) -> list[str]:
    """The local ACME CA: its API for the web hosts and this machine (certbot), its management
    APIs for this machine only; it opens nothing but HTTP-01 fetches from the site's address."""
    clients = [ADMIN_CIDR.split("/")[0], *(h.public_ip or "" for h in plan.web)]
    management = _set(str(p) for p in ACME_MANAGEMENT_PORTS)
    return [
        _chain(
            "acme_inbound",
            None,
            [
                f"tcp dport {ACME_API_PORT} ip saddr {_set(clients)} accept"
                ' comment "the ACME API: certbot on the web hosts and this machine"',
                f"tcp dport {management} ip saddr {ADMIN_CIDR} accept"
                " comment \"pebble's and challtestsrv's management: this machine only\"",
                "meta l4proto icmp accept",
                REJECT,
            ],
        ),
        _chain(
            "acme_outbound",
            None,
            [
                f"tcp dport 80 ip daddr {site_address(plan)} return"
                ' comment "HTTP-01 validation at the site\'s address"',
                f'{REJECT} comment "the CA reaches only the site"',
            ],
        ),
    ]


def _redis_chains(sources: Sequence[str], port: int) -> list[str]:
    """The managed Redis stand-in: its TLS port for its trusted sources (the web tier) and
    nothing else, not even this machine (`local.up` checks it from inside its namespace)."""
    return [
        _chain(
            "redis_inbound",
            None,
            [
                f"tcp dport {port} ip saddr {_set(sources)} accept"
                ' comment "trusted sources: the web tier"',
                REJECT,
            ],
        ),
        _chain("redis_outbound", None, [f'{REJECT} comment "a managed Redis opens nothing"']),
    ]


def delete_table_command() -> list[str]:
    return ["nft", "delete", "table", TABLE_FAMILY, TABLE_NAME]


def list_table_command() -> list[str]:
    return ["nft", "list", "table", TABLE_FAMILY, TABLE_NAME]


def _chain(name: str, hook: str | None, lines: Sequence[str]) -> str:
    body = ([hook] if hook else []) + list(lines)
    return f"\tchain {name} {{\n" + "".join(f"\t\t{line}\n" for line in body) + "\t}\n"


def _rule_lines(
    rules: Iterable[FirewallRule], direction: str, tags: Mapping[str, Sequence[str]], verdict: str,
    lb_peers: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """One nft line per rule and address family it names; ``direction`` picks saddr or daddr.
    A rule naming the load balancer resolves to ``lb_peers``, its addresses."""
    lines = []
    for rule in rules:
        if rule.load_balancer and not lb_peers:
            raise ValueError(f"rule {rule.description!r}: this local stack has no load balancer")
        peers = [*rule.addresses, *(a for tag in rule.tags for a in _tag(tags, tag))]
        peers += list(lb_peers) if rule.load_balancer else []
        for peer_match in _peer_matches(peers, "saddr" if direction == "inbound" else "daddr"):
            parts = [peer_match, _protocol_match(rule, peer_match), verdict]
            comment = rule.description.replace('"', "'")
            lines.append(" ".join(p for p in parts if p) + f' comment "{comment}"')
    return lines


def _peer_matches(peers: Sequence[str], field: str) -> list[str]:
    """Address matches covering ``peers``: '' when they span all of IPv4 and IPv6."""
    networks = [ipaddress.ip_network(p, strict=False) for p in peers]
    matches = []
    for version, keyword, nfproto in ((4, "ip", "ipv4"), (6, "ip6", "ipv6")):
        family = [n for n in networks if n.version == version]
        if not family:
            continue
        if any(n.prefixlen == 0 for n in family):
            matches.append(f"meta nfproto {nfproto}")
        else:
            matches.append(f"{keyword} {field} {_set(str(n) for n in family)}")
    if matches == ["meta nfproto ipv4", "meta nfproto ipv6"]:
        return [""]
    return matches


def _protocol_match(rule: FirewallRule, peer_match: str) -> str:
    if rule.protocol == "icmp":
        if peer_match.startswith("ip6") or peer_match.endswith("ipv6"):
            return "meta l4proto ipv6-icmp"
        if peer_match:
            return "meta l4proto icmp"
        return "meta l4proto { icmp, ipv6-icmp }"
    first, last = rule.ports
    return f"{rule.protocol} dport {first if first == last else f'{first}-{last}'}"


def _tag(tag_addresses: Mapping[str, Sequence[str]], tag: str) -> Sequence[str]:
    try:
        return tag_addresses[tag]
    except KeyError:
        raise ValueError(f"tag {tag!r} names no hosts of the local stack") from None


def _names(names: Iterable[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in names) + " }"


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"
