"""The object storage stand-in (deploy/local/spaces.py) as data: where it listens, who may
reach it, what the inventory says about it, and the bucket's configuration (infra's)."""

from __future__ import annotations

from pathlib import Path

from deploy.backup.settings import BackupLayout, BackupSettings, Bucket, job_environment
from deploy.host_model import HostSettings
from deploy.inventory import parse_inventory
from deploy.local import spaces
from deploy.local.network import SPACES_ADDRESS, largest_plan, plan_stack
from deploy.local.outputs import local_inventory
from infra.backups import lifecycle_rules
from tests.local.test_local_nftables import chains, make

STAND_IN = spaces.SpacesStandIn("/state/spaces", SPACES_ADDRESS)
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_every_stack_has_it_on_the_public_side_and_down_knows_its_names():
    for plan in (plan_stack(1), plan_stack(3), plan_stack(1, acme=True)):
        assert plan.spaces and plan.spaces.public_ip == SPACES_ADDRESS
        assert [link.address for link in plan.spaces.links] == [SPACES_ADDRESS]  # no VPC link
        assert plan.spaces in plan.namespaces and plan.spaces not in plan.hosts
    assert largest_plan().spaces.netns == "ds-spaces"


def test_https_from_the_web_hosts_and_this_machine_only():
    found = chains(make(web_count=2))
    assert found["spaces_inbound"][0].startswith(
        "tcp dport 443 ip saddr { 198.18.0.1, 198.18.0.11, 198.18.0.12 } accept"
    )
    assert found["spaces_inbound"][-1] == "reject with icmpx type admin-prohibited"
    # The load balancer (198.18.0.2) and the database (VPC only) are not among the sources.
    assert "198.18.0.2" not in found["spaces_inbound"][0]
    assert found["spaces_outbound"] == [
        'reject with icmpx type admin-prohibited comment "object storage calls no one"'
    ]
    # How its chains are reached: tests/local/test_local_nftables.py, for every service.


def test_the_server_is_moto_over_tls_on_its_address_and_found_again_by_it():
    command = spaces.server_command(STAND_IN, python="/venv/bin/python")
    assert command == [
        "/venv/bin/python", "-m", "moto.server", "-H", SPACES_ADDRESS, "-p", "443",
        "-c", "/state/spaces/server.crt", "-k", "/state/spaces/server.key",
    ]  # fmt: skip
    assert spaces.is_server_process_of(command, SPACES_ADDRESS)
    assert not spaces.is_server_process_of(command, "198.18.0.3")
    assert not spaces.is_server_process_of(["moto_server", "-H", "127.0.0.1"], SPACES_ADDRESS)
    assert STAND_IN.endpoint == f"https://{SPACES_ADDRESS}"
    assert spaces.SpacesStandIn("/d", "127.0.0.1", 8443).endpoint == "https://127.0.0.1:8443"


def test_the_bucket_gets_infras_lifecycle_rule():
    [rule] = lifecycle_rules(spaces.RETENTION_DAYS)
    [made] = spaces.lifecycle_configuration()["Rules"]
    assert made["ID"] == rule.id and made["Status"] == "Enabled"
    assert made["Expiration"] == {"Days": rule.expiration_days}
    assert made["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": rule.noncurrent_version_expiration_days
    }
    assert made["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": rule.abort_incomplete_multipart_upload_days
    }


def test_the_inventory_names_the_bucket_and_its_ca_and_provisioning_uses_both():
    keys = spaces.inventory_keys(STAND_IN, "DOKEY", "s3cret", PEM)
    passwords = {"app_password": "pw", "admin_password": "apw"}  # pragma: allowlist secret
    inv = local_inventory(
        plan_stack(1), key_path=Path("/k"), public_key="ssh-ed25519 AAAA", ca_cert_pem=PEM,
        source="test", backup_keys=keys, **passwords,
    )  # fmt: skip
    again = parse_inventory(inv.data, "again")
    assert again.has_backup_bucket
    assert again["backup_ca_cert"] == PEM
    bucket = Bucket.from_inventory(again.data)
    assert bucket.endpoint == f"https://{SPACES_ADDRESS}" and bucket.ca_cert == PEM
    assert not bucket.is_spaces  # path-style addressing: no per-bucket host names here
    layout = BackupLayout(HostSettings().paths)
    env = job_environment(layout, bucket, BackupSettings())
    assert f"BACKUP_S3_CA_CERT={layout.ca_file}\n" in env
    # A real stack's bucket (Spaces, public CA) gets no CA file and no variable.
    spaces_bucket = Bucket("https://nyc3.digitaloceanspaces.com", "b", "nyc3", "k", "s")
    assert "BACKUP_S3_CA_CERT" not in job_environment(layout, spaces_bucket, BackupSettings())
