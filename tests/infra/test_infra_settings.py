"""parse_settings: the stack configuration as the engine passes it, validated and normalised."""

from __future__ import annotations

import base64
import ipaddress
import json

import pulumi.runtime
import pytest

from infra.settings import (
    CONFIG_KEYS,
    REQUIRED_KEYS,
    Settings,
    SettingsError,
    is_openssh_public_key,
    load_settings,
    parse_settings,
    settings_field_defaults,
)
from tests.infra.sample_config import ADMIN_CIDRS, ADMIN_KEY, ALERT_EMAIL, SECOND_KEY, valid_config


def test_defaults():
    settings = parse_settings(valid_config())
    assert settings == Settings(
        ssh_public_keys=(ADMIN_KEY, SECOND_KEY),
        admin_cidrs=tuple(ADMIN_CIDRS),
        alert_emails=(ALERT_EMAIL,),
    )
    assert (settings.region, settings.droplet_image, settings.web_count) == (
        "fra1",
        "debian-12-x64",
        1,
    )
    assert (settings.db_version, settings.db_pool_size, settings.domain) == ("16", 0, None)
    assert not settings.behind_load_balancer
    assert not settings.db_pool_enabled


def test_engine_strings_are_coerced():
    """The engine hands every value over as a string, lists as JSON."""
    settings = parse_settings(
        {
            "sshPublicKeys": f'["{ADMIN_KEY}"]',
            "adminCidrs": '["198.18.0.7/32"]',
            "alertEmails": f'["{ALERT_EMAIL}"]',
            "webCount": "3",
            "dbPoolSize": " 20 ",
            "allowSshFromAnywhere": "False",
            "dbVersion": 17,
            "region": "NYC3",
        }
    )
    assert settings.ssh_public_keys == (ADMIN_KEY,)
    assert settings.web_count == 3
    assert settings.behind_load_balancer
    assert settings.db_pool_size == 20
    assert settings.db_pool_enabled
    assert settings.allow_ssh_from_anywhere is False
    assert settings.db_version == "17"
    assert settings.region == "nyc3"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (["198.18.0.7"], ("198.18.0.7/32",)),
        (["198.18.0.0/24", "198.18.0.0/24"], ("198.18.0.0/24",)),
        (["2001:2:0:0::/48"], ("2001:2::/48",)),
    ],
)
def test_admin_cidrs_are_normalised(given, stored):
    assert parse_settings(valid_config(adminCidrs=given)).admin_cidrs == stored


def test_anywhere_is_allowed_only_with_the_opt_in():
    with pytest.raises(SettingsError, match="allowSshFromAnywhere"):
        parse_settings(valid_config(adminCidrs=["0.0.0.0/0"]))
    settings = parse_settings(
        valid_config(adminCidrs=["0.0.0.0/0", "::/0"], allowSshFromAnywhere="true")
    )
    assert settings.admin_cidrs == ("0.0.0.0/0", "::/0")


@pytest.mark.parametrize(
    ("given", "stored"),
    [("Example.COM.", "example.com"), ("shop.example.co.uk", "shop.example.co.uk"), ("", None)],
)
def test_domain_is_normalised(given, stored):
    assert parse_settings(valid_config(domain=given)).domain == stored


@pytest.mark.parametrize(
    "size",
    [
        "s-1vcpu-1gb",
        "s-1vcpu-512mb-10gb",
        "s-2vcpu-4gb-amd",
        "c-2",
        "c-48-intel",
        "c2-2vcpu-4gb",
        "g-2vcpu-8gb",
        "gd-40vcpu-160gb-intel",
        "m-2vcpu-16gb",
        "so1_5-4vcpu-32gb",
        "S-2VCPU-4GB",
    ],
)
def test_droplet_size_slugs(size):
    assert parse_settings(valid_config(dropletSize=size)).droplet_size == size.lower()


@pytest.mark.parametrize(
    "size", ["db-s-1vcpu-1gb", "db-s-2vcpu-4gb", "db-amd-1vcpu-1gb", "gd-2vcpu-8gb"]
)
def test_database_size_slugs(size):
    assert parse_settings(valid_config(dbSize=size)).db_size == size


