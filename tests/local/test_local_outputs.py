"""The inventory a local stack writes honours the contract in deploy/inventory.py."""

from pathlib import Path

from deploy.inventory import INVENTORY_KEYS
from deploy.local.network import plan_stack
from deploy.local.outputs import local_inventory


def inventory(web_count=1):
    return local_inventory(
        plan_stack(web_count),
        key_path=Path("/var/lib/dropstack/local/id_ed25519"),
        public_key="ssh-ed25519 AAAAC3Nza dropstack-local",
        app_password="pw",
        admin_password="admin-pw",
        ca_cert_pem="-----BEGIN CERTIFICATE-----\n...\n",
        source="test",
    )


def test_exactly_the_contract_keys():
    assert list(inventory().data) == list(INVENTORY_KEYS)


def test_values_of_a_one_web_stack():
    data = inventory().data
    assert data["stack"] == data["region"] == "local"
    assert data["vpc_cidr"] == "198.18.1.0/24"
    assert data["web_names"] == ["web-1"]
    assert data["web_public_ips"] == ["198.18.0.11"]
    assert data["web_private_ips"] == ["198.18.1.11"]
    assert data["ssh_user"] == "deploy"
    assert data["ssh_key_path"] == "/var/lib/dropstack/local/id_ed25519"
    assert data["load_balancer_ip"] is None and data["domain"] is None
    assert data["url"] == "http://198.18.0.11"
    assert (data["db_host"], data["db_port"], data["db_name"], data["db_user"]) == (
        "198.18.1.100",
        25060,
        "app",
        "app",
    )
    assert data["db_uri"] == "postgresql://app:pw@198.18.1.100:25060/app?sslmode=require"
    assert data["db_admin_uri"] == (
        "postgresql://doadmin:admin-pw@198.18.1.100:25060/app?sslmode=require"
    )
    assert data["ssh_public_keys"] == ["ssh-ed25519 AAAAC3Nza dropstack-local"]
    assert data["db_ca_cert"].startswith("-----BEGIN CERTIFICATE-----")


def test_three_web_hosts_in_rollout_order():
    hosts = inventory(3).web_hosts
    assert [h.name for h in hosts] == ["web-1", "web-2", "web-3"]
    assert hosts[2].public_ip == "198.18.0.13" and hosts[2].private_ip == "198.18.1.13"
