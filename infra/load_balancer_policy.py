"""The load balancer's behaviour as plain data: its health check and its forwarding rules.

infra/web.py builds the DigitalOcean load balancer from these; a local stand-in (HAProxy on the
local droplet) reads the same values, so "healthy" means the same thing in both places. The
droplets' firewall when behind a load balancer is ``firewall_rules.web_inbound_rules(...,
behind_load_balancer=True)``, re-exported here as ``droplet_inbound_rules``. Nothing here knows
Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.firewall_rules import FirewallRule, web_inbound_rules

HEALTH_CHECK_PATH = "/readyz"


@dataclass(frozen=True)
class HealthCheck:
    """How the load balancer decides a droplet may take traffic (DigitalOcean's field names)."""

    protocol: str = "http"
    port: int = 80
    path: str = HEALTH_CHECK_PATH
    # Tighter than DigitalOcean's defaults (10 s, 5 s, 5, 3): a dead droplet keeps getting its
    # share of requests until unhealthy_threshold checks failed, so at most (3 + 1) x 5 s + 3 s
    # = 23 s here against 45 s. /readyz answers within the app's 2 s database connect timeout,
    # so 3 s is enough, and three good answers in a row (15 s) still keep a droplet that flaps
    # out. The cost is one more request every 5 s per droplet. DigitalOcean's control panel offers
    # 3-300 s for both times and 2-10 for both thresholds.
    check_interval_seconds: int = 5
    response_timeout_seconds: int = 3
    healthy_threshold: int = 3
    unhealthy_threshold: int = 3


HEALTH_CHECK = HealthCheck()


@dataclass(frozen=True)
class ForwardingRule:
    """One listener: ``entry_*`` on the load balancer, ``target_*`` on the droplets.

    ``terminates_tls`` means the load balancer holds the certificate and talks plain HTTP on.
    """

    entry_port: int
    entry_protocol: str
    target_port: int
    target_protocol: str
    terminates_tls: bool = False


def forwarding_rules(*, with_domain: bool) -> tuple[ForwardingRule, ...]:
    """HTTP 80 -> 80 always; with a domain also HTTPS 443 -> HTTP 80, TLS ending at the LB."""
    rules = [ForwardingRule(80, "http", 80, "http")]
    if with_domain:
        rules.append(ForwardingRule(443, "https", 80, "http", terminates_tls=True))
    return tuple(rules)


def redirects_http_to_https(*, with_domain: bool) -> bool:
    """With a certificate, plain HTTP only redirects to HTTPS."""
    return with_domain


def droplet_inbound_rules(admin_cidrs: tuple[str, ...]) -> tuple[FirewallRule, ...]:
    """What may reach a droplet behind the load balancer: SSH from the admins, 80/443 from the
    load balancer only (``source_load_balancer_uids``), ping from anywhere."""
    return web_inbound_rules(admin_cidrs, behind_load_balancer=True)
