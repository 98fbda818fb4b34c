"""The stack's configuration, validated once into a typed ``Settings`` before any resource exists.

``parse_settings`` is pure: it takes the raw ``dropstack:*`` values (strings, as the Pulumi engine
hands them to the program, or native values) and returns ``Settings`` or raises ``SettingsError``
listing every problem, one line each, naming the key and what is allowed. ``load_settings`` is the
thin part that reads them from the running stack.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import pulumi.runtime

from infra.policy import rules

NAMESPACE = "dropstack"

# Regions where droplets, VPCs, load balancers and managed PostgreSQL can all be created today
# (`doctl compute region list`); nyc2, ams2 and sfo1 still exist but take no new resources.
REGIONS = (
    "ams3", "atl1", "blr1", "fra1", "lon1", "nyc1", "nyc3", "sfo2", "sfo3", "sgp1", "syd1", "tor1",
)  # fmt: skip
# Regions with Spaces object storage (DigitalOcean's Spaces availability page): every droplet
# region above except nyc1, whose buckets live in nyc3.
SPACES_REGIONS = (
    "ams3", "atl1", "blr1", "fra1", "lon1", "nyc3", "sfo2", "sfo3", "sgp1", "syd1", "tor1",
)  # fmt: skip
# The windows a monitor alert may average over (pulumi-digitalocean MonitorAlert `window`).
ALERT_WINDOWS = ("5m", "10m", "30m", "1h")
# How long an uptime alert's condition must hold (UptimeAlert `period`).
UPTIME_PERIODS = ("2m", "3m", "5m", "10m", "15m", "30m", "1h")
# Where uptime checks probe from (UptimeCheck `regions`).
UPTIME_REGIONS = ("us_east", "us_west", "eu_west", "se_asia")
PERCENT_RANGE = (1, 100)
LATENCY_MS_RANGE = (1, 60000)
TLS_EXPIRY_DAYS_RANGE = (1, 90)
BACKUP_RETENTION_DAYS_RANGE = (1, 3650)
# DigitalOcean keeps a managed PostgreSQL cluster's daily backups, and its point-in-time log, for
# seven days; older restore points fail when the API is asked, not here (see docs/day2-infra.md).
PITR_DAYS = 7
SLACK_WEBHOOK_PREFIX = "https://hooks.slack.com/"
EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@([A-Za-z0-9.-]+)")
# Example domains (RFC 2606): an address there is a placeholder copied unedited.
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
# Spaces bucket names follow S3's DNS-compatible rules: 3-63 lowercase letters, digits, hyphens.
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
# A database cluster name as DigitalOcean accepts it: lowercase letters, digits, hyphens.
CLUSTER_NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,61}[a-z0-9]")
POSTGRES_VERSIONS = ("14", "15", "16", "17")
POOL_MODES = ("transaction", "session", "statement")
WEB_COUNT_RANGE = (1, 10)
DB_NODE_COUNT_RANGE = (1, 3)
# The Redis tier is DigitalOcean's managed Valkey (infra/valkey.py): version 8 is the one it offers
# ("We currently support Valkey version 8"), a primary plus at most one standby, and the
# eviction policies its API accepts. noeviction is the default because the tier holds the
# background jobs' queues: a full Valkey must refuse new jobs, never silently drop queued ones.
VALKEY_VERSION = "8"
REDIS_NODE_COUNT_RANGE = (1, 2)
EVICTION_POLICIES = (
    "noeviction", "allkeys_lru", "allkeys_random",
    "volatile_lru", "volatile_random", "volatile_ttl",
)  # fmt: skip


def _family(stem: str, shapes: str, suffixes: tuple[str, ...] = ("",)) -> tuple[str, ...]:
    """``stem-<shape><suffix>`` for every space-separated shape and suffix."""
    return tuple(f"{stem}-{shape}{suffix}" for shape in shapes.split() for suffix in suffixes)


# Droplet size slugs DigitalOcean sells (`doctl compute size list`, the API's /v2/sizes): a curated
# table rather than a pattern, because a pattern accepted made-up slugs (c-2vcpu-4gb) and refused
# real ones (c-2). Regular (s-), CPU-optimised (c-, c2-), general purpose (g-, gd-),
# memory-optimised (m-, m3-, m6-) and storage-optimised (so-, so1_5-) plans.
_DEDICATED = "2vcpu-8gb 4vcpu-16gb 8vcpu-32gb 16vcpu-64gb 32vcpu-128gb 40vcpu-160gb"
_MEMORY = "2vcpu-16gb 4vcpu-32gb 8vcpu-64gb 16vcpu-128gb 24vcpu-192gb 32vcpu-256gb"
DROPLET_SIZES = frozenset(
    (
        "s-1vcpu-512mb-10gb",
        *_family("s", "1vcpu-1gb 1vcpu-2gb 2vcpu-2gb 2vcpu-4gb 4vcpu-8gb 8vcpu-16gb",
                 ("", "-amd", "-intel")),
        *_family("s", "2vcpu-8gb 4vcpu-16gb 8vcpu-32gb", ("-amd",)),
        *_family("s", "1vcpu-1gb-35gb 1vcpu-2gb-70gb 2vcpu-2gb-90gb 2vcpu-4gb-120gb "
                 "2vcpu-8gb-160gb 4vcpu-8gb-240gb 4vcpu-16gb-320gb 8vcpu-16gb-480gb "
                 "8vcpu-32gb-640gb", ("-intel",)),
        *_family("s", "12vcpu-48gb 16vcpu-64gb 20vcpu-96gb 24vcpu-128gb 32vcpu-192gb"),
        *_family("c", "2 4 8 16 32 48", ("", "-intel")),
        *_family("c2", "2vcpu-4gb 4vcpu-8gb 8vcpu-16gb 16vcpu-32gb 32vcpu-64gb 48vcpu-96gb",
                 ("", "-intel")),
        *_family("g", _DEDICATED, ("", "-intel")),
        *_family("gd", _DEDICATED, ("", "-intel")),
        *_family("m", _MEMORY, ("", "-intel")),
        *_family("m3", _MEMORY, ("", "-intel")),
        *_family("m6", _MEMORY),
        *_family("so", _MEMORY, ("", "-intel")),
        *_family("so1_5", _MEMORY, ("", "-intel")),
    )
)  # fmt: skip
# Managed PostgreSQL node sizes (`doctl databases options slugs --engine pg`). The RAM in the slug
# decides what the plan allows, below.
DB_SIZES = frozenset(
    (
        *_family("db-s", "1vcpu-1gb 1vcpu-2gb 2vcpu-4gb 4vcpu-8gb 6vcpu-16gb 8vcpu-32gb "
                 "16vcpu-64gb"),
        *_family("db-amd", "1vcpu-1gb 1vcpu-2gb 2vcpu-4gb 2vcpu-8gb 4vcpu-8gb 4vcpu-16gb "
                 "8vcpu-16gb 8vcpu-32gb 16vcpu-32gb 16vcpu-64gb"),
        *_family("db-intel", "1vcpu-1gb 1vcpu-2gb 2vcpu-4gb 2vcpu-8gb 4vcpu-8gb 4vcpu-16gb "
                 "8vcpu-16gb 8vcpu-32gb 16vcpu-32gb 16vcpu-64gb"),
        *_family("gd", _DEDICATED),
        *_family("m", _MEMORY),
        *_family("m3", _MEMORY),
        *_family("so1_5", _MEMORY),
    )
)  # fmt: skip
# Managed Valkey node sizes (`doctl databases options slugs --engine valkey`): the basic plans and
# the memory-optimised ones. As for PostgreSQL, the RAM in the slug decides whether the plan may
# have a standby.
REDIS_SIZES = frozenset(
    (
        *_family("db-s", "1vcpu-1gb 1vcpu-2gb 2vcpu-4gb 4vcpu-8gb 6vcpu-16gb 8vcpu-32gb "
                 "16vcpu-64gb"),
        *_family("m", _MEMORY),
    )
)  # fmt: skip
# DigitalOcean's API reference for connection pools: "25 backend server connections are allowed
# for every 1GB of RAM. Three are reserved for maintenance. For example, a primary node with 1 GB
# of RAM allows for a maximum of 22 backend server connections while one with 4 GB would allow
# for 97. Note that these are shared across all connection pools in a cluster."
# (https://docs.digitalocean.com/reference/dots/reference/databases/databases-update-connectionpool/)
CONNECTIONS_PER_GB = 25
RESERVED_CONNECTIONS = 3
# Standby nodes (high availability) are sold on plans with 2 GB of RAM or more only.
STANDBY_MIN_RAM_GB = 2
# The images provisioning (deploy/) knows how to harden and configure.
SUPPORTED_IMAGES = ("debian-12-x64", "ubuntu-22-04-x64", "ubuntu-24-04-x64")
DOMAIN_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
TLD_RE = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}(?<!-)")
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# IPv4-mapped IPv6 addresses (RFC 4291 2.5.5.2) are IPv4 addresses: ::ffff:0:0/96 is all of IPv4.
# Addresses reserved for documentation (RFC 5737, RFC 3849): an example copied unedited.
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


class SettingsError(ValueError):
    """The stack configuration is invalid. ``errors`` holds one single-line message per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Settings:
    """Everything the program reads from the stack configuration, validated and normalised."""

    ssh_public_keys: tuple[str, ...]
    admin_cidrs: tuple[str, ...]
    allow_ssh_from_anywhere: bool = False
    region: str = "fra1"
    droplet_size: str = "s-1vcpu-1gb"
    droplet_image: str = "debian-12-x64"
    web_count: int = 1
    ssh_private_key_path: str = ""
    db_size: str = "db-s-1vcpu-1gb"
    db_version: str = "16"
    db_node_count: int = 1
    db_pool_size: int = 0
    db_pool_mode: str = "transaction"
    domain: str | None = None
    protect_database: bool = True
    existing_ssh_key_fingerprints: tuple[str, ...] = ()
    # Alerts (infra/alert_policy.py): on unless switched off, and then they need a recipient.
    alerts: bool = True
    alert_emails: tuple[str, ...] = ()
    alert_slack_webhook: str = ""
    alert_slack_channel: str = ""
    alert_window: str = "5m"
    alert_cpu_percent: int = 80
    alert_memory_percent: int = 90
    alert_disk_percent: int = 85
    alert_lb_5xx_percent: int = 1
    alert_lb_latency_ms: int = 2000
    uptime_regions: tuple[str, ...] = UPTIME_REGIONS
    uptime_period: str = "5m"
    uptime_latency_ms: int = 2000
    tls_expiry_days: int = 14
    # Off-site logical backups (infra/backups.py).
    backups: bool = True
    backup_region: str = ""
    backup_bucket: str = ""
    backup_retention_days: int = 30
    # Point-in-time restore into a new cluster (infra/database.py).
    restore_from_cluster: str = ""
    restore_to_time: str = ""
    use_restored_database: bool = False
    # The Redis tier for background workers (infra/valkey.py): off unless asked for.
    redis: bool = False
    redis_size: str = "db-s-1vcpu-1gb"
    redis_node_count: int = 1
    redis_eviction_policy: str = "noeviction"

    @property
    def behind_load_balancer(self) -> bool:
        """More than one web droplet means a load balancer in front of them."""
        return self.web_count > 1

    @property
    def db_pool_enabled(self) -> bool:
        return self.db_pool_size > 0

    @property
    def restoring(self) -> bool:
        """A restored cluster is declared beside the stack's own one."""
        return bool(self.restore_from_cluster)

    @property
    def spaces_region(self) -> str:
        """Where the backup bucket lives: backupRegion, else the stack's own region."""
        return self.backup_region or self.region

    @property
    def new_ssh_public_keys(self) -> tuple[str, ...]:
        """The keys the stack uploads: those not already in the account (which would be a 422)."""
        existing = set(self.existing_ssh_key_fingerprints)
        return tuple(k for k in self.ssh_public_keys if ssh_key_fingerprint(k) not in existing)


