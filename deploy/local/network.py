"""The local stack's network as data, and the ``ip`` commands that build it.

Routed, no bridge: every host sits in its own network namespace joined to this machine by one veth
pair per interface, so every packet between hosts, and between a host and this machine, crosses the
root namespace's nftables (the cloud firewall, see ``nftables``). This machine is the router and
answers as 198.18.0.1 on every link; proxy ARP on the root-side ends lets a host reach its on-link
neighbours (another web host, the database) through it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

TEST_RANGE = "198.18.0.0/15"  # RFC 2544 benchmarking range; nothing here leaves this machine
PUBLIC_SUBNET = "198.18.0.0/24"  # "the internet side"
VPC_CIDR = "198.18.1.0/24"
ROUTER_ADDRESS = "198.18.0.1"  # this machine, on every link
ADMIN_CIDR = f"{ROUTER_ADDRESS}/32"
DB_ADDRESS = "198.18.1.100"
# The load balancer: its public address (the inventory's load_balancer_ip) and its VPC side.
LB_PUBLIC_ADDRESS = "198.18.0.2"
LB_VPC_ADDRESS = "198.18.1.2"
# The local ACME CA (pebble and its test DNS), with a domain: on the public side, as Let's
# Encrypt is on the internet, reaching the site's address for HTTP-01 like any client.
ACME_ADDRESS = "198.18.0.3"
# The managed Redis (Valkey) stand-in: beside the database, in the VPC only (deploy/local/redis.py).
REDIS_ADDRESS = "198.18.1.101"
MAX_WEB_COUNT = 10
NETNS_DIR = "/run/netns"
# Every interface this project creates in the root namespace starts with this, and nothing else
# does: the firewall tells "ours" from the machine's other traffic by it.
LINK_PREFIX = "ds-"


@dataclass(frozen=True)
class Link:
    """One veth pair: ``root_name`` in this machine's namespace, ``inner_name`` inside the host."""

    root_name: str
    inner_name: str
    address: str
    prefix_len: int


@dataclass(frozen=True)
class HostPlan:
    name: str
    role: str  # "web" or "db"
    netns: str
    links: tuple[Link, ...]

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"

    @property
    def public_ip(self) -> str | None:
        return _address_in(self.links, PUBLIC_SUBNET)

    @property
    def private_ip(self) -> str:
        address = _address_in(self.links, VPC_CIDR)
        assert address, f"{self.name} has no VPC address"
        return address

    @property
    def ssh_address(self) -> str:
        """Where this machine reaches the host's sshd: the public address, or the VPC one for db."""
        return self.public_ip or self.private_ip

    @property
    def root_link_names(self) -> tuple[str, ...]:
        return tuple(link.root_name for link in self.links)


def _address_in(links: tuple[Link, ...], cidr: str) -> str | None:
    network = ipaddress.ip_network(cidr)
    return next((x.address for x in links if ipaddress.ip_address(x.address) in network), None)


@dataclass(frozen=True)
class StackPlan:
    web: tuple[HostPlan, ...]
    db: HostPlan
    lb: HostPlan | None = None  # a namespace, not a container: HAProxy runs in it
    acme: HostPlan | None = None  # a namespace: pebble and pebble-challtestsrv, with a domain
    redis: HostPlan | None = None  # a namespace: redis-server, the managed Redis stand-in

    @property
    def hosts(self) -> tuple[HostPlan, ...]:
        """The containers (droplets and the database)."""
        return (*self.web, self.db)

    @property
    def namespaces(self) -> tuple[HostPlan, ...]:
        """Everything with a network namespace and links: the hosts, the load balancer, the CA
        and the Redis stand-in."""
        return (*self.hosts, *(n for n in (self.lb, self.acme, self.redis) if n))

    def host(self, name: str) -> HostPlan:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise KeyError(f"no host {name!r} in this stack; it has {known}")


def web_host(number: int) -> HostPlan:
    """web-N: eth0 on the public subnet at .(10+N), eth1 in the VPC at .(10+N)."""
    return HostPlan(
        name=f"web-{number}",
        role="web",
        netns=f"ds-web-{number}",
        links=(
            Link(f"ds-web{number}-pub", "eth0", _nth(PUBLIC_SUBNET, 10 + number), 24),
            Link(f"ds-web{number}-vpc", "eth1", _nth(VPC_CIDR, 10 + number), 24),
        ),
    )


