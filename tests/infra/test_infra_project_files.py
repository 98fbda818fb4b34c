"""Pulumi.yaml's config schema, Pulumi.example.yaml and docs/infra.md agree with the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.outputs import OUTPUT_NAMES
from infra.settings import (
    CONFIG_KEYS,
    NAMESPACE,
    REQUIRED_KEYS,
    SettingsError,
    parse_settings,
)
from tests.infra.sample_config import valid_config

REPO = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
SCHEMA = PROJECT["config"]
EXAMPLE = yaml.safe_load((REPO / "Pulumi.example.yaml").read_text())["config"]
TYPES = {
    "webCount": "integer",
    "dbNodeCount": "integer",
    "dbPoolSize": "integer",
    "allowSshFromAnywhere": "boolean",
    "protectDatabase": "boolean",
    "sshPublicKeys": "array",
    "adminCidrs": "array",
    "existingSshKeyFingerprints": "array",
    "alerts": "boolean",
    "alertEmails": "array",
    "alertCpuPercent": "integer",
    "alertMemoryPercent": "integer",
    "alertDiskPercent": "integer",
    "alertLb5xxPercent": "integer",
    "alertLbLatencyMs": "integer",
    "uptimeRegions": "array",
    "uptimeLatencyMs": "integer",
    "tlsExpiryDays": "integer",
    "backups": "boolean",
    "backupRetentionDays": "integer",
    "useRestoredDatabase": "boolean",
    "redis": "boolean",
    "redisNodeCount": "integer",
}
# The README documents the original keys; docs/digitalocean.md the DigitalOcean-specific ones
# until the lead moves its tables into the README.
# The docs site pages with the stack config and output tables.
DOCS = [
    REPO / "docs" / "infra.md",
    REPO / "docs" / "digitalocean.md",
    REPO / "docs" / "day2-infra.md",
    REPO / "docs" / "redis.md",
]


def test_project_runs_infra_main():
    assert PROJECT["name"] == NAMESPACE
    assert PROJECT["main"] == "infra/"
    assert (REPO / "infra" / "__main__.py").is_file()


def test_schema_declares_exactly_the_settings():
    assert list(SCHEMA) == list(CONFIG_KEYS)


@pytest.mark.parametrize("key", list(CONFIG_KEYS))
def test_schema_entry(key):
    entry = SCHEMA[key]
    assert entry["type"] == TYPES.get(key, "string")
    if entry["type"] == "array":
        assert entry["items"] == {"type": "string"}
    assert entry["description"].strip()
    # Pulumi requires a value for every declared key without a default.
    assert ("default" in entry) is (key not in REQUIRED_KEYS)


def test_schema_defaults_are_the_code_defaults():
    from_schema = {key: entry["default"] for key, entry in SCHEMA.items() if "default" in entry}
    assert parse_settings({**from_schema, **valid_config()}) == parse_settings(valid_config())


def test_example_uses_known_keys_and_refuses_its_placeholders():
    raw = {key.removeprefix(f"{NAMESPACE}:"): value for key, value in EXAMPLE.items()}
    assert all(key.startswith(f"{NAMESPACE}:") for key in EXAMPLE)
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw)
    assert [line.split(": ", 1)[0] for line in caught.value.errors] == [
        "dropstack:sshPublicKeys",
        "dropstack:adminCidrs",
        "dropstack:alertEmails",
    ]
    assert parse_settings({**raw, **valid_config()}).region == "fra1"


def test_example_carries_no_secret():
    text = (REPO / "Pulumi.example.yaml").read_text()
    assert "secure:" not in text.replace("{secure: ...}", "")
    assert "digitalocean:token" not in EXAMPLE


@pytest.mark.parametrize("name", [*CONFIG_KEYS, *OUTPUT_NAMES])
def test_docs_describe_every_key_and_output(name):
    assert any(f"| `{name}` |" in doc.read_text() for doc in DOCS), f"{name} is not documented"