# Config key (camelCase, as in Pulumi.yaml) -> Settings field. The order is the documented order.
CONFIG_KEYS: dict[str, str] = {
    "region": "region",
    "dropletSize": "droplet_size",
    "dropletImage": "droplet_image",
    "webCount": "web_count",
    "sshPublicKeys": "ssh_public_keys",
    "sshPrivateKeyPath": "ssh_private_key_path",
    "adminCidrs": "admin_cidrs",
    "allowSshFromAnywhere": "allow_ssh_from_anywhere",
    "dbSize": "db_size",
    "dbVersion": "db_version",
    "dbNodeCount": "db_node_count",
    "dbPoolSize": "db_pool_size",
    "dbPoolMode": "db_pool_mode",
    "domain": "domain",
    "protectDatabase": "protect_database",
    "existingSshKeyFingerprints": "existing_ssh_key_fingerprints",
    "alerts": "alerts",
    "alertEmails": "alert_emails",
    "alertSlackWebhook": "alert_slack_webhook",
    "alertSlackChannel": "alert_slack_channel",
    "alertWindow": "alert_window",
    "alertCpuPercent": "alert_cpu_percent",
    "alertMemoryPercent": "alert_memory_percent",
    "alertDiskPercent": "alert_disk_percent",
    "alertLb5xxPercent": "alert_lb_5xx_percent",
    "alertLbLatencyMs": "alert_lb_latency_ms",
    "uptimeRegions": "uptime_regions",
    "uptimePeriod": "uptime_period",
    "uptimeLatencyMs": "uptime_latency_ms",
    "tlsExpiryDays": "tls_expiry_days",
    "backups": "backups",
    "backupRegion": "backup_region",
    "backupBucket": "backup_bucket",
    "backupRetentionDays": "backup_retention_days",
    "restoreFromCluster": "restore_from_cluster",
    "restoreToTime": "restore_to_time",
    "useRestoredDatabase": "use_restored_database",
    "redis": "redis",
    "redisSize": "redis_size",
    "redisNodeCount": "redis_node_count",
    "redisEvictionPolicy": "redis_eviction_policy",
}
REQUIRED_KEYS = ("sshPublicKeys", "adminCidrs")
# Keys whose value must be stored encrypted (pulumi config set --secret).
SECRET_KEYS = ("alertSlackWebhook",)


