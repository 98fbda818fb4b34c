"""The web tier: droplets booted by cloud-init, their cloud firewall, and the public entry point.

One droplet serves the site itself (TLS by certbot on the host, through a reserved IP when there
is a domain). More than one sit behind a load balancer that checks ``/readyz`` and, with a
domain, terminates TLS with a Let's Encrypt certificate DigitalOcean issues and renews; its
health check and listeners are data in ``load_balancer_policy``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict

import pulumi
import pulumi_digitalocean as digitalocean

from infra.cloudinit import DEPLOY_USER, render_user_data
from infra.firewall_rules import (
    POSTGRES_POOL_PORT,
    VALKEY_PORT,
    FirewallRule,
    web_inbound_rules,
    web_outbound_rules,
)
from infra.load_balancer_policy import (
    HEALTH_CHECK,
    forwarding_rules,
    redirects_http_to_https,
)
from infra.network import Network
from infra.outputs import site_url
from infra.settings import Settings

# DigitalOcean only reads ssh_keys and user_data when it creates a droplet, so the provider
# replaces the droplet when either changes. Keys on live hosts are rotated by `fab keys.rotate`;
# the stack keeps the values it booted with rather than replacing every droplet at once.
DROPLET_IGNORED_CHANGES = ["ssh_keys", "user_data"]


def certificate_name(tier: str, domain: str) -> str:
    """A certificate name unique per domain: a domain change creates the new certificate before
    deleting the old one, and two certificates may not share a name."""
    return f"{tier}-cert-{hashlib.sha256(domain.encode()).hexdigest()[:12]}"


class WebTier(pulumi.ComponentResource):
    """``web_count`` droplets sharing a tag (the tier's name), firewalled by that tag.

    ``name`` (e.g. ``dropstack-prod-web``) is also the tag and the droplets' name stem:
    ``dropstack-prod-web-1``, ``-2``, ...
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        network: Network,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("dropstack:web:WebTier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.tag = digitalocean.Tag(name, name=name, opts=child)
        # Order matters: tag, then the load balancer (it targets the tag, not droplet ids), then
        # the firewall (it names the load balancer), then the droplets, born behind the firewall.
        self.domain = (
            digitalocean.Domain(f"{name}-domain", name=settings.domain, opts=child)
            if settings.domain
            else None
        )
        self.load_balancer = (
            self._load_balancer(name, settings, network) if settings.behind_load_balancer else None
        )
        self.firewall = digitalocean.Firewall(
            f"{name}-firewall",
            name=f"{name}-firewall",
            tags=[self.tag.name],
            inbound_rules=inbound_rule_args(
                web_inbound_rules(
                    settings.admin_cidrs, behind_load_balancer=settings.behind_load_balancer
                ),
                load_balancer_uid=self.load_balancer.id if self.load_balancer else None,
            ),
            outbound_rules=network.vpc_cidr.apply(
                lambda cidr: outbound_rule_args(
                    web_outbound_rules(
                        cidr,
                        pool_port=POSTGRES_POOL_PORT if settings.db_pool_enabled else None,
                        redis_port=VALKEY_PORT if settings.redis else None,
                    )
                )
            ),
            opts=child,
        )

        self.droplets = [
            digitalocean.Droplet(
                f"{name}-{number}",
                name=f"{name}-{number}",
                region=settings.region,
                size=settings.droplet_size,
                image=settings.droplet_image,
                vpc_uuid=network.vpc_id,
                monitoring=True,
                tags=[self.tag.name],
                ssh_keys=network.ssh_key_fingerprints,
                user_data=render_user_data(
                    hostname=f"{name}-{number}",
                    deploy_user=DEPLOY_USER,
                    ssh_public_keys=settings.ssh_public_keys,
                ),
                # Destroying or replacing a droplet shuts it down first (ACPI), so nginx and
                # gunicorn stop cleanly instead of losing power mid-request.
                graceful_shutdown=True,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # The firewall exists before any droplet boots: no open window at first boot.
                    depends_on=[self.firewall],
                    ignore_changes=DROPLET_IGNORED_CHANGES,
                ),
            )
            for number in range(1, settings.web_count + 1)
        ]

        # The site's public address: the load balancer, or (with a domain) a reserved IP that
        # survives replacing the single droplet, or else that droplet's own address.
        self.reserved_ip = None
        if self.load_balancer:
            entry_ip = self.load_balancer.ip
        elif self.domain:
            self.reserved_ip = digitalocean.ReservedIp(
                f"{name}-ip", region=settings.region, opts=child
            )
            digitalocean.ReservedIpAssignment(
                f"{name}-ip-assignment",
                ip_address=self.reserved_ip.ip_address,
                droplet_id=self.droplets[0].id.apply(int),
                opts=child,
            )
            entry_ip = self.reserved_ip.ip_address
        else:
            entry_ip = self.droplets[0].ipv4_address
        self.dns_record = (
            digitalocean.DnsRecord(
                f"{name}-dns-a",
                domain=self.domain.id,
                type="A",
                name="@",
                value=entry_ip,
                ttl=300,
                opts=child,
            )
            if self.domain
            else None
        )

        # The load balancer and the database join the project at creation (project_id);
        # droplets, the reserved IP and the domain can only be added afterwards.
        digitalocean.ProjectResources(
            f"{name}-project-resources",
            project=network.project_id,
            resources=[
                *(droplet.droplet_urn for droplet in self.droplets),
                *([self.reserved_ip.reserved_ip_urn] if self.reserved_ip else []),
                *([self.domain.domain_urn] if self.domain else []),
            ],
            opts=child,
        )

        self.tag_name: pulumi.Output[str] = self.tag.name
        self.names = pulumi.Output.all(*(d.name for d in self.droplets))
        self.public_ips = pulumi.Output.all(*(d.ipv4_address for d in self.droplets))
        self.private_ips = pulumi.Output.all(*(d.ipv4_address_private for d in self.droplets))
        self.load_balancer_ip: pulumi.Input[str] = (
            self.load_balancer.ip if self.load_balancer else ""
        )
        self.url = pulumi.Output.from_input(entry_ip).apply(
            lambda address: site_url(settings.domain, address)
        )
        self.register_outputs(
            {
                "tag": self.tag_name,
                "names": self.names,
                "public_ips": self.public_ips,
                "private_ips": self.private_ips,
                "load_balancer_ip": self.load_balancer_ip,
                "url": self.url,
            }
        )

    def _load_balancer(
        self, name: str, settings: Settings, network: Network
    ) -> digitalocean.LoadBalancer:
        """HTTP on 80 to the droplets' port 80; with a domain, HTTPS on 443 too (TLS ends here)."""
        with_domain = self.domain is not None
        certificate_arg: dict[str, pulumi.Input[str]] = {}
        if self.domain:
            certificate = digitalocean.Certificate(
                f"{name}-cert",
                name=certificate_name(name, settings.domain),
                type="lets_encrypt",
                domains=[settings.domain],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.domain]),
            )
            certificate_arg = {"certificate_name": certificate.name}
        forwarding = [
            digitalocean.LoadBalancerForwardingRuleArgs(
                entry_port=rule.entry_port,
                entry_protocol=rule.entry_protocol,
                target_port=rule.target_port,
                target_protocol=rule.target_protocol,
                **(certificate_arg if rule.terminates_tls else {}),
            )
            for rule in forwarding_rules(with_domain=with_domain)
        ]
        return digitalocean.LoadBalancer(
            f"{name}-lb",
            name=f"{name}-lb",
            region=settings.region,
            vpc_uuid=network.vpc_id,
            project_id=network.project_id,
            size_unit=1,
            droplet_tag=self.tag.name,
            healthcheck=digitalocean.LoadBalancerHealthcheckArgs(**asdict(HEALTH_CHECK)),
            forwarding_rules=forwarding,
            redirect_http_to_https=redirects_http_to_https(with_domain=with_domain),
            # The stack's own DnsRecord is the site's one A record; DigitalOcean adds none.
            disable_lets_encrypt_dns_records=True,
            # No depends_on the droplets: the balancer targets the tag, and the droplets wait for
            # the firewall, which needs this balancer's id.
            opts=pulumi.ResourceOptions(parent=self),
        )


