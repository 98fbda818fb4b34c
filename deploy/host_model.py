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
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deploy.inventory import Inventory, WebHost

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


# --- the app contract: what dropstack needs to know about the app it deploys ---

# Gunicorn's worker class for ASGI apps (server "gunicorn+uvicorn").
UVICORN_WORKER = "uvicorn.workers.UvicornWorker"
SERVERS = ("gunicorn", "gunicorn+uvicorn")
# Named migration commands; anything else must be a `python ...` command of the release.
MIGRATIONS = {
    "alembic": "python -m app.manage migrate",
    "django": "python app/manage.py migrate --noinput",
    "none": None,
}
_ENTRY_POINT = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
)
_SERVER_CONFIG = re.compile(r"(python:[A-Za-z_][A-Za-z0-9_.]*|[A-Za-z0-9_][A-Za-z0-9_./-]*\.py)?")
_RELATIVE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]*")
_URL_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
# A command's arguments after `python`: pasted into ExecStart=, so no quotes, '$', '%', ';'.
_ARGUMENT = re.compile(r"[A-Za-z0-9._:/=@,+-]+")
# OnCalendar= characters; systemd-analyze (tests) judges the expression itself.
_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ -]{1,80}")
_JOB_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


@dataclass(frozen=True)
class ScheduledJob:
    """One scheduled job of the contract: a systemd timer and its oneshot service."""

    name: str
    schedule: str  # systemd OnCalendar=
    command: str  # `python ...`, run by the live release's interpreter
    timeout: int = 3600

    @property
    def arguments(self) -> tuple[str, ...]:
        """The command after ``python``: run by the live release's own interpreter."""
        return tuple(self.command.split()[1:])