class _Invalid(Exception):
    """One key's value is wrong; the message says what is allowed (without the key name)."""


def parse_settings(
    raw: Mapping[str, object],
    *,
    secret_keys: Collection[str] = (),
    now: datetime | None = None,
) -> Settings:
    """Validate raw ``dropstack:*`` values (keys without the namespace) into ``Settings``.

    Every problem is collected, so one run shows them all; ``SettingsError.errors`` has one line
    per problem, each starting with the namespaced key. ``secret_keys`` are the keys the stack
    stores encrypted; ``now`` is the moment a restore point may not be after (default: now).
    """
    errors: list[str] = []
    values: dict[str, Any] = {}
    for key in sorted(set(raw) - set(CONFIG_KEYS)):
        errors.append(f"{NAMESPACE}:{key}: unknown key; known keys are {', '.join(CONFIG_KEYS)}")

    def take(key: str, parse: Callable[[object], Any]) -> None:
        value = raw.get(key)
        if value is None:
            if key in REQUIRED_KEYS:
                errors.append(f"{NAMESPACE}:{key}: required; {_REQUIRED_HINTS[key]}")
            return
        try:
            values[CONFIG_KEYS[key]] = parse(value)
        except _Invalid as exc:
            errors.append(f"{NAMESPACE}:{key}: {exc}")

    take("allowSshFromAnywhere", _boolean)
    allow_anywhere = values.get("allow_ssh_from_anywhere", False)
    take("region", _region)
    take("dropletSize", _droplet_size)
    take("dropletImage", _image)
    take("webCount", lambda v: _integer(v, WEB_COUNT_RANGE, "number of web droplets"))
    take("sshPublicKeys", _ssh_public_keys)
    take("sshPrivateKeyPath", _ssh_private_key_path)
    take("adminCidrs", lambda v: _admin_cidrs(v, allow_anywhere=allow_anywhere))
    take("dbSize", _db_size)
    take("dbVersion", _db_version)
    take("dbNodeCount", lambda v: _integer(v, DB_NODE_COUNT_RANGE, "a primary plus 0-2 standbys"))
    take("dbPoolSize", lambda v: _integer(v, DB_POOL_SIZE_RANGE, "0 means no connection pool"))
    take("dbPoolMode", _pool_mode)
    take("domain", _domain)
    take("protectDatabase", _boolean)
    take("existingSshKeyFingerprints", _fingerprints)
    take("alerts", _boolean)
    take("alertEmails", _emails)
    take("alertSlackWebhook", _slack_webhook)
    take("alertSlackChannel", _slack_channel)
    take("alertWindow", lambda v: _choice(v, ALERT_WINDOWS, "a monitor alert window"))
    take("alertCpuPercent", lambda v: _integer(v, PERCENT_RANGE, "percent CPU"))
    take("alertMemoryPercent", lambda v: _integer(v, PERCENT_RANGE, "percent of memory used"))
    take("alertDiskPercent", lambda v: _integer(v, PERCENT_RANGE, "percent of disk used"))
    # Whole percent: Pulumi's project config schema has no fractional type.
    take("alertLb5xxPercent", lambda v: _integer(v, PERCENT_RANGE, "percent of responses"))
    take("alertLbLatencyMs", lambda v: _integer(v, LATENCY_MS_RANGE, "milliseconds"))
    take("uptimeRegions", _uptime_regions)
    take("uptimePeriod", lambda v: _choice(v, UPTIME_PERIODS, "an uptime alert period"))
    take("uptimeLatencyMs", lambda v: _integer(v, LATENCY_MS_RANGE, "milliseconds"))
    take("tlsExpiryDays", lambda v: _integer(v, TLS_EXPIRY_DAYS_RANGE, "days before expiry"))
    take("backups", _boolean)
    take("backupRegion", _spaces_region)
    take("backupBucket", _bucket)
    take("backupRetentionDays", lambda v: _integer(v, BACKUP_RETENTION_DAYS_RANGE, "days"))
    take("restoreFromCluster", _cluster_name)
    take("restoreToTime", lambda v: _restore_time(v, now or datetime.now(UTC)))
    take("useRestoredDatabase", _boolean)
    take("redis", _boolean)
    take("redisSize", _redis_size)
    take("redisNodeCount", lambda v: _integer(v, REDIS_NODE_COUNT_RANGE, "a primary + a standby"))
    take("redisEvictionPolicy", lambda v: _choice(v, EVICTION_POLICIES, "a Valkey eviction policy"))
    errors += _plan_errors(values, raw)
    errors += _redis_plan_errors(values, raw)
    errors += _existing_key_errors(values)
    errors += _alert_errors(values, raw, secret_keys)
    errors += _backup_errors(values)
    errors += _restore_errors(values)
    if errors:
        raise SettingsError(errors)
    return Settings(**values)