def test_every_error_is_collected_one_line_each_and_named():
    with pytest.raises(SettingsError) as caught:
        parse_settings({"webCount": "0", "bogus": 1, "domain": "not a domain"})
    errors = caught.value.errors
    assert all("\n" not in line for line in errors)
    assert [line.split(": ", 1)[0] for line in errors] == [
        "dropstack:bogus",
        "dropstack:webCount",
        "dropstack:sshPublicKeys",
        "dropstack:adminCidrs",
        "dropstack:domain",
        "dropstack:alertEmails",
    ]
    assert str(caught.value) == "\n".join(errors)
    assert isinstance(caught.value, ValueError)


def _blob(*parts: bytes) -> str:
    return base64.b64encode(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).decode()


@pytest.mark.parametrize(
    ("line", "valid"),
    [
        (ADMIN_KEY, True),
        (f"ecdsa-sha2-nistp256 {_blob(b'ecdsa-sha2-nistp256', b'nistp256', b'x' * 65)}", True),
        (f"ssh-rsa {_blob(b'ssh-rsa', bytes([1, 0, 1]), b'n' * 257)} rsa@host", True),
        # The declared type must match the type inside the blob (a mangled paste).
        (f"ssh-rsa {_blob(b'ssh-ed25519', b'k' * 32)}", False),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", False),
        ("ssh-ed25519", False),
        (f"{ADMIN_KEY}\n{SECOND_KEY}", False),
        (f'command="ls" {ADMIN_KEY}', False),
    ],
)
def test_openssh_public_key_recognition(line, valid):
    assert is_openssh_public_key(line) is valid


def test_every_optional_key_has_a_settings_default():
    defaults = settings_field_defaults()
    assert set(defaults) == set(CONFIG_KEYS) - set(REQUIRED_KEYS)
    assert defaults["allowSshFromAnywhere"] is False


def test_load_settings_reads_config_passed_in_the_environment(monkeypatch):
    """The language host may pass the configuration as PULUMI_CONFIG rather than set_config."""
    pulumi.runtime.set_all_config({})
    monkeypatch.setenv(
        "PULUMI_CONFIG",
        json.dumps(
            {
                "dropstack:sshPublicKeys": json.dumps([ADMIN_KEY]),
                "dropstack:adminCidrs": '["198.18.0.7/32"]',
                "dropstack:webCount": "2",
                "dropstack:alerts": "false",
                "digitalocean:token": "not ours",
            }
        ),
    )
    settings = load_settings()
    assert (settings.web_count, settings.admin_cidrs) == (2, ("198.18.0.7/32",))
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"dropstack:webCont": "2"}))
    with pytest.raises(SettingsError, match="dropstack:webCont: unknown key"):
        load_settings()


def _split(network: str, depth: int) -> list[str]:
    return [str(n) for n in ipaddress.ip_network(network).subnets(prefixlen_diff=depth)]


@pytest.mark.parametrize(
    "cidrs",
    [
        _split("0.0.0.0/0", 3),
        _split("::/0", 2),
        ["::ffff:0:0/97", "::ffff:8000:0/97"],
        ["::ffff:0.0.0.0/97", "128.0.0.0/1"],
        ["::/2", "4000::/2", "8000::/1"],
    ],
    ids=["v4-in-8", "v6-in-4", "mapped-halves", "mapped-plus-v4", "v6-uneven"],
)
def test_any_split_of_the_whole_internet_is_refused(cidrs):
    """The class of problem, not the examples: however the internet is cut, the union counts."""
    with pytest.raises(SettingsError, match="cover all of IPv"):
        parse_settings(valid_config(adminCidrs=cidrs))
    assert parse_settings(valid_config(adminCidrs=cidrs, allowSshFromAnywhere=True))
    # One piece fewer is no longer everything, and is accepted.
    assert parse_settings(valid_config(adminCidrs=cidrs[1:])).admin_cidrs
