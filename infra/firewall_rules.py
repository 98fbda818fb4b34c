"""The cloud firewall's rules as plain data.

infra/web.py turns these into a ``digitalocean.Firewall``; deploy/local turns the same rules into
nftables so the local droplet is filtered exactly like a real one. Nothing here knows Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ANYWHERE = ("0.0.0.0/0", "::/0")
POSTGRES_PORT = 25060  # DigitalOcean's managed PostgreSQL listens here, not on 5432
POSTGRES_POOL_PORT = 25061  # and its PgBouncer connection pools here
REDIS_PORT = 25061  # a managed Valkey (Redis) cluster: TLS only, on its own host


@dataclass(frozen=True)
class FirewallRule:
    """One allow rule. A peer is any of: CIDR ``addresses``, droplet ``tags``, the stack's
    load balancer. ``port_range`` is ``"22"``, ``"1-65535"`` or ``""`` for ICMP."""

    protocol: str
    port_range: str
    description: str
    addresses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    load_balancer: bool = False
    ports: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp", "icmp"):
            raise ValueError(f"protocol: {self.protocol!r} is not one of tcp, udp, icmp")
        if not (self.addresses or self.tags or self.load_balancer):
            raise ValueError(f"rule {self.description!r} has no peer")
        object.__setattr__(self, "ports", _expand(self.port_range))


def _expand(port_range: str) -> tuple[int, ...]:
    """Return the first and last port of a range ('' means all ports, as for ICMP)."""
    if not port_range:
        return ()
    first, _, last = port_range.partition("-")
    return (int(first), int(last or first))


def web_inbound_rules(
    admin_cidrs: tuple[str, ...], *, behind_load_balancer: bool
) -> tuple[FirewallRule, ...]:
    """What may reach a web droplet: SSH from the admins, HTTP(S) from the world or the LB only."""
    http_peer = {"load_balancer": True} if behind_load_balancer else {"addresses": ANYWHERE}
    return (
        FirewallRule("tcp", "22", "ssh from admin networks", addresses=tuple(admin_cidrs)),
        FirewallRule("tcp", "80", "http", **http_peer),
        FirewallRule("tcp", "443", "https", **http_peer),
        FirewallRule("icmp", "", "ping and path-MTU discovery", addresses=ANYWHERE),
    )


def web_outbound_rules(
    vpc_cidr: str, *, db_port: int = POSTGRES_PORT, pool_port: int | None = None,
    redis_port: int | None = None,
) -> tuple[FirewallRule, ...]:  # fmt: skip
    """What a web droplet may reach: DNS, NTP, HTTP(S) for apt/certbot, the database in the VPC.

    ``pool_port`` adds the database's connection-pool port, ``redis_port`` the managed Redis
    (the workers' queue), both inside the VPC only.
    """
    vpc = (vpc_cidr,)
    database = [FirewallRule("tcp", str(db_port), "postgresql inside the vpc", addresses=vpc)]
    if pool_port is not None:
        database.append(
            FirewallRule("tcp", str(pool_port), "postgresql pool in the vpc", addresses=vpc)
        )
    if redis_port is not None and redis_port != pool_port:
        database.append(FirewallRule("tcp", str(redis_port), "redis inside the vpc", addresses=vpc))
    return (
        FirewallRule("udp", "53", "dns", addresses=ANYWHERE),
        FirewallRule("tcp", "53", "dns over tcp", addresses=ANYWHERE),
        FirewallRule("udp", "123", "ntp", addresses=ANYWHERE),
        FirewallRule("tcp", "80", "http (apt)", addresses=ANYWHERE),
        FirewallRule("tcp", "443", "https (apt, certbot)", addresses=ANYWHERE),
        *database,
        FirewallRule("icmp", "", "ping", addresses=ANYWHERE),
    )


def database_trusted_tags(web_tag: str) -> tuple[str, ...]:
    """The database firewall's only trusted sources: droplets carrying the web tier's tag."""
    return (web_tag,)
