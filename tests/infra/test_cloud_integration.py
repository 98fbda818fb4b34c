"""Opt-in: the real program against a real DigitalOcean account, through Pulumi's Automation API.

Creates a throwaway stack (local file backend, passphrase secrets, a fresh SSH key), runs
`pulumi up` with the policy pack, checks the outputs against the inventory contract, provisions
and deploys with Fabric, GETs the site's /readyz, and destroys everything, even on failure.

Runs only when the pulumi CLI is on PATH and DIGITALOCEAN_TOKEN is set; it costs a few cents and
takes about 15 minutes (the database cluster is most of it). Optional environment:
  DROPSTACK_ADMIN_CIDR   the network to allow SSH from (default: anywhere, opted in explicitly,
                         for the lifetime of the stack; the key is fresh and root login is off)
  DROPSTACK_CLOUD_WEB_COUNT   web droplets (default 1; 2 or more tests the load balancer)
  DROPSTACK_CLOUD_REGION      region (default fra1)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pulumi import automation as auto

from deploy.inventory import INVENTORY_KEYS, parse_inventory

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "infra" / "policy"
READY_TIMEOUT_SECONDS = 900

_MISSING = [
    what
    for what, present in (
        ("the pulumi CLI on PATH", shutil.which("pulumi")),
        ("DIGITALOCEAN_TOKEN in the environment", os.environ.get("DIGITALOCEAN_TOKEN")),
    )
    if not present
]

pytestmark = [
    pytest.mark.cloud,
    pytest.mark.skipif(bool(_MISSING), reason=f"cloud test needs {' and '.join(_MISSING)}"),
]


def _throwaway_key(directory: Path) -> tuple[str, Path]:
    """A fresh ed25519 key pair: (public key line, private key path)."""
    key = Ed25519PrivateKey.generate()
    private = directory / "id_ed25519"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} dropstack-cloud-test", private


def _wait_ready(url: str) -> int:
    """GET url until it answers 200 or the deadline passes; returns the last status (0 = none)."""
    status, deadline = 0, time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our own URL)
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError:
            status = 0
        if status == 200:
            return status
        time.sleep(10)
    return status


def test_up_provision_deploy_readyz_destroy(tmp_path):
    stack_name = f"it{secrets.token_hex(3)}"
    public_key, private_key = _throwaway_key(tmp_path)
    env = {
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",  # pulumi login --local, but private
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_urlsafe(24),
        "PULUMI_SKIP_UPDATE_CHECKS": "true",
    }
    (tmp_path / "state").mkdir()
    admin_cidr = os.environ.get("DROPSTACK_ADMIN_CIDR", "0.0.0.0/0")
    # With SSH opened to the world on purpose, the pack's rule is made advisory for this stack.
    policy_config = tmp_path / "policy-config.json"
    policy_config.write_text(json.dumps({"no-ssh-from-anywhere": {"enforcementLevel": "advisory"}}))

    stack = auto.create_or_select_stack(
        stack_name,
        work_dir=str(REPO),
        opts=auto.LocalWorkspaceOptions(env_vars=env, secrets_provider="passphrase"),
    )
    try:
        stack.set_all_config(
            {
                "dropstack:sshPublicKeys[0]": auto.ConfigValue(public_key),
                "dropstack:adminCidrs[0]": auto.ConfigValue(admin_cidr),
            },
            path=True,
        )
        stack.set_all_config(
            {
                "dropstack:region": auto.ConfigValue(
                    os.environ.get("DROPSTACK_CLOUD_REGION", "fra1")
                ),
                "dropstack:webCount": auto.ConfigValue(
                    os.environ.get("DROPSTACK_CLOUD_WEB_COUNT", "1")
                ),
                "dropstack:sshPrivateKeyPath": auto.ConfigValue(str(private_key)),
                "dropstack:allowSshFromAnywhere": auto.ConfigValue(
                    "true" if admin_cidr in ("0.0.0.0/0", "::/0") else "false"
                ),
                # A throwaway stack: nobody to alert, no Spaces credentials for a backup
                # bucket, and its data must go with it when the test destroys it.
                "dropstack:alerts": auto.ConfigValue("false"),
                "dropstack:backups": auto.ConfigValue("false"),
                "dropstack:protectDatabase": auto.ConfigValue("false"),
                # The Redis tier (a Valkey cluster, billed) only when asked for.
                "dropstack:redis": auto.ConfigValue(
                    os.environ.get("DROPSTACK_CLOUD_REDIS", "false")
                ),
            }
        )
        result = stack.up(
            on_output=print,
            policy_packs=[str(POLICY_DIR)],
            policy_pack_configs=[str(policy_config)],
        )

        outputs = {key: value.value for key, value in result.outputs.items()}
        assert set(outputs) == set(INVENTORY_KEYS)
        assert result.outputs["db_uri"].secret
        assert "sslmode=require" in outputs["db_uri"]
        if os.environ.get("DROPSTACK_CLOUD_REDIS") == "true":
            assert result.outputs["redis_uri"].secret
            assert outputs["redis_uri"].startswith("rediss://default:")
        inventory = parse_inventory(outputs, f"stack {stack_name}")
        assert len(inventory.web_hosts) == int(os.environ.get("DROPSTACK_CLOUD_WEB_COUNT", "1"))

        # The deploy layer reads the same stack through `pulumi stack output`.
        fab_env = {**os.environ, **env}
        for task in ("provision", "deploy"):
            subprocess.run(
                [sys.executable, "-m", "fabric", task, "--stack", stack_name],
                cwd=REPO,
                env=fab_env,
                check=True,
                timeout=1800,
            )
        assert _wait_ready(f"{outputs['url']}/readyz") == 200
    finally:
        stack.destroy(on_output=print)
        stack.workspace.remove_stack(stack_name)
        (REPO / f"Pulumi.{stack_name}.yaml").unlink(missing_ok=True)
