"""The one-line problems of a host's settings (``HostSettings``), every field checked once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploy import settings_checks as check
from deploy.app_contract import AppContract

if TYPE_CHECKING:
    from deploy.host_model import HostSettings


def host_problems(s: HostSettings) -> list[str]:
    """Every invalid value, as one-line messages naming the field (empty when all are valid)."""
    problems = []

    def need(ok: bool, name: str, allowed: str) -> None:
        if not ok:
            problems.append(f"{name}: {getattr(s, name)!r} is not allowed; {allowed}")

    need(check.full(check.NAME, s.app_name), "app_name", "lowercase letters, digits, '-' (max 31)")
    need(check.full(check.USER, s.app_user), "app_user", "a system user name")
    need(check.full(check.USER, s.web_group), "web_group", "a system group name")
    need(
        s.domain is None or check.full(check.HOSTNAME, s.domain),
        "domain",
        "None or a lowercase DNS name such as example.com",
    )
    need(
        s.tls_cert_dir is None or check.absolute(s.tls_cert_dir), "tls_cert_dir", "an absolute path"
    )
    for name in ("app_root", "config_dir", "env_file", "runtime_dir"):
        need(check.absolute(getattr(s, name)), name, "an absolute path or None")
    for name in ("acme_webroot", "nginx_dir", "nginx_log_dir"):
        need(check.absolute(getattr(s, name)), name, "an absolute path")
    need(
        s.gunicorn_workers is None or check.int_in(s.gunicorn_workers, 1, 256),
        "gunicorn_workers",
        "None or 1..256",
    )
    need(check.int_in(s.graceful_timeout, 1, 3600), "graceful_timeout", "1..3600 seconds")
    need(check.int_in(s.migration_timeout, 1, 86400), "migration_timeout", "1..86400 seconds")
    need(
        s.vpc_cidr is None or check.network(s.vpc_cidr),
        "vpc_cidr",
        "a network such as 10.110.0.0/20",
    )
    need(
        isinstance(s.dns_servers, tuple) and all(check.address(a) for a in s.dns_servers),
        "dns_servers",
        "a tuple of IP addresses",
    )
    need(
        isinstance(s.extra_server_names, tuple)
        and all(check.full(check.HOSTNAME, n) or check.ipv4(n) for n in s.extra_server_names),
        "extra_server_names",
        "a tuple of DNS names or IPv4 addresses",
    )
    need(isinstance(s.tls_certificate_ready, bool), "tls_certificate_ready", "True or False")
    need(check.int_in(s.hsts_max_age, 0, 10**9), "hsts_max_age", "0..1000000000 seconds")
    need(isinstance(s.listen_ipv6, bool), "listen_ipv6", "True or False")
    need(
        isinstance(s.trusted_proxies, tuple) and all(check.network(n) for n in s.trusted_proxies),
        "trusted_proxies",
        "a tuple of networks such as 10.110.0.0/20",
    )
    need(
        check.full(check.NGINX_SIZE, s.client_max_body_size),
        "client_max_body_size",
        "an Nginx size such as 128k or 1m",
    )
    need(
        check.full(check.NGINX_RATE, s.rate_limit),
        "rate_limit",
        "an Nginx rate such as 10r/s or 60r/m",
    )
    need(check.int_in(s.rate_limit_burst, 0, 100000), "rate_limit_burst", "0..100000")
    need(check.int_in(s.static_max_age, 0, 31536000), "static_max_age", "0..31536000 seconds")
    need(check.int_in(s.upstream_keepalive, 1, 1024), "upstream_keepalive", "1..1024")
    need(
        isinstance(s.maintenance_bypass, tuple)
        and all(check.network(n) for n in s.maintenance_bypass),
        "maintenance_bypass",
        "a tuple of networks such as 198.51.100.0/24",
    )
    need(check.int_in(s.maintenance_retry_after, 0, 86400), "maintenance_retry_after", "0..86400 s")
    need(isinstance(s.app, AppContract), "app", "an AppContract (dropstack.app)")
    return problems
