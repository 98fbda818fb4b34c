"""The rules in ``rules`` as CrossGuard policies, all mandatory: a violation stops the update."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

try:  # imported as infra.policy.policies (tests)
    from . import rules
except ImportError:  # run by the Pulumi CLI, with this directory on sys.path
    import rules  # type: ignore[no-redef]

PACK_NAME = "dropstack-guardrails"


def _resource_policy(
    name: str, resource_type: str, rule: Callable[[rules.Props], list[str]], description: str
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type == resource_type:
            for message in rule(args.props):
                report_violation(f"{args.name}: {message}", None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def _stack_policy(
    name: str,
    rule: Callable[[Iterable[tuple[str, str, rules.Props]]], list[tuple[str | None, str]]],
    description: str,
) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [(r.resource_type, r.urn, r.props) for r in args.resources]
        for urn, message in rule(resources):
            report_violation(message, urn)

    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


POLICIES = [
    _resource_policy(
        "no-ssh-from-anywhere",
        rules.FIREWALL,
        rules.firewall_ssh_violations,
        "Cloud firewalls must not open SSH (22) to 0.0.0.0/0 or ::/0.",
    ),
    _resource_policy(
        "only-web-ports-open-to-the-world",
        rules.FIREWALL,
        rules.firewall_world_port_violations,
        "Cloud firewalls may open only tcp 80 and 443 to the whole internet.",
    ),
    _resource_policy(
        "database-firewall-tags-only",
        rules.DATABASE_FIREWALL,
        rules.database_firewall_violations,
        "Database firewalls may trust droplet tags only.",
    ),
    _resource_policy(
        "droplet-monitoring-and-vpc",
        rules.DROPLET,
        rules.droplet_violations,
        "Droplets must have monitoring enabled and be in a VPC.",
    ),
    _resource_policy(
        "database-on-private-network",
        rules.DATABASE_CLUSTER,
        rules.database_cluster_violations,
        "Database clusters must be on a private network (private_network_uuid).",
    ),
    _stack_policy(
        "database-trusts-this-stacks-droplets",
        rules.database_trust_violations,
        "Each database cluster (PostgreSQL, the Redis tier's Valkey) has a firewall of its own "
        "trusting only tags this stack's droplets carry.",
    ),
    _stack_policy(
        "every-droplet-behind-a-firewall",
        rules.firewall_coverage_violations,
        "Every droplet is covered by a cloud firewall, by tag or by droplet id.",
    ),
    _stack_policy(
        "one-vpc-one-region",
        rules.placement_violations,
        "Droplets, load balancers and database clusters share one VPC and one region.",
    ),
    _stack_policy(
        "domain-has-an-uptime-check",
        rules.uptime_violations,
        "A stack with a domain has an uptime check on https://<domain> with a 'down' alert.",
    ),
]
