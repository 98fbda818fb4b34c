"""Workers and their Redis in provisioning: REDIS_URL and the Redis CA in the app's files,
from the inventory, and one line when workers are configured without a Redis."""

from __future__ import annotations

import pytest

from deploy import host_model
from deploy.host_model import SettingsError
from deploy.inventory import parse_inventory
from deploy.local.redis import redis_uri
from deploy.provision import desired, operations
from deploy.provision.target_files import app_redis_url, env_files
from tests.deploy.test_host_model import INVENTORY

URI = redis_uri("198.18.1.101", "s3cret")
WORKERS = {"dropstack": {"app": {"worker_count": 2}}}


def target(config: dict, **inventory) -> operations.Target:
    inv = parse_inventory({**INVENTORY, **inventory}, "inventory.json")
    return operations.Target("web-1", host_model.for_host(config, inv, inv.web_hosts[0]), inv)


def files_of(t: operations.Target) -> dict[str, str]:
    return {f.path: f.content for f in env_files(t, "")}


def test_with_workers_the_env_file_names_the_redis_and_its_ca():
    t = target(WORKERS, redis_uri=URI, redis_ca_cert="REDIS CA PEM")
    files = files_of(t)
    assert files["/etc/dropstack/redis-ca.crt"] == "REDIS CA PEM"
    env = desired.parse_env_file(files[t.settings.env_file])
    assert env["REDIS_URL"] == (
        f"{URI}?ssl_cert_reqs=required&ssl_ca_certs=/etc/dropstack/redis-ca.crt"
    )
    assert list(env) == ["DROPSTACK_ENV", "DATABASE_URL", "SECRET_KEY", "REDIS_URL"]


def test_a_public_certificate_needs_no_ca_file():
    """DigitalOcean's Valkey: a Let's Encrypt certificate, verified against the system store."""
    t = target(WORKERS, redis_uri=URI)
    files = files_of(t)
    assert "/etc/dropstack/redis-ca.crt" not in files
    env = desired.parse_env_file(files[t.settings.env_file])
    assert env["REDIS_URL"] == f"{URI}?ssl_cert_reqs=required"


def test_without_workers_there_is_no_redis_url_even_with_a_redis():
    t = target({}, redis_uri=URI, redis_ca_cert="REDIS CA PEM")
    files = files_of(t)
    assert "REDIS_URL" not in desired.parse_env_file(files[t.settings.env_file])
    assert "/etc/dropstack/redis-ca.crt" not in files


@pytest.mark.parametrize(
    ("inventory", "message"),
    [
        ({}, "app.worker_count: 2 workers need a Redis, and inventory.json has no redis_uri; "),
        ({"redis_uri": ""}, "has no redis_uri"),
        (
            {"redis_uri": URI.replace("rediss://", "redis://")},
            "redis_uri must start with rediss://",
        ),
    ],
)
def test_workers_without_a_tls_redis_are_one_line_at_provision_and_deploy(inventory, message):
    """for_host is what provisioning and every release task build their model with."""
    with pytest.raises(SettingsError, match=message) as raised:
        target(WORKERS, **inventory)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("uri", "ca", "expected"),
    [
        (URI, "", f"{URI}?ssl_cert_reqs=required"),
        (
            f"{URI}?ssl_cert_reqs=none",
            "/c.crt",
            f"{URI}?ssl_cert_reqs=required&ssl_ca_certs=/c.crt",
        ),
        (f"{URI}/0?socket_timeout=5", "", f"{URI}/0?socket_timeout=5&ssl_cert_reqs=required"),
    ],
)
def test_the_app_always_verifies_the_certificate(uri, ca, expected):
    assert app_redis_url(uri, ca) == expected


def test_the_redis_url_is_drift_the_env_file_step_sees():
    """Another Redis password in the inventory: the env file step would change the file."""
    old = target(WORKERS, redis_uri=URI, redis_ca_cert="CA")
    new = target(WORKERS, redis_uri=URI.replace("s3cret", "n3w"), redis_ca_cert="CA")
    env_path = old.settings.env_file
    existing = files_of(old)[env_path]
    assert {f.path: f.content for f in env_files(new, existing)}[env_path] != existing
    # ...and the same inventory keeps the file byte for byte (SECRET_KEY kept).
    assert {f.path: f.content for f in env_files(old, existing)}[env_path] == existing
