"""The one model of a web host: every setting, path, unit, socket and user, defined once.

``HostSettings`` is what an operator may set (Fabric config ``dropstack.host``, the inventory,
tests); each field's ``doc`` says what it is and what its default means. ``HostLayout`` is the
host's file layout and unit names derived from the settings. Provisioning, the templates,
releases, rollback, ``status``/``logs`` and the testinfra suite all read these two objects, built
once per host by ``for_host``, and nothing else: two models of one host drift.
Values are validated once, when the settings are built; a bad value is a one-line
``SettingsError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deploy import settings_checks as check
from deploy.app_contract import AppContract, app_contract
from deploy.host_checks import host_problems
from deploy.inventory import Inventory, WebHost
from deploy.settings_checks import SettingsError

# The two Gunicorn instances a host runs for blue/green deploys: dropstack@blue, dropstack@green.
SLOTS = ("blue", "green")


@dataclass(frozen=True, kw_only=True)
class HostSettings:
    """The host's settings. Every field has a default; ``vpc_cidr`` comes from the inventory
    (``for_host``) and the templates refuse to render without it."""

    # --- the application ---
    app_name: str = check.doc(
        "dropstack",
        "Names the units (<app_name>@.service), paths (/srv/<app_name>) and Nginx files.",
    )
    app_user: str = check.doc(
        "app", "System user Gunicorn and migrations run as (no shell, no sudo)."
    )
    web_group: str = check.doc(
        "www-data", "Group of the Nginx worker processes; the only group that may use the sockets."
    )
    app_root: str = check.doc(
        None, "Releases, slots and `current` live here; None: /srv/<app_name>."
    )
    config_dir: str = check.doc(
        None, "Holds app.env (0640 root:<app_user>) and db-ca.crt; None: /etc/<app_name>."
    )
    env_file: str = check.doc(
        None, "The app's secrets, read by systemd (EnvironmentFile=); None: <config_dir>/app.env."
    )
    runtime_dir: str = check.doc(
        None, "Where systemd creates the slots' sockets (<slot>.sock); None: /run/<app_name>."
    )
    gunicorn_workers: int | None = check.doc(
        None, "WEB_CONCURRENCY for Gunicorn; None: not set, app/gunicorn_conf.py decides."
    )
    graceful_timeout: int = check.doc(
        30, "Seconds Gunicorn gives in-flight requests on stop; systemd waits 15 s longer."
    )
    migration_timeout: int = check.doc(600, "Seconds a migration (<app_name>-migrate@) may run.")
    # A factory: the contract's validators are defined further down this module.
    app: AppContract = field(
        default_factory=lambda: AppContract(),
        metadata={
            "doc": "The app contract (dropstack.app): entry point, server, migrations, "
            "workers, scheduled jobs; its keys are in docs/app-contract.md."
        },
    )

    # --- network reach of the app processes (systemd IPAddressAllow=) ---
    vpc_cidr: str | None = check.doc(
        None, "The VPC the database is in; set from the inventory's vpc_cidr (templates need it)."
    )
    dns_servers: tuple[str, ...] = check.doc(
        (),
        "Resolvers the app may query to find the database by name: the host's /etc/resolv.conf "
        "nameservers (provision.facts.nameservers). Loopback resolvers need no entry.",
    )

    # --- the site ---
    domain: str | None = check.doc(
        None, "The site's domain. None: plain HTTP, answering on extra_server_names or any name."
    )
    extra_server_names: tuple[str, ...] = check.doc(
        (),
        "More names or IPv4 addresses the site answers to (the droplet's public IP, a load "
        "balancer's). With neither these nor a domain the site answers every Host.",
    )
    tls_at_load_balancer: bool = check.doc(
        False,
        "A load balancer ends TLS for the domain (DigitalOcean's, with the certificate it "
        "issues): this host gets no certificate, serves the site on 80 to the balancer, "
        "passes on its X-Forwarded-Proto and sends HSTS. Set from the inventory.",
    )
    tls_certificate_ready: bool = check.doc(
        True,
        "False while certbot has not issued the domain's certificate yet: the site is served "
        "over HTTP (with the ACME webroot) so certbot can get it.",
    )
    tls_cert_dir: str | None = check.doc(
        None, "Holds fullchain.pem and privkey.pem; None: /etc/letsencrypt/live/<domain>."
    )
    acme_webroot: str = check.doc("/var/www/letsencrypt", "certbot --webroot -w directory.")
    hsts_max_age: int = check.doc(
        63072000, "Strict-Transport-Security max-age (two years, Mozilla)."
    )
    listen_ipv6: bool = check.doc(True, "Also listen on [::] for ports 80 and 443.")
    trusted_proxies: tuple[str, ...] = check.doc(
        (),
        "CIDRs of proxies in front of Nginx (a load balancer) whose X-Forwarded-For Nginx "
        "believes, so rate limits and logs see the real client.",
    )
    client_max_body_size: str = check.doc(
        "128k",
        "Nginx's body limit. Larger than the app's own 64 KiB so the app answers most 413s "
        "itself; beyond this Nginx answers with the same JSON shape.",
    )
    rate_limit: str = check.doc(
        "10r/s", "Per-client rate of write requests (POST, PUT, PATCH, DELETE)."
    )
    rate_limit_burst: int = check.doc(
        20, "Write requests a client may make above the rate at once."
    )
    static_max_age: int = check.doc(3600, "Seconds browsers may cache /static/ files.")
    upstream_keepalive: int = check.doc(32, "Idle keepalive connections each Nginx worker keeps.")
    maintenance_bypass: tuple[str, ...] = check.doc(
        (),
        "CIDRs (the admin ones) whose requests reach the app in maintenance mode; matched "
        "against the real client address (after trusted_proxies).",
    )
    maintenance_retry_after: int = check.doc(
        300, "Seconds a maintenance 503 tells clients to wait (Retry-After)."
    )

    # --- where Nginx lives (tests point these into a temporary prefix) ---
    nginx_dir: str = check.doc("/etc/nginx", "Nginx's configuration directory.")
    nginx_log_dir: str = check.doc("/var/log/nginx", "Where the site's access and error logs go.")

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
        problems = host_problems(self)
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
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if "app" in converted and not isinstance(converted["app"], AppContract):
            converted["app"] = AppContract.from_mapping(converted["app"] or {})
        return cls(**converted)

    @property
    def tls(self) -> bool:
        """The site is served over HTTPS (with HTTP redirecting to it)."""
        return self.obtains_certificate and self.tls_certificate_ready

    @property
    def obtains_certificate(self) -> bool:
        """This host gets the domain's certificate itself (certbot over HTTP-01)."""
        return self.domain is not None and not self.tls_at_load_balancer

    @property
    def tls_certificate_file(self) -> str | None:
        """The certificate, its chain and its key in one file (0640 root:<web_group>), which
        Nginx's workers read at each handshake; certbot's deploy hook replaces it atomically."""
        return f"{self.nginx_dir}/tls/{self.domain}.pem" if self.domain else None

    @property
    def sends_hsts(self) -> bool:
        """Responses reach clients over HTTPS: this host's, or the balancer's in front of it."""
        return self.tls or (self.domain is not None and self.tls_at_load_balancer)

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
    def paths(self) -> HostLayout:
        return HostLayout.of(self)


