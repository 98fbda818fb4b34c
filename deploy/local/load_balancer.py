"""The local stand-in for DigitalOcean's load balancer: HAProxy in its own network namespace.

It listens on the stack's load balancer address (``load_balancer_ip`` in the inventory) and
forwards to the web hosts' VPC addresses, with the health check ``infra/`` gives the real one
(``infra.load_balancer_policy.HEALTH_CHECK``: the same path, port, interval, timeout and
thresholds, read from the same object), so a host is taken out and put back on the same
schedule as on DigitalOcean. Pure: the config text and the commands; lifecycle runs them.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploy.local.network import HostPlan
from infra.load_balancer_policy import HEALTH_CHECK, HealthCheck, forwarding_rules

# DigitalOcean's default http_idle_timeout_seconds.
IDLE_TIMEOUT_SECONDS = 60
PROCESS_TAG = "dropstack-lb"


def haproxy_config(
    lb: HostPlan, backends: Sequence[HostPlan], check: HealthCheck = HEALTH_CHECK
) -> str:
    """HAProxy's configuration: one HTTP frontend per forwarding rule without TLS (TLS at the
    load balancer comes with a domain), round robin to every web host, health-checked."""
    rules = [r for r in forwarding_rules(with_domain=False) if not r.terminates_tls]
    servers = "".join(
        f"    server {h.name} {h.private_ip}:{rules[0].target_port} check\n" for h in backends
    )
    thresholds = (
        f"inter {check.check_interval_seconds}s fall {check.unhealthy_threshold} "
        f"rise {check.healthy_threshold}"
    )
    frontends = "".join(
        f"frontend http_{r.entry_port}\n"
        f"    bind {lb.public_ip}:{r.entry_port}\n"
        f"    http-request set-header X-Forwarded-Proto {r.entry_protocol}\n"
        "    default_backend web\n\n"
        for r in rules
    )
    return f"""\
# Written by `fab local.up`: the local stand-in for a DigitalOcean load balancer.
global
    # Within this machine's open-file limit (HAProxy needs about two descriptors a connection).
    maxconn 4000

defaults
    mode http
    timeout connect 5s
    timeout client {IDLE_TIMEOUT_SECONDS}s
    timeout server {IDLE_TIMEOUT_SECONDS}s
    timeout http-keep-alive {IDLE_TIMEOUT_SECONDS}s
    option forwardfor
    # A connection a host refuses or never answers is tried on another host.
    retries 3
    option redispatch

{frontends}backend web
    balance roundrobin
    option httpchk
    http-check send meth GET uri {check.path} ver HTTP/1.1 hdr Host {lb.public_ip}
    http-check expect status 200
    timeout check {check.response_timeout_seconds}s
    default-server {thresholds}
{servers}"""


def haproxy_command(config_path: str, pid_path: str) -> list[str]:
    """HAProxy in the foreground (the caller detaches it), tagged so it can be found again."""
    return ["haproxy", "-db", "-f", config_path, "-p", pid_path, "-L", PROCESS_TAG]


def is_haproxy_of(cmdline: list[str]) -> bool:
    return bool(cmdline) and cmdline[0].endswith("haproxy") and PROCESS_TAG in cmdline