@dataclass(frozen=True, kw_only=True)
class AppContract:
    """The app contract (Fabric config ``dropstack.app``, ``FABRIC_DROPSTACK_APP_*``): how the
    app in app/ is served, migrated, checked and run in the background. The defaults describe
    dropstack's own Flask sample app; docs/app-contract.md shows other shapes."""

    entry_point: str = _doc("app.wsgi:app", "The WSGI or ASGI callable, module:attribute.")
    server: str = _doc(
        "gunicorn",
        "gunicorn (WSGI) or gunicorn+uvicorn (ASGI: Gunicorn with uvicorn.workers.UvicornWorker).",
    )
    server_config: str = _doc(
        "python:app.gunicorn_conf",
        "Gunicorn's -c: python:MODULE or a .py path in the release; '': none, the unit's "
        "own flags (graceful timeout, JSON-free access log on stdout) are enough.",
    )
    requirements: str = _doc(
        "app/requirements.txt", "The pinned runtime requirements the release's wheelhouse holds."
    )
    archive_paths: tuple[str, ...] = _doc(
        ("app",),
        "What of the repository a host gets (git archive paths); a string may list "
        "several, separated by spaces.",
    )
    migrate: str = _doc(
        "alembic",
        "alembic (python -m app.manage migrate), django (python app/manage.py migrate "
        "--noinput), none, or any `python ...` command run from the release.",
    )
    static_dir: str = _doc("app/static", "The static files Nginx serves at /static/.")
    liveness_path: str = _doc("/healthz", "Answers 200 while the process is up.")
    readiness_path: str = _doc(
        "/readyz",
        "Answers 200 when the app can serve (database reachable, schema at head); "
        "the deploy's health gate.",
    )
    worker_count: int = _doc(
        0, "Background worker processes per host, run from the live slot's release (0: none)."
    )
    worker_command: str = _doc(
        "python -m app.worker", "The worker process (an RQ worker for the sample app)."
    )
    worker_stop_timeout: int = _doc(
        60, "Seconds a stopping worker has to finish the job in hand before it is killed."
    )
    schedules: tuple[ScheduledJob, ...] = _doc(
        (),
        "Scheduled jobs, name -> {schedule (a systemd OnCalendar value), command ('python ...'), "
        "timeout (seconds)}; run on the stack's first web host only, from the live release.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.archive_paths, str):
            object.__setattr__(self, "archive_paths", tuple(self.archive_paths.split()))
        problems = _contract_problems(self)
        if problems:
            raise SettingsError(problems[0])

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AppContract:
        """From plain data (``dropstack.app``); unknown keys are errors, like HostSettings'."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(
                f"app.{unknown[0]}: not a setting; known: {', '.join(sorted(known))}"
            )
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if "schedules" in converted:
            converted["schedules"] = _schedules(converted["schedules"])
        return cls(**converted)

    @property
    def worker_class(self) -> str | None:
        """Gunicorn's -k for the server, None for Gunicorn's configured default."""
        return UVICORN_WORKER if self.server == "gunicorn+uvicorn" else None

    @property
    def migration_arguments(self) -> tuple[str, ...] | None:
        """The migration command after ``python``; None when the app has none."""
        command = MIGRATIONS.get(self.migrate, self.migrate)
        return None if command is None else tuple(command.split()[1:])

    @property
    def worker_arguments(self) -> tuple[str, ...]:
        return tuple(self.worker_command.split()[1:])

    @property
    def has_workers(self) -> bool:
        return self.worker_count > 0


def _schedules(value: Any) -> Any:
    """``{name: {schedule, command[, timeout]}}`` as ScheduledJobs, sorted by name."""
    if isinstance(value, tuple) and all(isinstance(j, ScheduledJob) for j in value):
        return value
    if not hasattr(value, "items"):
        raise SettingsError(
            f"app.schedules: {value!r} is not allowed; a mapping name -> "
            "{schedule, command, timeout}"
        )
    jobs = []
    for name, job in sorted(value.items()):
        job = dict(job) if hasattr(job, "items") else {}
        extra = sorted(set(job) - {"schedule", "command", "timeout"})
        if extra or not {"schedule", "command"} <= set(job):
            raise SettingsError(
                f"app.schedules.{name}: needs schedule and command (and may have timeout)"
                + (f"; {extra[0]} is not a key" if extra else "")
            )
        jobs.append(
            ScheduledJob(str(name), job["schedule"], job["command"], job.get("timeout", 3600))
        )
    return tuple(jobs)


def _python_command(value: object) -> bool:
    """`python` followed by safe arguments: run by the release's own virtualenv."""
    if not isinstance(value, str):
        return False
    words = value.split()
    return len(words) >= 2 and words[0] == "python" and all(_full(_ARGUMENT, w) for w in words[1:])


def _contract_problems(a: AppContract) -> list[str]:
    problems = []

    def need(ok: bool, name: str, allowed: str) -> None:
        if not ok:
            problems.append(f"app.{name}: {getattr(a, name)!r} is not allowed; {allowed}")

    need(_full(_ENTRY_POINT, a.entry_point), "entry_point", "module.path:attribute")
    need(a.server in SERVERS, "server", " or ".join(SERVERS))
    need(
        _full(_SERVER_CONFIG, a.server_config), "server_config", "python:<module>, a .py path or ''"
    )
    for name in ("requirements", "static_dir"):
        need(_relative(getattr(a, name)), name, "a path inside the repository")
    need(
        isinstance(a.archive_paths, tuple)
        and len(a.archive_paths) > 0
        and all(_relative(p) for p in a.archive_paths),
        "archive_paths",
        "one or more paths inside the repository",
    )
    need(
        a.migrate in MIGRATIONS or _python_command(a.migrate),
        "migrate",
        f"{', '.join(MIGRATIONS)} or a command starting with python",
    )
    for name in ("liveness_path", "readiness_path"):
        need(_full(_URL_PATH, getattr(a, name)), name, "a URL path such as /healthz")
    need(_int_in(a.worker_count, 0, 64), "worker_count", "0..64")
    need(_python_command(a.worker_command), "worker_command", "a command starting with python")
    need(_int_in(a.worker_stop_timeout, 1, 86400), "worker_stop_timeout", "1..86400 seconds")
    for job in a.schedules if isinstance(a.schedules, tuple) else ():
        where = f"app.schedules.{job.name}"
        if not _full(_JOB_NAME, job.name):
            problems.append(f"{where}: the name is not allowed; lowercase letters, digits, '-'")
        elif not _full(_CALENDAR, job.schedule):
            problems.append(f"{where}.schedule: {job.schedule!r} is not a systemd OnCalendar value")
        elif not _python_command(job.command):
            problems.append(f"{where}.command: {job.command!r} must start with python")
        elif not _int_in(job.timeout, 1, 86400):
            problems.append(f"{where}.timeout: {job.timeout!r} is not allowed; 1..86400 seconds")
    return problems


def _relative(value: object) -> bool:
    return _full(_RELATIVE_PATH, value) and ".." not in str(value).split("/")


@dataclass(frozen=True, kw_only=True)
class HostSettings:
    """The host's settings. Every field has a default; ``vpc_cidr`` comes from the inventory
    (``for_host``) and the templates refuse to render without it."""

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
    # A factory: the contract's validators are defined further down this module.
    app: AppContract = field(
        default_factory=lambda: AppContract(),
        metadata={
            "doc": "The app contract (dropstack.app): entry point, server, migrations, "
            "workers, scheduled jobs; its keys are in docs/app-contract.md."
        },
    )

    # --- network reach of the app processes (systemd IPAddressAllow=) ---
    vpc_cidr: str | None = _doc(
        None, "The VPC the database is in; set from the inventory's vpc_cidr (templates need it)."
    )
    dns_servers: tuple[str, ...] = _doc(
        (),
        "Resolvers the app may query to find the database by name: the host's /etc/resolv.conf "
        "nameservers (provision.facts.nameservers). Loopback resolvers need no entry.",
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
    maintenance_bypass: tuple[str, ...] = _doc(
        (),
        "CIDRs (the admin ones) whose requests reach the app in maintenance mode; matched "
        "against the real client address (after trusted_proxies).",
    )
    maintenance_retry_after: int = _doc(
        300, "Seconds a maintenance 503 tells clients to wait (Retry-After)."
    )

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
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if "app" in converted and not isinstance(converted["app"], AppContract):
            converted["app"] = AppContract.from_mapping(converted["app"] or {})
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
        return cls(
            root=s.app_root,
            static_subdir=s.app.static_dir,
            **{name: getattr(s, name) for name in same},
        )

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
        """Every unit the app runs as, for journals: both slots and any migration."""
        return (*(self.unit(s) for s in SLOTS), f"{self.app_name}-migrate@*.service")

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
    section = _plain((config or {}).get("dropstack") or {})
    return dict(section.get("host") or {})


def app_section(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The app contract's values (``dropstack.app``) from a Fabric config, as plain data."""
    section = _plain((config or {}).get("dropstack") or {})
    return dict(section.get("app") or {})


def app_contract(config: Mapping[str, Any] | None) -> AppContract:
    """The app contract alone, for what needs no host (the release build, the benchmarks)."""
    return AppContract.from_mapping(app_section(config))


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
    if dns_servers:
        values["dns_servers"] = list(dns_servers)
    operator = config_section(config)
    if "app" in operator:
        raise SettingsError("host.app: not a setting; the app contract is dropstack.app")
    values["app"] = app_contract(config)
    return HostSettings.from_mapping({**values, **operator})


def _plain(value: Any) -> Any:
    """Invoke's config proxies as plain dicts."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value


def settings_docs() -> list[tuple[str, str, str]]:
    """(name, default, doc) for every setting, for the docs' table."""
    return [
        (f.name, "AppContract()" if f.name == "app" else repr(f.default), f.metadata["doc"])
        for f in dataclasses.fields(HostSettings)
    ]


def contract_docs() -> list[tuple[str, str, str]]:
    """(key, default, doc) for every key of the app contract, for docs/app-contract.md."""
    return [(f.name, repr(f.default), f.metadata["doc"]) for f in dataclasses.fields(AppContract)]


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
    need(s.vpc_cidr is None or _network(s.vpc_cidr), "vpc_cidr", "a network such as 10.110.0.0/20")
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
    need(
        isinstance(s.maintenance_bypass, tuple) and all(_network(n) for n in s.maintenance_bypass),
        "maintenance_bypass",
        "a tuple of networks such as 198.51.100.0/24",
    )
    need(_int_in(s.maintenance_retry_after, 0, 86400), "maintenance_retry_after", "0..86400 s")
    need(isinstance(s.app, AppContract), "app", "an AppContract (dropstack.app)")
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


def _address(value: object, versions: tuple[int, ...] = (4, 6)) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version in versions
    except ValueError:
        return False


def _ipv4(value: object) -> bool:
    return _address(value, (4,))
