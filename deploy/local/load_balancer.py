"""The local stand-in for DigitalOcean's load balancer: HAProxy in its own network namespace.

It listens on the stack's load balancer address (``load_balancer_ip`` in the inventory) and
forwards to the web hosts' VPC addresses, with the health check ``infra/`` gives the real one
(``infra.load_balancer_policy.HEALTH_CHECK``: the same path, port, interval, timeout and
thresholds, read from the same object), so a host is taken out and put back on the same
schedule as on DigitalOcean. Pure: the config text and the commands; lifecycle runs them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from deploy import shell
from deploy.local.acme import AcmeCa, dns_hook_command
from deploy.local.network import HostPlan
from deploy.provision.templates import REPO
from deploy.provision.tls import CertbotDirs, certify_script
from infra.load_balancer_policy import (
    HEALTH_CHECK,
    ForwardingRule,
    HealthCheck,
    forwarding_rules,
    redirects_http_to_https,
)

# DigitalOcean's default http_idle_timeout_seconds.
IDLE_TIMEOUT_SECONDS = 60
PROCESS_TAG = "dropstack-lb"
# Mozilla's intermediate TLS 1.3 suites (TLS 1.2's list is read from the droplets' Nginx
# template, the one place it is written down, so the two listeners cannot drift apart).
TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
CURVES = "X25519:prime256v1:secp384r1"


def intermediate_ciphers() -> str:
    """Mozilla's intermediate TLS 1.2 cipher list, as nginx/tls.conf.j2 has it."""
    text = (REPO / "nginx" / "tls.conf.j2").read_text()
    found = re.search(r"^ssl_ciphers ([^;\s]+);", text, re.M)
    if not found:
        raise ValueError("nginx/tls.conf.j2 has no ssl_ciphers line")
    return found.group(1)


def _tls_global() -> str:
    """Mozilla's intermediate configuration for HAProxy (ssl-config.mozilla.org, guideline
    5.7): TLS 1.2 and 1.3, its ciphers and curves, no session tickets."""
    return (
        f"    ssl-default-bind-ciphers {intermediate_ciphers()}\n"
        f"    ssl-default-bind-ciphersuites {TLS13_SUITES}\n"
        f"    ssl-default-bind-curves {CURVES}\n"
        "    ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets\n"
    )


def _frontend(lb: HostPlan, rule: ForwardingRule, certificate: str | None, redirect: bool) -> str:
    tls = f" ssl crt {certificate} alpn http/1.1" if rule.terminates_tls else ""
    lines = [f"frontend {rule.entry_protocol}_{rule.entry_port}",
             f"    bind {lb.public_ip}:{rule.entry_port}{tls}"]  # fmt: skip
    if redirect and not rule.terminates_tls:
        # DigitalOcean's redirect_http_to_https: every plain-HTTP request, health paths too
        # (its health checks go from the balancer to the droplets, never through this).
        lines.append("    http-request redirect scheme https code 301")
    else:
        lines.append(f"    http-request set-header X-Forwarded-Proto {rule.entry_protocol}")
    lines.append("    default_backend web")
    return "\n".join(lines) + "\n\n"


def haproxy_config(
    lb: HostPlan,
    backends: Sequence[HostPlan],
    check: HealthCheck = HEALTH_CHECK,
    certificate: str | None = None,
) -> str:
    """HAProxy's configuration: a frontend per forwarding rule infra/ gives DigitalOcean's
    balancer, round robin to every web host, health-checked. With ``certificate`` (a PEM with
    the chain and key: the stack has a domain) it ends TLS on 443, as DigitalOcean's does with
    its Let's Encrypt certificate, forwards plain HTTP to the droplets' port 80, and redirects
    HTTP to HTTPS."""
    with_domain = certificate is not None
    rules = forwarding_rules(with_domain=with_domain)
    redirect = redirects_http_to_https(with_domain=with_domain)
    servers = "".join(
        f"    server {h.name} {h.private_ip}:{rules[0].target_port} check\n" for h in backends
    )
    thresholds = (
        f"inter {check.check_interval_seconds}s fall {check.unhealthy_threshold} "
        f"rise {check.healthy_threshold}"
    )
    frontends = "".join(_frontend(lb, r, certificate, redirect) for r in rules)
    return f"""\
# Written by `fab local.up`: the local stand-in for a DigitalOcean load balancer.
global
    # Within this machine's open-file limit (HAProxy needs about two descriptors a connection).
    maxconn 4000
{_tls_global() if with_domain else ""}
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
    """HAProxy in the foreground (the caller detaches it), tagged so it can be found again.
    Master-worker (-W): SIGUSR2 to the master (the pid file) reloads the configuration and the
    certificate while the old workers finish their connections."""
    return ["haproxy", "-W", "-db", "-f", config_path, "-p", pid_path, "-L", PROCESS_TAG]


def certificate_deploy_hook(pem_path: str, pid_path: str) -> str:
    """certbot's deploy hook for the balancer: chain and key into the one PEM HAProxy reads,
    then a reload if HAProxy runs (at the first issuance it starts afterwards)."""
    script = (
        'umask 077; cat "$RENEWED_LINEAGE/fullchain.pem" "$RENEWED_LINEAGE/privkey.pem" > "$1.new"'
        ' && mv "$1.new" "$1" && if [ -s "$2" ]; then kill -USR2 "$(cat "$2")"; fi'
    )
    return shell.join(shell.script(script, pem_path, pid_path, name="deploy-hook"))


def certificate_command(
    ca: AcmeCa, domain: str, dirs: CertbotDirs, pem_path: str, pid_path: str
) -> list[str]:
    """certbot on this machine obtaining the balancer's certificate over DNS-01 from the local
    CA, the TXT record set through challtestsrv; one line naming the domain on failure."""
    certbot = [
        "env", f"REQUESTS_CA_BUNDLE={ca.listener_ca}",
        "certbot", "certonly", "--non-interactive", "--agree-tos",
        "--register-unsafely-without-email", "--manual", "--preferred-challenges", "dns",
        "--manual-auth-hook", shell.join(dns_hook_command(ca, "set")),
        "--manual-cleanup-hook", shell.join(dns_hook_command(ca, "clear")),
        "-d", domain, "--server", ca.directory_url,
        "--deploy-hook", certificate_deploy_hook(pem_path, pid_path),
        *dirs.options(),
    ]  # fmt: skip
    return certify_script(domain, ca.directory_url, certbot)


def is_haproxy_of(cmdline: list[str]) -> bool:
    return bool(cmdline) and cmdline[0].endswith("haproxy") and PROCESS_TAG in cmdline