def inbound_rule_args(
    rules: Iterable[FirewallRule], *, load_balancer_uid: pulumi.Input[str] | None
) -> list[digitalocean.FirewallInboundRuleArgs]:
    """The rule data as DigitalOcean inbound rules; a load-balancer peer needs its uid."""
    args = []
    for rule in rules:
        if rule.load_balancer and load_balancer_uid is None:
            raise ValueError(f"rule {rule.description!r} needs a load balancer, and there is none")
        load_balancers = [load_balancer_uid] if rule.load_balancer else None
        args.append(
            digitalocean.FirewallInboundRuleArgs(
                **_ports_and_peers(rule, "source"), source_load_balancer_uids=load_balancers
            )
        )
    return args


def outbound_rule_args(
    rules: Iterable[FirewallRule],
) -> list[digitalocean.FirewallOutboundRuleArgs]:
    """The rule data as DigitalOcean outbound rules (web droplets never dial the load balancer)."""
    args = []
    for rule in rules:
        if rule.load_balancer:
            raise ValueError(f"outbound rule {rule.description!r} cannot target the load balancer")
        args.append(digitalocean.FirewallOutboundRuleArgs(**_ports_and_peers(rule, "destination")))
    return args


def _ports_and_peers(rule: FirewallRule, side: str) -> dict[str, object]:
    """What inbound and outbound rules say alike, as DigitalOcean's arguments: the protocol,
    the ports, and the peer addresses and tags, which are the ``source`` of an inbound rule and
    the ``destination`` of an outbound one. An empty list is None: the API's "not set"."""
    return {
        "protocol": rule.protocol,
        "port_range": rule.port_range or None,
        f"{side}_addresses": list(rule.addresses) or None,
        f"{side}_tags": list(rule.tags) or None,
    }