_REQUIRED_HINTS = {
    "sshPublicKeys": "a list of OpenSSH public keys for the deploy user "
    "(pulumi config set --path 'dropstack:sshPublicKeys[0]' \"$(cat ~/.ssh/id_ed25519.pub)\")",
    "adminCidrs": "a list of the networks allowed to SSH in "
    "(pulumi config set --path 'dropstack:adminCidrs[0]' <your-ip>/32)",
}


def load_settings() -> Settings:
    """Read and validate this stack's ``dropstack:*`` configuration.

    Keys are gathered from everything the engine passed (so a misspelt key is reported, not
    ignored) and each value is read the way ``pulumi.Config`` reads it.
    """
    prefix = f"{NAMESPACE}:"
    keys = {
        *pulumi.runtime.config.CONFIG.get(),
        *pulumi.runtime.get_config_env(),
        *(prefix + key for key in CONFIG_KEYS),
    }
    raw = {
        key.removeprefix(prefix): value
        for key in sorted(keys)
        if key.startswith(prefix) and (value := pulumi.runtime.get_config(key)) is not None
    }
    encrypted = set(pulumi.runtime.config.get_config_secret_keys_env())
    secret_keys = {
        key
        for key in raw
        if pulumi.runtime.is_config_secret(prefix + key) or prefix + key in encrypted
    }
    return parse_settings(raw, secret_keys=secret_keys)


