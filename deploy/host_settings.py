"""Every variable the Nginx and systemd templates use, with its default, in one place.

``HostSettings`` is what an operator may set (Fabric config, the inventory, tests); each field's
``doc`` says what it is and what its default means. ``HostPaths`` is the host's file layout derived
from the settings: templates read both, and nothing else. Values are validated once, when the
settings are built; a bad value is a one-line ``SettingsError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The two Gunicorn instances a host runs for blue/green deploys: dropstack@blue, dropstack@green.
SLOTS = ("blue", "green")

_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]"
)
_NGINX_SIZE = re.compile(r"[1-9][0-9]*[km]?")
_NGINX_RATE = re.compile(r"[1-9][0-9]*r/[sm]")
# Paths and names are pasted into Nginx and systemd syntax: no spaces, quotes, ';' or '%'.
_ABSOLUTE_PATH = re.compile(r"/[A-Za-z0-9._/-]*")


class SettingsError(ValueError):
    """A settings value is not allowed; ``str()`` is one line naming the field."""


def _doc(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, kw_only=True)
class HostSettings:
    """The template variables. Only ``vpc_cidr`` is required; every other field has a default."""

    # --- the application ---
    app_name: str = _doc(
        "dropstack",
        "Names the units (<app_name>@.service), paths (/srv/<app_name>) and Nginx files.",
    )
    app_user: str = _doc("app", "System user Gunicorn and migrations run as (no shell, no sudo).")
    web_group: str = _doc(
        "www-data", "Group of the Nginx worker processes; the only group that may use the sockets."
    )
    app_root: str = _doc(None, "Releases, slots and `current` live here; None: /srv/<app_name>.")
    config_dir: str = _doc(
        None, "Holds app.env (0640 root:<app_user>) and db-ca.crt; None: /etc/<app_name>."
    )
    env_file: str = _doc(
        None, "The app's secrets, read by systemd (EnvironmentFile=); None: <config_dir>/app.env."
    )
    runtime_dir: str = _doc(
        None, "Where systemd creates the slots' sockets (<slot>.sock); None: /run/<app_name>."
    )
    gunicorn_workers: int | None = _doc(
        None, "WEB_CONCURRENCY for Gunicorn; None: not set, app/gunicorn_conf.py decides."
    )
    graceful_timeout: int = _doc(
        30, "Seconds Gunicorn gives in-flight requests on stop; systemd waits 15 s longer."
    )
    migration_timeout: int = _doc(600, "Seconds a migration (<app_name>-migrate@) may run.")

    # --- network reach of the app processes (systemd IPAddressAllow=) ---
    vpc_cidr: str = _doc(
        dataclasses.MISSING, "Required: the VPC the database is in (the inventory's vpc_cidr)."
    )
    dns_servers: tuple[str, ...] = _doc(
        (),
        "Resolvers the app may query to find the database by name: the host's /etc/resolv.conf "
        "nameservers (see nameservers_from_resolv_conf). Loopback resolvers need no entry.",
    )

    # --- the site ---
    domain: str | None = _doc(
        None, "The site's domain. None: plain HTTP, answering on extra_server_names or any name."
    )
    extra_server_names: tuple[str, ...] = _doc(
        (),
        "More names or IPv4 addresses the site answers to (the droplet's public IP, a load "
        "balancer's). With neither these nor a domain the site answers every Host.",
    )
    tls_certificate_ready: bool = _doc(
        True,
        "False while certbot has not issued the domain's certificate yet: the site is served "
        "over HTTP (with the ACME webroot) so certbot can get it.",
    )
    tls_cert_dir: str | None = _doc(
        None, "Holds fullchain.pem and privkey.pem; None: /etc/letsencrypt/live/<domain>."
    )
    acme_webroot: str = _doc("/var/www/letsencrypt", "certbot --webroot -w directory.")
    hsts_max_age: int = _doc(63072000, "Strict-Transport-Security max-age (two years, Mozilla).")
    listen_ipv6: bool = _doc(True, "Also listen on [::] for ports 80 and 443.")
    trusted_proxies: tuple[str, ...] = _doc(
        (),
        "CIDRs of proxies in front of Nginx (a load balancer) whose X-Forwarded-For Nginx "
        "believes, so rate limits and logs see the real client.",
    )
    client_max_body_size: str = _doc(
        "128k",
        "Nginx's body limit. Larger than the app's own 64 KiB so the app answers most 413s "
        "itself; beyond this Nginx answers with the same JSON shape.",
    )
    rate_limit: str = _doc("10r/s", "Per-client rate of write requests (POST, PUT, PATCH, DELETE).")
    rate_limit_burst: int = _doc(20, "Write requests a client may make above the rate at once.")
    static_max_age: int = _doc(3600, "Seconds browsers may cache /static/ files.")
    upstream_keepalive: int = _doc(32, "Idle keepalive connections each Nginx worker keeps.")

    # --- where Nginx lives (tests point these into a temporary prefix) ---
    nginx_dir: str = _doc("/etc/nginx", "Nginx's configuration directory.")
    nginx_log_dir: str = _doc("/var/log/nginx", "Where the site's access and error logs go.")

    def __post_init__(self) -> None:
        # Fields documented as "None: <derived>" get their value now, so every field holds the
        # real value. (dataclasses.replace() keeps derived values: changing app_name that way
        # keeps the old paths; build new settings instead.)
        if isinstance(self.app_name, str):
            derived = {
                "app_root": f"/srv/{self.app_name}",
                "config_dir": f"/etc/{self.app_name}",
                "runtime_dir": f"/run/{self.app_name}",
            }
            for name, value in derived.items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
            if self.env_file is None and isinstance(self.config_dir, str):
                object.__setattr__(self, "env_file", f"{self.config_dir}/app.env")
            if self.tls_cert_dir is None and isinstance(self.domain, str):
                object.__setattr__(self, "tls_cert_dir", f"/etc/letsencrypt/live/{self.domain}")
        problems = _problems(self)
        if problems:
            raise SettingsError(problems[0])

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> HostSettings:
        """Build settings from plain data (Fabric config, YAML, the inventory): lists become
        tuples, unknown keys are errors rather than silently ignored typos."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"{unknown[0]}: not a setting; known: {', '.join(sorted(known))}")
        if "vpc_cidr" not in values:
            raise SettingsError("vpc_cidr: required (the inventory's vpc_cidr)")
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**converted)

    @property
    def tls(self) -> bool:
        """The site is served over HTTPS (with HTTP redirecting to it)."""
        return self.domain is not None and self.tls_certificate_ready

    @property
    def server_names(self) -> tuple[str, ...]:
        """The site's server_name; ``("_",)`` makes it the catch-all for every Host."""
        names = ((self.domain,) if self.domain else ()) + self.extra_server_names
        return names or ("_",)

    @property
    def catch_all(self) -> bool:
        """The site answers every Host, so there is no separate default server dropping others."""
        return self.server_names == ("_",)

    @property
    def nginx_id(self) -> str:
        """app_name as an Nginx identifier (variable and zone names allow no hyphen)."""
        return self.app_name.replace("-", "_")

    @property
    def paths(self) -> HostPaths:
        return HostPaths.of(self)