@dataclass(frozen=True)
class HostLayout:
    """Where things are on a host and what its units are called, derived from the settings:
    the layout provisioning creates, the templates name and every release step uses."""

    app_name: str
    app_user: str
    root: str
    config_dir: str
    env_file: str
    runtime_dir: str
    nginx_dir: str
    nginx_log_dir: str
    unit_dir: str = "/etc/systemd/system"
    static_subdir: str = "app/static"  # the contract's static_dir, inside a release

    @classmethod
    def of(cls, s: HostSettings) -> HostLayout:
        same = ("app_name", "app_user", "config_dir", "env_file", "runtime_dir", "nginx_dir",
                "nginx_log_dir")  # fmt: skip
        values = {name: getattr(s, name) for name in same}
        return cls(root=s.app_root, static_subdir=s.app.static_dir, **values)

    # --- releases ---
    @property
    def releases_dir(self) -> str:
        return f"{self.root}/releases"

    @property
    def venvs_dir(self) -> str:
        # Shared virtualenvs keyed by the dependency set: a code-only release reuses one.
        return f"{self.root}/venvs"

    @property
    def slots_dir(self) -> str:
        return f"{self.root}/slots"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def static_dir(self) -> str:
        return f"{self.current}/{self.static_subdir}/"

    @property
    def lock(self) -> str:
        return f"{self.root}/deploy.lock"

    @property
    def audit_log(self) -> str:
        return f"{self.root}/audit.log"

    @property
    def live_socket(self) -> str:
        """The one path Nginx's upstream names: a symlink to the live slot's socket, which a
        deploy replaces (rename) to move traffic. Under the app root, not the runtime dir: it
        must survive a reboot (/run is tmpfs), so the slot enabled at boot is found again."""
        return f"{self.root}/live.sock"

    def release(self, name: str) -> str:
        return f"{self.releases_dir}/{name}"

    def venv(self, key: str) -> str:
        return f"{self.venvs_dir}/{key}"

    def slot(self, slot: str) -> str:
        return f"{self.slots_dir}/{check_instance(slot)}"

    def slot_env(self, slot: str) -> str:
        """DROPSTACK_RELEASE for the slot's unit, rewritten when the slot gets a release."""
        return f"{self.slots_dir}/{check_instance(slot)}.env"

    # --- units and sockets ---
    def socket(self, slot: str) -> str:
        """The unix socket the slot's Gunicorn serves on (systemd creates and owns it)."""
        return f"{self.runtime_dir}/{check_instance(slot)}.sock"

    def unit(self, slot: str) -> str:
        return f"{self.app_name}@{check_instance(slot)}.service"

    def retire_unit(self, slot: str) -> str:
        """The transient unit (``systemd-run``) that drains and stops a retired slot on the host
        after its warm window: <name>.timer, then <name>.service."""
        return f"{self.app_name}-retire-{check_instance(slot)}"

    def migrate_unit(self, slot: str) -> str:
        return f"{self.app_name}-migrate@{check_instance(slot)}.service"

    def worker_template(self, slot: str) -> str:
        """The slot's worker template: one instance per worker, <app>-worker-<slot>@<n>."""
        return f"{self.app_name}-worker-{check_instance(slot)}@.service"

    def worker_unit(self, slot: str, number: int) -> str:
        return f"{self.app_name}-worker-{check_instance(slot)}@{int(number)}.service"

    def worker_units(self, slot: str, count: int) -> tuple[str, ...]:
        return tuple(self.worker_unit(slot, n) for n in range(1, count + 1))

    def worker_pattern(self, slot: str) -> str:
        """Every loaded worker of the slot, whatever the count was when they started."""
        return f"{self.app_name}-worker-{check_instance(slot)}@*.service"

    def job_service(self, name: str) -> str:
        return f"{self.app_name}-job-{name}.service"

    def job_timer(self, name: str) -> str:
        return f"{self.app_name}-job-{name}.timer"

    @property
    def job_lock_dir_name(self) -> str:
        """RuntimeDirectory= of the scheduled jobs, under /run: their flock files."""
        return f"{self.app_name}-jobs"

    @property
    def units(self) -> tuple[str, ...]:
        """Every unit the app runs as, for journals: both slots, any migration, and the host
        retiring a slot after its warm window."""
        return (*(self.unit(s) for s in SLOTS), f"{self.app_name}-migrate@*.service",
                f"{self.app_name}-retire-*.service")  # fmt: skip

    @property
    def worker_units_pattern(self) -> str:
        """Every worker of either slot, for `fab logs --process worker`."""
        return f"{self.app_name}-worker-*@*.service"

    @property
    def tmpfiles_conf(self) -> str:
        return f"/etc/tmpfiles.d/{self.app_name}.conf"

    # --- maintenance mode (fab maintenance.on / off) ---
    @property
    def maintenance_dir(self) -> str:
        """The maintenance pages, and the flag whose presence Nginx checks per request."""
        return f"{self.root}/maintenance"

    @property
    def maintenance_flag(self) -> str:
        return f"{self.maintenance_dir}/on"

    def maintenance_page(self, kind: str) -> str:
        """``page.html`` for browsers, ``page.json`` for API clients."""
        if kind not in ("html", "json"):
            raise SettingsError(f"maintenance page: {kind!r} is not one of html, json")
        return f"{self.maintenance_dir}/page.{kind}"

    # --- configuration and logs ---
    @property
    def db_ca_cert(self) -> str:
        return f"{self.config_dir}/db-ca.crt"

    @property
    def redis_ca_cert(self) -> str:
        return f"{self.config_dir}/redis-ca.crt"

    @property
    def nginx_include_dir(self) -> str:
        return f"{self.nginx_dir}/{self.app_name}"

    @property
    def nginx_access_log(self) -> str:
        return f"{self.nginx_log_dir}/{self.app_name}.access.log"

    @property
    def nginx_error_log(self) -> str:
        return f"{self.nginx_log_dir}/{self.app_name}.error.log"


