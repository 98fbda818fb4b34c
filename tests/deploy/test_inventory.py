"""The inventory contract shared by Pulumi outputs, the local droplet, Fabric and testinfra."""

import json

import pytest

from deploy.inventory import INVENTORY_KEYS, InventoryError, load_inventory, parse_inventory
from deploy.targets import select_hosts


def sample(**overrides):
    data = {key: None for key in INVENTORY_KEYS}
    data.update(
        stack="local",
        web_names=["web-1", "web-2"],
        web_public_ips=["198.18.0.11", "198.18.0.12"],
        web_private_ips=["198.18.1.11", "198.18.1.12"],
        ssh_user="deploy",
        ssh_key_path="",
        db_uri="postgresql://app:hunter2pw@198.18.1.100:25060/app?sslmode=require",
    )
    data.update(overrides)
    return data


def test_round_trip_from_file(tmp_path):
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(sample()))
    inv = load_inventory(path=path)
    assert [h.name for h in inv.web_hosts] == ["web-1", "web-2"]
    assert inv.web_hosts[1].private_ip == "198.18.1.12"
    assert inv.redacted()["db_uri"] == "[secret]"
    assert "hunter2pw" not in json.dumps(inv.redacted())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no inventory there"),
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        (json.dumps({"stack": "x"}), "inventory lacks keys"),
        (json.dumps(sample(web_public_ips=["198.18.0.11"])), "equally long lists"),
    ],
)
def test_bad_inventories_fail_with_one_line(tmp_path, content, message):
    path = tmp_path / "inventory.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InventoryError, match=message) as info:
        load_inventory(path=path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unknown_keys_are_dropped_and_known_kept():
    inv = parse_inventory(sample(extra="x"), "test")
    assert set(inv.data) == set(INVENTORY_KEYS)


def test_stack_without_pulumi_cli_says_so(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InventoryError, match="pulumi CLI is not installed"):
        load_inventory(stack="prod")


def test_select_hosts_by_name_keeps_inventory_order():
    inv = parse_inventory(sample(), "test")
    assert [h.name for h in select_hosts(inv, "web-2,web-1")] == ["web-1", "web-2"]
    assert len(select_hosts(inv, None)) == 2
    with pytest.raises(InventoryError, match="unknown host web-9"):
        select_hosts(inv, "web-9")


def test_pulumi_empty_strings_read_as_absent():
    inv = parse_inventory(sample(load_balancer_ip="", domain=""), "stack prod")
    assert inv["load_balancer_ip"] is None and inv["domain"] is None
