"""Stack output names (the inventory contract), their pure value functions, and resource names."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from deploy.inventory import INVENTORY_KEYS
from infra.naming import resource_prefix
from infra.outputs import OUTPUT_NAMES, postgres_uri, site_url, stack_outputs
from infra.settings import SettingsError


def test_output_names_are_the_inventory_keys_in_order():
    assert list(OUTPUT_NAMES) == list(INVENTORY_KEYS)


def test_stack_outputs_refuses_missing_extra_and_none():
    values = dict.fromkeys(OUTPUT_NAMES, "x")
    assert list(stack_outputs(values)) == list(OUTPUT_NAMES)
    with pytest.raises(ValueError, match="missing \\['url'\\]"):
        stack_outputs({k: v for k, v in values.items() if k != "url"})
    with pytest.raises(ValueError, match="unexpected \\['extra'\\]"):
        stack_outputs({**values, "extra": 1})
    with pytest.raises(ValueError, match="load_balancer_ip"):
        stack_outputs({**values, "load_balancer_ip": None})


@pytest.mark.parametrize(
    ("domain", "address", "url"),
    [
        ("example.com", "192.0.2.10", "https://example.com"),
        (None, "192.0.2.10", "http://192.0.2.10"),
        ("", "192.0.2.10", "http://192.0.2.10"),
    ],
)
def test_site_url(domain, address, url):
    assert site_url(domain, address) == url


def test_postgres_uri_encodes_credentials_and_requires_tls():
    uri = postgres_uri("app", "p@ss/w:rd?#", "private-db.example", 25060, "app db")
    parts = urlsplit(uri)
    assert parts.scheme == "postgresql"
    assert (parts.hostname, parts.port) == ("private-db.example", 25060)
    assert (unquote(parts.username), unquote(parts.password)) == ("app", "p@ss/w:rd?#")
    assert unquote(parts.path) == "/app db"
    assert parts.query == "sslmode=require"


@pytest.mark.parametrize(
    ("project", "stack", "prefix"),
    [
        ("dropstack", "prod", "dropstack-prod"),
        ("dropstack", "Staging_EU.2", "dropstack-staging-eu-2"),
        ("dropstack", "dev--x", "dropstack-dev-x"),
    ],
)
def test_resource_prefix(project, stack, prefix):
    assert resource_prefix(project, stack) == prefix


def test_resource_prefix_length_is_bounded():
    with pytest.raises(SettingsError, match="at most 40 characters"):
        resource_prefix("dropstack", "x" * 31)
