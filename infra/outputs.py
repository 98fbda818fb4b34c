"""The stack outputs: their names, in one place, and the pure functions that compute their values.

The names are the deploy layer's inventory contract (``deploy.inventory.INVENTORY_KEYS``); the
tests assert the two stay equal. infra does not import deploy: data flows from here to there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

OUTPUT_NAMES = (
    "stack",
    "region",
    "vpc_cidr",
    "web_names",
    "web_public_ips",
    "web_private_ips",
    "ssh_user",
    "ssh_key_path",
    "ssh_public_keys",
    "load_balancer_ip",
    "domain",
    "url",
    "db_host",
    "db_port",
    "db_name",
    "db_user",
    "db_uri",
    "db_admin_uri",
    "db_ca_cert",
    "backup_endpoint",
    "backup_bucket",
    "backup_region",
    "backup_access_key_id",
    "backup_secret_access_key",
    "redis_uri",
)

# The PgBouncer pool's name, the "database" clients name in a pooled URI (DigitalOcean's and the
# local droplet's alike).
DB_POOL_NAME = "dropstack-pool"

# Pulumi's Python SDK drops an output whose value is None (it would vanish from
# `pulumi stack output --json`), so an absent value is exported as "" and every key is present.
ABSENT = ""


def stack_outputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs in OUTPUT_NAMES order; refuses a missing or extra name, and None values."""
    missing = sorted(set(OUTPUT_NAMES) - set(values))
    extra = sorted(set(values) - set(OUTPUT_NAMES))
    if missing or extra:
        raise ValueError(f"stack outputs: missing {missing}, unexpected {extra}")
    nones = [name for name in OUTPUT_NAMES if values[name] is None]
    if nones:
        raise ValueError(f"stack outputs: {nones} are None; export {ABSENT!r} for an absent value")
    return {name: values[name] for name in OUTPUT_NAMES}


def site_url(domain: str | None, address: str) -> str:
    """https://<domain> when the site has one (TLS is set up for it), else http://<address>."""
    return f"https://{domain}" if domain else f"http://{address}"


def redis_uri(user: str, password: str, host: str, port: int) -> str:
    """A rediss:// URI (TLS; DigitalOcean's Valkey accepts nothing else), database 0; user and
    password are percent-encoded, as redis-py's ``from_url`` decodes them."""
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"rediss://{credentials}@{host}:{port}"


def postgres_uri(user: str, password: str, host: str, port: int, database: str) -> str:
    """A libpq URI that insists on TLS; user, password and database are percent-encoded."""
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgresql://{credentials}@{host}:{port}/{quote(database, safe='')}?sslmode=require"
