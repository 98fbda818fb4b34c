"""What the stack alerts on, as plain data: monitor alerts, the uptime check and its alerts.

infra/monitoring.py declares DigitalOcean resources from these; nothing here knows Pulumi. The
allowed values are DigitalOcean's (pulumi-digitalocean 4.84.1 ``MonitorAlert``, ``UptimeCheck``,
``UptimeAlert``): a spec outside them is refused here, before the API would refuse it mid-update.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.settings import ALERT_WINDOWS, UPTIME_PERIODS, Settings

# Monitor alert types used by this stack, by what they watch. The droplet metrics need the
# metrics agent (monitoring=True on the droplets, a policy of the pack).
DROPLET_CPU = "v1/insights/droplet/cpu"
DROPLET_MEMORY = "v1/insights/droplet/memory_utilization_percent"
DROPLET_DISK = "v1/insights/droplet/disk_utilization_percent"
DATABASE_CPU = "v1/dbaas/alerts/cpu_alerts"
DATABASE_MEMORY = "v1/dbaas/alerts/memory_utilization_alerts"
DATABASE_DISK = "v1/dbaas/alerts/disk_utilization_alerts"
LB_5XX_RATE = "v1/insights/lbaas/increase_in_http_error_rate_percentage_5xx"
# The 95th percentile: a few slow requests do not page, most requests being slow does.
LB_LATENCY = "v1/insights/lbaas/high_http_request_response_time_95p"
MONITOR_ALERT_TYPES = (
    DROPLET_CPU, DROPLET_MEMORY, DROPLET_DISK,
    DATABASE_CPU, DATABASE_MEMORY, DATABASE_DISK,
    LB_5XX_RATE, LB_LATENCY,
)  # fmt: skip
MONITOR_COMPARISONS = ("GreaterThan", "LessThan")
UPTIME_ALERT_TYPES = ("down", "down_global", "latency", "ssl_expiry")
UPTIME_COMPARISONS = ("greater_than", "less_than")
UPTIME_CHECK_TYPES = ("ping", "http", "https")

# What a monitor alert is scoped to: droplets by the web tier's tag, or one resource by its id.
WEB_TAG = "web-tag"
DATABASE = "database"
REDIS = "redis"
LOAD_BALANCER = "load-balancer"


@dataclass(frozen=True)
class MonitorAlertSpec:
    """One DigitalOcean monitor alert; ``key`` names the resource within the stack."""

    key: str
    type: str
    value: float
    window: str
    scope: str
    what: str
    compare: str = "GreaterThan"

    def __post_init__(self) -> None:
        if self.type not in MONITOR_ALERT_TYPES:
            raise ValueError(f"monitor alert {self.key}: unknown type {self.type!r}")
        if self.compare not in MONITOR_COMPARISONS or self.window not in ALERT_WINDOWS:
            raise ValueError(f"monitor alert {self.key}: bad compare or window")

    def description(self, stack: str) -> str:
        """The line the notification carries: which stack, what, over which threshold."""
        sign = ">" if self.compare == "GreaterThan" else "<"
        return f"{stack}: {self.what} {sign} {self.value:g} over {self.window}"


@dataclass(frozen=True)
class UptimeAlertSpec:
    """One alert on the site's uptime check; ``threshold`` is ms (latency) or days (ssl_expiry)."""

    key: str
    type: str
    period: str
    threshold: int | None = None
    comparison: str | None = None

    def __post_init__(self) -> None:
        if self.type not in UPTIME_ALERT_TYPES or self.period not in UPTIME_PERIODS:
            raise ValueError(f"uptime alert {self.key}: bad type or period")
        if (self.threshold is None) != (self.comparison is None):
            raise ValueError(f"uptime alert {self.key}: threshold and comparison go together")
        if self.comparison is not None and self.comparison not in UPTIME_COMPARISONS:
            raise ValueError(f"uptime alert {self.key}: bad comparison {self.comparison!r}")


def monitor_alerts(
    settings: Settings, *, load_balancer: bool, redis: bool = False
) -> tuple[MonitorAlertSpec, ...]:
    """Droplet and database CPU, memory and disk; the same on the Redis tier's cluster when there
    is one; the load balancer's 5xx rate and latency when there is one. Empty when alerts are
    off."""
    if not settings.alerts:
        return ()
    window = settings.alert_window
    # The same three on the web droplets (by their tag) and on the database cluster:
    # (name, what is measured, threshold, the droplets' metric, the database's metric).
    resources = (
        ("cpu", "CPU %", settings.alert_cpu_percent, DROPLET_CPU, DATABASE_CPU),
        ("memory", "memory used %", settings.alert_memory_percent, DROPLET_MEMORY, DATABASE_MEMORY),
        ("disk", "disk used %", settings.alert_disk_percent, DROPLET_DISK, DATABASE_DISK),
    )
    specs = [
        MonitorAlertSpec(f"web-{name}", droplets, threshold, window, WEB_TAG, f"web droplet {what}")
        for name, what, threshold, droplets, _ in resources
    ] + [
        MonitorAlertSpec(f"db-{name}", database, threshold, window, DATABASE, f"database {what}")
        for name, what, threshold, _, database in resources
    ]
    if redis:
        # DigitalOcean's database alerts cover every managed engine, Valkey included. Memory
        # matters most there: with noeviction a full Valkey refuses new jobs.
        specs += [
            MonitorAlertSpec(f"redis-{name}", database, threshold, window, REDIS, f"redis {what}")
            for name, what, threshold, _, database in resources
        ]
    if load_balancer:
        specs += [
            MonitorAlertSpec("lb-5xx", LB_5XX_RATE, settings.alert_lb_5xx_percent, window,
                             LOAD_BALANCER, "load balancer 5xx responses %"),
            MonitorAlertSpec("lb-latency", LB_LATENCY, settings.alert_lb_latency_ms, window,
                             LOAD_BALANCER, "load balancer 95th percentile response ms"),
        ]  # fmt: skip
    return tuple(specs)


def uptime_check_target(settings: Settings, url: str) -> tuple[str, str]:
    """(type, target) of the site's uptime check: https on the domain, else http on ``url``."""
    if settings.domain:
        return "https", f"https://{settings.domain}"
    return "http", url


def uptime_alerts(settings: Settings) -> tuple[UptimeAlertSpec, ...]:
    """Down and slow always; a TLS certificate about to expire when the site has a domain (only
    then does it serve HTTPS). Empty when alerts are off."""
    if not settings.alerts:
        return ()
    period = settings.uptime_period
    specs = [
        UptimeAlertSpec("down", "down", period),
        UptimeAlertSpec("latency", "latency", period, settings.uptime_latency_ms, "greater_than"),
    ]
    if settings.domain:
        specs.append(
            UptimeAlertSpec("tls-expiry", "ssl_expiry", period, settings.tls_expiry_days,
                            "less_than")
        )  # fmt: skip
    return tuple(specs)


def slack_targets(settings: Settings) -> tuple[tuple[str, str], ...]:
    """(channel, webhook url) pairs; empty without a webhook."""
    if not settings.alert_slack_webhook:
        return ()
    return ((settings.alert_slack_channel, settings.alert_slack_webhook),)