def check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise SettingsError(f"slot: {slot!r} is not one of {', '.join(SLOTS)}")
    return slot


_INSTANCE = re.compile(r"[a-z][a-z0-9]{0,15}")


def check_instance(name: str) -> str:
    """A unit instance: a slot, or another instance of the app's unit (the benchmarks run a
    third one beside the slots); only names that are safe in paths and unit names."""
    if not _INSTANCE.fullmatch(name):
        raise SettingsError(f"instance: {name!r} is not a unit instance name (a-z, 0-9)")
    return name


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(check_slot(slot))]


def config_section(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operator's ``dropstack.host`` values from a Fabric config, as plain data."""
    section = check.plain((config or {}).get("dropstack") or {})
    return dict(section.get("host") or {})


def for_host(
    config: Mapping[str, Any] | None,
    inv: Inventory | None = None,
    web: WebHost | None = None,
    dns_servers: tuple[str, ...] = (),
) -> HostSettings:
    """The one settings object for a host: the operator's values (fabric.yaml
    ``dropstack.host``, ``FABRIC_DROPSTACK_HOST_*``) plus what the target says: the VPC, the
    domain, the names the site answers to and, when known, the host's resolvers.
    Operator values win, so an override reaches every task that reads the model."""
    values: dict[str, Any] = {}
    if inv is not None:
        values["vpc_cidr"] = inv["vpc_cidr"]
        values["domain"] = inv["domain"]
        if web is not None:
            names = [ip for ip in (web.public_ip, web.private_ip, inv["load_balancer_ip"]) if ip]
            values["extra_server_names"] = names
        if inv["load_balancer_ip"]:
            # A load balancer reaches the droplets from inside the VPC: its X-Forwarded-For
            # names the real client, for logs and rate limits.
            values["trusted_proxies"] = [inv["vpc_cidr"]]
            # With a domain the balancer holds the certificate (infra/web.py: its HTTPS rule
            # forwards to the droplets' port 80), so the droplets get none.
            values["tls_at_load_balancer"] = inv["domain"] is not None
    if dns_servers:
        values["dns_servers"] = list(dns_servers)
    operator = config_section(config)
    if "app" in operator:
        raise SettingsError("host.app: not a setting; the app contract is dropstack.app")
    values["app"] = app_contract(config, inv)
    return HostSettings.from_mapping({**values, **operator})


def settings_docs() -> list[tuple[str, str, str]]:
    """(name, default, doc) for every setting, for the docs' table."""
    return [
        (f.name, "AppContract()" if f.name == "app" else repr(f.default), f.metadata["doc"])
        for f in dataclasses.fields(HostSettings)
    ]
