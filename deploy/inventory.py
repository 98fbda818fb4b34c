"""The inventory: where the hosts are and how to reach them and their database.

It is the one contract between the layers. ``pulumi up`` exports it as stack outputs; the local
droplet (deploy/local) writes a JSON file with exactly the same keys; Fabric tasks and the
testinfra suite read it through ``load_inventory`` and never from anywhere else.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The stack outputs / inventory keys, with what each holds. infra/__main__.py exports exactly these.
INVENTORY_KEYS: dict[str, str] = {
    "stack": "stack name ('local' for the local droplet)",
    "region": "DigitalOcean region slug ('local' for the local droplet)",
    "vpc_cidr": "the private network the hosts and the database share",
    "web_names": "web host names, in rollout order",
    "web_public_ips": "web hosts' public IPv4 addresses (SSH and, without a load balancer, HTTP)",
    "web_private_ips": "web hosts' addresses inside the VPC",
    "ssh_user": "the deploy user cloud-init created",
    "ssh_key_path": "private key for ssh_user ('' = use ssh-agent / ~/.ssh defaults)",
    "ssh_public_keys": "the public keys ssh_user must accept, exactly (sshPublicKeys)",
    "load_balancer_ip": "the load balancer's address, or null ('' from Pulumi) with one web host",
    "domain": "the site's domain, or null ('' from Pulumi)",
    "url": "the public URL of the site",
    "db_host": "database host on the private network",
    "db_port": "database port",
    "db_name": "application database",
    "db_user": "application database user",
    "db_uri": "secret: postgresql:// URI on the private network with sslmode=require",
    "db_admin_uri": "secret: the cluster admin's (doadmin) URI to the app database, direct",
    "db_ca_cert": "PEM CA certificate that signed the database server's certificate",
    # The off-site backup bucket (infra/backups.py); all "" when backups are off.
    "backup_endpoint": "S3 endpoint URL of the backup bucket, or '' (no bucket)",
    "backup_bucket": "name of the bucket the logical backups go to, or ''",
    "backup_region": "the bucket's region (Spaces: the region slug), or ''",
    "backup_access_key_id": "access key id of the key that may read and write the bucket, or ''",
    "backup_secret_access_key": "secret: that key's secret, or ''",
}
SECRET_KEYS = frozenset({"db_uri", "db_admin_uri", "backup_secret_access_key", "redis_uri"})
# Pulumi drops outputs whose value is None, so the program exports "" for these; read both as None.
OPTIONAL_KEYS = ("load_balancer_ip", "domain")
BACKUP_KEYS = (
    "backup_endpoint",
    "backup_bucket",
    "backup_region",
    "backup_access_key_id",
    "backup_secret_access_key",
)

# Optional: which ACME CA issues the site's certificate (deploy/provision/tls.py). Absent or ""
# means Let's Encrypt and the system trust store, which is what a Pulumi stack means (it
# exports neither); the local stack with a domain names its own pebble.
ACME_KEYS: dict[str, str] = {
    "acme_directory": "the ACME directory URL certbot uses, or '' (Let's Encrypt)",
    "acme_ca_cert": "PEM CA certificate of the ACME server's own HTTPS, or '' (system store)",
}

# The managed Redis (Valkey) the background workers queue on. Read as optional here, so a stack
# exported before it had one still loads: absent or "" means none; deploy/app_contract.py makes
# workers without it a one-line error.
REDIS_KEYS: dict[str, str] = {
    "redis_uri": "secret: rediss://default:{password}@host:25061 on the private network, or ''",
    "redis_ca_cert": "PEM CA of the Redis server's certificate, or '' (a public CA: the system "
    "store; DigitalOcean's Valkey has a Let's Encrypt certificate)",
}

DEFAULT_STATE_DIR = "/var/lib/dropstack/local"


def local_state_dir() -> Path:
    """Where the local droplet keeps its state, its inventory among it ($DROPSTACK_STATE_DIR)."""
    return Path(os.environ.get("DROPSTACK_STATE_DIR") or DEFAULT_STATE_DIR)


DEFAULT_LOCAL_INVENTORY = local_state_dir() / "inventory.json"


class InventoryError(Exception):
    """The target could not be read; the message is one line naming the source and the fix."""


@dataclass(frozen=True)
class WebHost:
    name: str
    public_ip: str
    private_ip: str


@dataclass(frozen=True)
class Inventory:
    source: str
    data: dict

    @property
    def web_hosts(self) -> list[WebHost]:
        return [
            WebHost(name, public, private)
            for name, public, private in zip(
                self.data["web_names"],
                self.data["web_public_ips"],
                self.data["web_private_ips"],
                strict=True,
            )
        ]

    def __getitem__(self, key: str):
        return self.data[key]

    @property
    def has_backup_bucket(self) -> bool:
        """Whether the stack has a backup bucket: every bucket key set ("" means none)."""
        return all(self.data.get(key) for key in BACKUP_KEYS)

    def redacted(self) -> dict:
        """The inventory with secrets replaced, safe to print."""
        return {k: ("[secret]" if k in SECRET_KEYS else v) for k, v in self.data.items()}


def parse_inventory(data: object, source: str) -> Inventory:
    """Check a decoded inventory against INVENTORY_KEYS and wrap it."""
    if not isinstance(data, dict):
        raise InventoryError(f"{source}: inventory must be a JSON object")
    missing = sorted(set(INVENTORY_KEYS) - set(data))
    if missing:
        raise InventoryError(f"{source}: inventory lacks keys {', '.join(missing)}")
    counts = {len(data[k]) for k in ("web_names", "web_public_ips", "web_private_ips")}
    if len(counts) != 1 or 0 in counts:
        raise InventoryError(
            f"{source}: web_names, web_public_ips and web_private_ips must be equally long lists"
        )
    values = {k: data[k] for k in INVENTORY_KEYS}
    values.update({k: data[k] for k in (*ACME_KEYS, *REDIS_KEYS) if data.get(k)})
    values.update({k: values[k] or None for k in OPTIONAL_KEYS})
    return Inventory(source=source, data=values)


def pulumi_output_command(stack: str) -> list[str]:
    return ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack]


def load_inventory(path: str | os.PathLike | None = None, stack: str | None = None) -> Inventory:
    """Read the target: a Pulumi stack's outputs, an inventory file, or the local droplet's.

    Precedence: ``stack``, then ``path``, then $DROPSTACK_INVENTORY, then the local droplet.
    """
    if stack:
        try:
            out = subprocess.run(
                pulumi_output_command(stack), check=True, capture_output=True, text=True
            ).stdout
        except FileNotFoundError:
            raise InventoryError(
                f"stack {stack}: the pulumi CLI is not installed; install it or pass an inventory"
            ) from None
        except subprocess.CalledProcessError as exc:
            last = (exc.stderr.strip().splitlines() or ["no output"])[-1]
            raise InventoryError(f"stack {stack}: pulumi stack output failed: {last}") from None
        return parse_inventory(json.loads(out), f"stack {stack}")
    chosen = Path(path or os.environ.get("DROPSTACK_INVENTORY") or DEFAULT_LOCAL_INVENTORY)
    try:
        text = chosen.read_text()
    except FileNotFoundError:
        hint = "run `fab local.up`" if chosen == DEFAULT_LOCAL_INVENTORY else "check the path"
        raise InventoryError(f"{chosen}: no inventory there; {hint}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InventoryError(f"{chosen}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_inventory(data, str(chosen))