def settings_field_defaults() -> dict[str, object]:
    """The default of every optional Settings field, keyed by config key (for docs and tests)."""
    by_field = {f.name: f.default for f in fields(Settings)}
    return {key: by_field[name] for key, name in CONFIG_KEYS.items() if key not in REQUIRED_KEYS}


# --- one parser per kind of value; each returns the normalised value or raises _Invalid ---------


def _text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(f"{value!r} is not a string")
    return str(value).strip()


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Invalid(f"{value!r} is not true or false")


def _integer(value: object, bounds: tuple[int, int], meaning: str) -> int:
    low, high = bounds
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    else:
        number = None
    if number is None:
        raise _Invalid(f"{value!r} is not an integer from {low} to {high} ({meaning})")
    if not low <= number <= high:
        raise _Invalid(f"{number} is outside {low}..{high} ({meaning})")
    return number


def _string_list(value: object, what: str) -> list[str]:
    """A list from a native list or the JSON text Pulumi passes for structured config."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _Invalid(
                f"must be a list of {what}, not the plain string {_shorten(value)!r}; "
                "set entries with pulumi config set --path 'KEY[0]' VALUE"
            ) from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"must be a list of {what}")
    return [v.strip() for v in value]


def _size(table: Iterable[str], what: str) -> Callable[[object], str]:
    """A validator of size slugs against DigitalOcean's table of them."""

    def check(value: object) -> str:
        size = _text(value).lower()
        if size not in table:
            raise _Invalid(f"{_shorten(size)!r} is not a {what}")
        return size

    return check


_droplet_size = _size(
    DROPLET_SIZES,
    "droplet size slug DigitalOcean sells, like s-1vcpu-1gb, s-2vcpu-4gb, c-2 or g-2vcpu-8gb "
    "(doctl compute size list)",
)
_redis_size = _size(
    REDIS_SIZES,
    "Valkey size slug like db-s-1vcpu-1gb, db-s-2vcpu-4gb or m-2vcpu-16gb "
    "(doctl databases options slugs --engine valkey)",
)
_db_size = _size(
    DB_SIZES,
    "database size slug like db-s-1vcpu-1gb, db-s-2vcpu-4gb or gd-2vcpu-8gb "
    "(doctl databases options slugs --engine pg)",
)


def _one_of(allowed: tuple[str, ...], what: str) -> Callable[[object], str]:
    """A validator of one of ``allowed`` (``_choice``); ``what`` names the kind in the error."""
    return lambda value: _choice(value, allowed, what)


_region = _one_of(REGIONS, "a DigitalOcean region")
_image = _one_of(SUPPORTED_IMAGES, "an image provisioning supports")
_db_version = _one_of(POSTGRES_VERSIONS, "a PostgreSQL version DigitalOcean offers")
_pool_mode = _one_of(POOL_MODES, "a connection pool mode")


def db_ram_gb(size: str) -> int:
    """The RAM of a database node, from its slug (db-s-2vcpu-4gb -> 4)."""
    return int(re.fullmatch(r".*-(\d+)gb", size).group(1))


def connection_limit(size: str) -> int:
    """Backend connections a plan allows (shared by all its pools): 25 per GB, 3 reserved."""
    return CONNECTIONS_PER_GB * db_ram_gb(size) - RESERVED_CONNECTIONS


DB_POOL_SIZE_RANGE = (0, max(connection_limit(size) for size in DB_SIZES))