@dataclass(frozen=True)
class HostPaths:
    """Where things are on a host, derived from the settings: the layout every template and
    deploy step agrees on."""

    releases_dir: str
    slots_dir: str
    current: str
    static_dir: str
    nginx_include_dir: str
    tmpfiles_conf: str
    runtime_dir: str
    # The one path Nginx's upstream names: a symlink to the live slot's socket, which a deploy
    # replaces (rename) to move traffic. Under app_root, not runtime_dir: it must survive a
    # reboot (/run is tmpfs), so the slot enabled at boot is found without a deploy.
    live_socket: str
    unit_dir: str = "/etc/systemd/system"

    @classmethod
    def of(cls, s: HostSettings) -> HostPaths:
        return cls(
            releases_dir=f"{s.app_root}/releases",
            slots_dir=f"{s.app_root}/slots",
            current=f"{s.app_root}/current",
            static_dir=f"{s.app_root}/current/app/static/",
            nginx_include_dir=f"{s.nginx_dir}/{s.app_name}",
            tmpfiles_conf=f"/etc/tmpfiles.d/{s.app_name}.conf",
            runtime_dir=s.runtime_dir,
            live_socket=f"{s.app_root}/live.sock",
        )

    def socket(self, slot: str) -> str:
        """The unix socket the slot's Gunicorn serves on (systemd creates and owns it)."""
        return f"{self.runtime_dir}/{check_slot(slot)}.sock"


def check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise SettingsError(f"slot: {slot!r} is not one of {', '.join(SLOTS)}")
    return slot