def db_host() -> HostPlan:
    """The managed database has a VPC address only, as on DigitalOcean's private network."""
    return HostPlan(
        name="db", role="db", netns="ds-db", links=(Link("ds-db-vpc", "eth0", DB_ADDRESS, 24),)
    )


def load_balancer_host() -> HostPlan:
    """The load balancer: public on one side, in the VPC (where it reaches the droplets) on the
    other, as DigitalOcean's is."""
    return HostPlan(
        name="lb",
        role="lb",
        netns="ds-lb",
        links=(
            Link("ds-lb-pub", "eth0", LB_PUBLIC_ADDRESS, 24),
            Link("ds-lb-vpc", "eth1", LB_VPC_ADDRESS, 24),
        ),
    )


def acme_host() -> HostPlan:
    """The local ACME CA: one public link, nothing in the VPC (Let's Encrypt is outside it)."""
    return HostPlan(
        name="acme", role="acme", netns="ds-acme",
        links=(Link("ds-acme-pub", "eth0", ACME_ADDRESS, 24),),
    )  # fmt: skip


def redis_host() -> HostPlan:
    """The managed Redis stand-in: a VPC address only, as DigitalOcean's private network gives
    a managed Valkey cluster (its public endpoint is not used)."""
    return HostPlan(
        name="redis", role="redis", netns="ds-redis",
        links=(Link("ds-redis-vpc", "eth0", REDIS_ADDRESS, 24),),
    )  # fmt: skip


def _nth(cidr: str, index: int) -> str:
    return str(ipaddress.ip_network(cidr)[index])


def plan_stack(web_count: int, load_balancer: bool | None = None, acme: bool = False) -> StackPlan:
    """The stack's hosts. A load balancer whenever there is more than one web host (as infra/
    creates one), or when asked for with one; the local ACME CA with a domain. The Redis
    stand-in always: it costs one small process, and `local.up` does not read the app contract
    (docs/local-droplet.md)."""
    if not 1 <= web_count <= MAX_WEB_COUNT:
        raise ValueError(f"web count must be 1..{MAX_WEB_COUNT}, not {web_count}")
    with_lb = web_count > 1 if load_balancer is None else load_balancer
    return StackPlan(
        web=tuple(web_host(n) for n in range(1, web_count + 1)),
        db=db_host(),
        lb=load_balancer_host() if with_lb else None,
        acme=acme_host() if acme else None,
        redis=redis_host(),
    )


def site_address(plan: StackPlan) -> str:
    """Where the site's domain points: the load balancer's address, else the one web host's
    (infra/ gives the DNS record the same choice)."""
    return (plan.lb or plan.web[0]).public_ip or ""


def largest_plan() -> StackPlan:
    """Every host a local stack can have: ``down`` cleans all of their names, whatever was made."""
    return plan_stack(MAX_WEB_COUNT, load_balancer=True, acme=True)


def host_network_commands(host: HostPlan) -> list[list[str]]:
    """The ``ip``/``sysctl`` commands that give a host its namespace, links and routes."""
    ns = host.netns
    lines = [f"ip netns add {ns}", f"ip -n {ns} link set lo up"]
    for link in host.links:
        root, inner = link.root_name, link.inner_name
        lines += [
            f"ip link add {root} type veth peer name {inner} netns {ns}",
            f"ip addr add {ROUTER_ADDRESS}/32 dev {root}",
            f"sysctl -q -w net.ipv4.conf.{root}.proxy_arp=1",
            f"ip link set {root} up",
            f"ip route add {link.address}/32 dev {root}",
            f"ip -n {ns} addr add {link.address}/{link.prefix_len} dev {inner}",
            f"ip -n {ns} link set {inner} up",
        ]
    # The router is on-link on every interface even where it is outside the interface's subnet
    # (the database's VPC-only link), hence onlink.
    lines.append(
        f"ip -n {ns} route add default via {ROUTER_ADDRESS} dev {host.links[0].inner_name} onlink"
    )
    # Every word is a name or address this module made; none contains whitespace.
    return [line.split() for line in lines]