def _plan_errors(values: Mapping[str, Any], raw: Mapping[str, object]) -> list[str]:
    """What the database plan does not allow: standbys under 2 GB, a pool over its connections.

    Checked only once both keys parsed, so a bad value is reported once, by its own key.
    """
    size = values.get("db_size", Settings.db_size if "dbSize" not in raw else None)
    if size is None:
        return []
    errors = []
    nodes = values.get("db_node_count", 1)
    if nodes > 1 and db_ram_gb(size) < STANDBY_MIN_RAM_GB:
        errors.append(
            f"{NAMESPACE}:dbNodeCount: {nodes} nodes means {nodes - 1} standby node(s), which "
            f"DigitalOcean sells only on plans with {STANDBY_MIN_RAM_GB} GB of RAM or more; "
            f"{size} has {db_ram_gb(size)} GB: use dbNodeCount 1 or a dbSize like db-s-1vcpu-2gb"
        )
    pool = values.get("db_pool_size", 0)
    if pool > connection_limit(size):
        errors.append(
            f"{NAMESPACE}:dbPoolSize: {pool} is more than {size} allows; "
            f"use 0..{connection_limit(size)} ({CONNECTIONS_PER_GB} connections per GB of RAM, "
            f"{RESERVED_CONNECTIONS} reserved) "
            "or a larger dbSize"
        )
    return errors


def _redis_plan_errors(values: Mapping[str, Any], raw: Mapping[str, object]) -> list[str]:
    """A Valkey standby needs a plan with 2 GB of RAM or more (checked once both keys parsed)."""
    size = values.get("redis_size", Settings.redis_size if "redisSize" not in raw else None)
    nodes = values.get("redis_node_count", 1)
    if size is None or nodes == 1 or db_ram_gb(size) >= STANDBY_MIN_RAM_GB:
        return []
    return [
        f"{NAMESPACE}:redisNodeCount: {nodes} nodes means a standby node, which DigitalOcean "
        f"sells only on plans with {STANDBY_MIN_RAM_GB} GB of RAM or more; {size} has "
        f"{db_ram_gb(size)} GB: use redisNodeCount 1 or a redisSize like db-s-1vcpu-2gb"
    ]


def _existing_key_errors(values: Mapping[str, Any]) -> list[str]:
    """Each existing fingerprint is one of sshPublicKeys: that key is reused, not uploaded."""
    ours = {ssh_key_fingerprint(key) for key in values.get("ssh_public_keys", ())}
    if not ours:
        return []
    return [
        f"{NAMESPACE}:existingSshKeyFingerprints: entry {number} ({fingerprint}) is not the "
        "fingerprint of any sshPublicKeys entry; list only keys that are both in sshPublicKeys "
        "and already in the DigitalOcean account"
        for number, fingerprint in enumerate(values.get("existing_ssh_key_fingerprints", ()), 1)
        if fingerprint not in ours
    ]


def _domain(value: object) -> str | None:
    domain = _text(value).lower().removesuffix(".")
    if not domain:
        return None
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(DOMAIN_LABEL_RE.fullmatch(label) for label in labels)
    ):
        raise _Invalid(
            f"{_shorten(domain)!r} is not a domain name like example.com (no scheme, path or port)"
        )
    if not TLD_RE.fullmatch(labels[-1]):
        # No top-level domain is numeric (RFC 3696 2), so example.123 can never be delegated.
        raise _Invalid(
            f"{_shorten(domain)!r} ends in {_shorten(labels[-1])!r}, which is not a top-level "
            "domain: 2-63 letters, or xn-- punycode"
        )
    return domain


def _ssh_public_keys(value: object) -> tuple[str, ...]:
    keys = _string_list(value, "OpenSSH public keys")
    if not keys:
        raise _Invalid(f"is empty; {_REQUIRED_HINTS['sshPublicKeys']}")
    seen: dict[str, int] = {}
    for number, key in enumerate(keys, start=1):
        if "PRIVATE KEY" in key:
            # Never echo it: this is a private key pasted by mistake.
            raise _Invalid(f"entry {number} is a PRIVATE key; give the contents of the .pub file")
        if not is_openssh_public_key(key):
            raise _Invalid(
                f"entry {number} ({_shorten(key)!r}) is not an OpenSSH public key "
                f"('TYPE BASE64 [comment]' with TYPE one of {', '.join(SSH_KEY_TYPES[:3])}, ...)"
            )
        blob = key.split()[1]
        if blob in seen:
            raise _Invalid(f"entry {number} repeats entry {seen[blob]}")
        seen[blob] = number
    return tuple(keys)


def is_openssh_public_key(line: str) -> bool:
    """True for one ``authorized_keys``-style public key line whose blob matches its type."""
    parts = line.split()
    if "\n" in line.strip() or len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        return False
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return False
    length = int.from_bytes(blob[:4], "big")
    return len(blob) > 4 + length and blob[4 : 4 + length] == parts[0].encode()


def _ssh_private_key_path(value: object) -> str:
    path = _text(value)
    if "\n" in path or "BEGIN" in path:
        raise _Invalid("looks like key material; give the private key's file path ('' = ssh-agent)")
    if path.endswith(".pub"):
        raise _Invalid(f"{path!r} is a public key; give the private key's path ('' = ssh-agent)")
    return path