def nameservers_from_resolv_conf(text: str) -> tuple[str, ...]:
    """The non-loopback nameserver addresses in a resolv.conf, for ``dns_servers``."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1].split("%")[0])
            except ValueError:
                continue
            if not address.is_loopback:
                found.append(str(address))
    return tuple(found)


def settings_docs() -> list[tuple[str, str, str]]:
    """(name, default, doc) for every setting, for the README table."""
    rows = []
    for f in dataclasses.fields(HostSettings):
        default = "required" if f.default is dataclasses.MISSING else repr(f.default)
        rows.append((f.name, default, f.metadata["doc"]))
    return rows


def _problems(s: HostSettings) -> list[str]:
    """Every invalid value, as one-line messages naming the field (empty when all are valid)."""
    problems = []

    def need(ok: bool, name: str, allowed: str) -> None:
        if not ok:
            problems.append(f"{name}: {getattr(s, name)!r} is not allowed; {allowed}")

    need(_full(_NAME, s.app_name), "app_name", "lowercase letters, digits, '-' (max 31)")
    need(_full(_USER, s.app_user), "app_user", "a system user name")
    need(_full(_USER, s.web_group), "web_group", "a system group name")
    need(
        s.domain is None or _full(_HOSTNAME, s.domain),
        "domain",
        "None or a lowercase DNS name such as example.com",
    )
    need(s.tls_cert_dir is None or _absolute(s.tls_cert_dir), "tls_cert_dir", "an absolute path")
    for name in ("app_root", "config_dir", "env_file", "runtime_dir"):
        need(_absolute(getattr(s, name)), name, "an absolute path or None")
    for name in ("acme_webroot", "nginx_dir", "nginx_log_dir"):
        need(_absolute(getattr(s, name)), name, "an absolute path")
    need(
        s.gunicorn_workers is None or _int_in(s.gunicorn_workers, 1, 256),
        "gunicorn_workers",
        "None or 1..256",
    )
    need(_int_in(s.graceful_timeout, 1, 3600), "graceful_timeout", "1..3600 seconds")
    need(_int_in(s.migration_timeout, 1, 86400), "migration_timeout", "1..86400 seconds")
    need(_network(s.vpc_cidr), "vpc_cidr", "a network such as 10.110.0.0/20")
    need(
        isinstance(s.dns_servers, tuple) and all(_address(a) for a in s.dns_servers),
        "dns_servers",
        "a tuple of IP addresses",
    )
    need(
        isinstance(s.extra_server_names, tuple)
        and all(_full(_HOSTNAME, n) or _ipv4(n) for n in s.extra_server_names),
        "extra_server_names",
        "a tuple of DNS names or IPv4 addresses",
    )
    need(isinstance(s.tls_certificate_ready, bool), "tls_certificate_ready", "True or False")
    need(_int_in(s.hsts_max_age, 0, 10**9), "hsts_max_age", "0..1000000000 seconds")
    need(isinstance(s.listen_ipv6, bool), "listen_ipv6", "True or False")
    need(
        isinstance(s.trusted_proxies, tuple) and all(_network(n) for n in s.trusted_proxies),
        "trusted_proxies",
        "a tuple of networks such as 10.110.0.0/20",
    )
    need(
        _full(_NGINX_SIZE, s.client_max_body_size),
        "client_max_body_size",
        "an Nginx size such as 128k or 1m",
    )
    need(_full(_NGINX_RATE, s.rate_limit), "rate_limit", "an Nginx rate such as 10r/s or 60r/m")
    need(_int_in(s.rate_limit_burst, 0, 100000), "rate_limit_burst", "0..100000")
    need(_int_in(s.static_max_age, 0, 31536000), "static_max_age", "0..31536000 seconds")
    need(_int_in(s.upstream_keepalive, 1, 1024), "upstream_keepalive", "1..1024")
    return problems


def _full(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _absolute(value: object) -> bool:
    return _full(_ABSOLUTE_PATH, value) and "/../" not in f"{value}/"


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _network(value: object) -> bool:
    try:
        # strict: host bits set (10.110.0.5/20) is a typo, not a network
        return isinstance(value, str) and ipaddress.ip_network(value) is not None
    except ValueError:
        return False


def _address(value: object) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value) is not None
    except ValueError:
        return False


def _ipv4(value: object) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        return False