def _admin_cidrs(value: object, *, allow_anywhere: bool) -> tuple[str, ...]:
    entries = _string_list(value, "CIDRs")
    if not entries:
        raise _Invalid(f"is empty; {_REQUIRED_HINTS['adminCidrs']}")
    cidrs: list[str] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                fixed = ipaddress.ip_network(entry, strict=False)
                raise _Invalid(f"{entry!r} has host bits set; did you mean {fixed}?") from None
            raise _Invalid(f"{_shorten(entry)!r} is not an IPv4/IPv6 address or CIDR") from None
        if any(
            network.subnet_of(doc)
            for doc in DOCUMENTATION_NETWORKS
            if doc.version == network.version
        ):
            raise _Invalid(
                f"{network} is a documentation example range (RFC 5737/3849); "
                "put the address you SSH from"
            )
        if str(network) not in cidrs:
            cidrs.append(str(network))
    whole = covered_internet(cidrs)
    if whole and not allow_anywhere:
        listed = _shorten(", ".join(cidrs), 60)
        raise _Invalid(
            f"{listed}{' together' if len(cidrs) > 1 else ''} cover all of {whole}, which opens "
            "SSH to the whole internet; list the networks you SSH from, "
            f"or set {NAMESPACE}:allowSshFromAnywhere to true to accept that"
        )
    return tuple(cidrs)


def covered_internet(cidrs: Iterable[str]) -> str | None:
    """``"IPv4"``/``"IPv6"`` when the networks' union is that whole address family, else None
    (the policy pack's own rule, so program and pack agree on what "the whole internet" is)."""
    return rules.covered_internet(ipaddress.ip_network(c, strict=False) for c in cidrs)


def ssh_key_fingerprint(public_key: str) -> str:
    """DigitalOcean's fingerprint of an OpenSSH public key: the MD5 of its blob, colon-separated
    (what `ssh-keygen -l -E md5 -f key.pub` prints after ``MD5:``)."""
    digest = hashlib.md5(base64.b64decode(public_key.split()[1]), usedforsecurity=False)
    return ":".join(f"{byte:02x}" for byte in digest.digest())


def _fingerprints(value: object) -> tuple[str, ...]:
    entries = [entry.lower() for entry in _string_list(value, "MD5 key fingerprints")]
    for number, entry in enumerate(entries, start=1):
        if not re.fullmatch(r"([0-9a-f]{2}:){15}[0-9a-f]{2}", entry):
            raise _Invalid(
                f"entry {number} ({_shorten(entry)!r}) is not an MD5 fingerprint like "
                "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa (doctl compute ssh-key list)"
            )
    return tuple(dict.fromkeys(entries))


def _choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    """One of ``allowed`` (compared in lower case); ``what`` names the kind in the error."""
    choice = _text(value).lower()
    if choice not in allowed:
        raise _Invalid(f"{_shorten(choice)!r} is not {what}; use one of {', '.join(allowed)}")
    return choice


def _emails(value: object) -> tuple[str, ...]:
    entries = _string_list(value, "e-mail addresses")
    for number, entry in enumerate(entries, start=1):
        match = EMAIL_RE.fullmatch(entry)
        if not match or _domain_or_none(match.group(1)) is None:
            raise _Invalid(f"entry {number} ({_shorten(entry)!r}) is not an e-mail address")
        domain = match.group(1).lower()
        if any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS):
            raise _Invalid(
                f"entry {number} ({_shorten(entry)!r}) is an example address (RFC 2606); "
                "put the address that should receive the alerts"
            )
    return tuple(dict.fromkeys(entries))


def _domain_or_none(text: str) -> str | None:
    try:
        return _domain(text)
    except _Invalid:
        return None


def _slack_webhook(value: object) -> str:
    url = _text(value)
    # Never echo it: the URL is the credential.
    if url and (not url.startswith(SLACK_WEBHOOK_PREFIX) or any(c.isspace() for c in url)):
        raise _Invalid(f"is not a Slack incoming-webhook URL (it starts {SLACK_WEBHOOK_PREFIX})")
    return url


def _slack_channel(value: object) -> str:
    channel = _text(value)
    if channel and (len(channel) > 80 or any(c.isspace() for c in channel.strip("#"))):
        raise _Invalid(f"{_shorten(channel)!r} is not a Slack channel name like #ops-alerts")
    return channel


def _uptime_regions(value: object) -> tuple[str, ...]:
    entries = [entry.lower() for entry in _string_list(value, "uptime check regions")]
    if not entries:
        raise _Invalid(f"is empty; list one or more of {', '.join(UPTIME_REGIONS)}")
    for entry in entries:
        if entry not in UPTIME_REGIONS:
            raise _Invalid(
                f"{_shorten(entry)!r} is not an uptime check region; "
                f"use {', '.join(UPTIME_REGIONS)}"
            )
    return tuple(dict.fromkeys(entries))


def _spaces_region(value: object) -> str:
    region = _text(value).lower()
    if region and region not in SPACES_REGIONS:
        raise _Invalid(f"{region!r} has no Spaces; use one of {', '.join(SPACES_REGIONS)}")
    return region


def _bucket(value: object) -> str:
    bucket = _text(value)
    if bucket and (not BUCKET_RE.fullmatch(bucket) or "--" in bucket):
        raise _Invalid(
            f"{_shorten(bucket)!r} is not a Spaces bucket name: 3-63 lowercase letters, digits "
            "and single hyphens, starting and ending with a letter or digit ('' = derived)"
        )
    return bucket


def _cluster_name(value: object) -> str:
    name = _text(value)
    if name and not CLUSTER_NAME_RE.fullmatch(name):
        raise _Invalid(
            f"{_shorten(name)!r} is not a database cluster name (lowercase letters, digits and "
            "hyphens, as `doctl databases list` shows it)"
        )
    return name


def _restore_time(value: object, now: datetime) -> str:
    """An RFC 3339 timestamp with its offset, normalised to UTC (``2026-12-01T09:30:00Z``)."""
    text = _text(value)
    if not text:
        return ""
    match = re.fullmatch(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", text, re.IGNORECASE
    )
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00")) if match else None
    except ValueError:
        moment = None
    if moment is None:
        raise _Invalid(
            f"{_shorten(text)!r} is not an RFC 3339 timestamp with an offset, like "
            "2026-12-01T09:30:00Z ('' = the newest backup)"
        )
    moment = moment.astimezone(UTC)
    if moment > now:
        raise _Invalid(
            f"{moment:%Y-%m-%dT%H:%M:%SZ} is in the future; a restore point must have happened"
        )
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _alert_errors(
    values: Mapping[str, Any], raw: Mapping[str, object], secret_keys: Collection[str]
) -> list[str]:
    """Alerts that would go nowhere, a webhook without its channel, a webhook stored in clear.

    A recipient key that failed to parse was reported already and is not reported again here.
    """
    unparsed = {key for key in raw if key in CONFIG_KEYS and CONFIG_KEYS[key] not in values}
    errors = []
    webhook = values.get("alert_slack_webhook", "")
    channel = values.get("alert_slack_channel", "")
    if webhook and "alertSlackWebhook" not in secret_keys:
        errors.append(
            f"{NAMESPACE}:alertSlackWebhook: is stored in clear; the URL is a credential, set it "
            f"with pulumi config set --secret {NAMESPACE}:alertSlackWebhook URL"
        )
    if bool(webhook) != bool(channel) and not unparsed & {"alertSlackWebhook", "alertSlackChannel"}:
        given, missing = (
            ("alertSlackWebhook", "alertSlackChannel")
            if webhook
            else ("alertSlackChannel", "alertSlackWebhook")
        )
        errors.append(
            f"{NAMESPACE}:{given}: Slack alerts need alertSlackWebhook and alertSlackChannel "
            f"together; set {missing} too, or neither"
        )
    if (
        values.get("alerts", True)
        and not (values.get("alert_emails") or webhook)
        and not unparsed & {"alerts", "alertEmails", "alertSlackWebhook"}
    ):
        errors.append(
            f"{NAMESPACE}:alertEmails: alerts are on and have nowhere to go; list the addresses "
            f"to notify (or set alertSlackWebhook), or set {NAMESPACE}:alerts to false"
        )
    return errors


def _backup_errors(values: Mapping[str, Any]) -> list[str]:
    """The backup bucket needs a Spaces region: the stack's own, unless backupRegion names one."""
    if not values.get("backups", True) or values.get("backup_region"):
        return []
    region = values.get("region", Settings.region)
    if region in SPACES_REGIONS:
        return []
    return [
        f"{NAMESPACE}:backupRegion: the stack's region {region} has no Spaces, so the backup "
        f"bucket needs one of {', '.join(SPACES_REGIONS)} (nyc3 is closest to nyc1), "
        f"or set {NAMESPACE}:backups to false"
    ]


def _restore_errors(values: Mapping[str, Any]) -> list[str]:
    """A restore point or a switch needs the cluster to restore from."""
    if values.get("restore_from_cluster"):
        return []
    return [
        f"{NAMESPACE}:{key}: needs {NAMESPACE}:restoreFromCluster, the name of the cluster whose "
        "backups to restore"
        for key, field_name in (
            ("restoreToTime", "restore_to_time"),
            ("useRestoredDatabase", "use_restored_database"),
        )
        if values.get(field_name)
    ]


def _shorten(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def domain_name(value: object) -> str | None:
    """The check the ``domain`` key gets, for other ways of naming the site's domain (``fab
    local.up --domain``): the name, lower case, or None when empty; ValueError otherwise."""
    try:
        return _domain(value)
    except _Invalid as exc:
        raise ValueError(str(exc)) from None
