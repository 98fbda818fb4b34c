"""The local stack's outputs: the inventory file, with exactly the keys ``pulumi up`` exports."""

from __future__ import annotations

from pathlib import Path

from deploy.inventory import BACKUP_KEYS, Inventory, parse_inventory
from deploy.local.database import ADMIN_USER, DB_NAME, DB_USER, db_uri
from deploy.local.network import VPC_CIDR, StackPlan
from infra.cloudinit import DEPLOY_USER
from infra.firewall_rules import POSTGRES_POOL_PORT, POSTGRES_PORT
from infra.outputs import DB_POOL_NAME, site_url


def local_inventory(
    plan: StackPlan, *, key_path: Path, public_key: str, app_password: str, admin_password: str,
    ca_cert_pem: str, source: str, pool_size: int = 0, domain: str | None = None,
    acme_directory: str = "", acme_ca_cert: str = "", redis_uri: str = "", redis_ca_cert: str = "",
) -> Inventory:  # fmt: skip
    """The inventory of a local stack, checked against the contract before anyone writes it.
    With a pool the app's URI goes through it, as DigitalOcean's does (infra/database.py); the
    admin's goes straight to the database. With a domain, the URL is https://<domain>
    (infra's site_url) and the ACME keys name the stack's own CA. The Redis keys are the
    stand-in's (deploy/local/redis.py), its CA included: DigitalOcean's needs none."""
    first_web = plan.web[0]
    app_port = POSTGRES_POOL_PORT if pool_size else POSTGRES_PORT
    app_uri = db_uri(plan.db.private_ip, app_password, app_port)
    if pool_size:
        app_uri = app_uri.replace(f"/{DB_NAME}?", f"/{DB_POOL_NAME}?")
    data = {
        "stack": "local",
        "region": "local",
        "vpc_cidr": VPC_CIDR,
        "web_names": [h.name for h in plan.web],
        "web_public_ips": [h.public_ip for h in plan.web],
        "web_private_ips": [h.private_ip for h in plan.web],
        "ssh_user": DEPLOY_USER,
        "ssh_key_path": str(key_path),
        "ssh_public_keys": [public_key],
        "load_balancer_ip": plan.lb.public_ip if plan.lb else None,
        "domain": domain,
        "url": site_url(domain, (plan.lb or first_web).public_ip or ""),
        "db_host": plan.db.private_ip,
        "db_port": app_port,
        "db_name": DB_NAME,
        "db_user": DB_USER,
        "db_uri": app_uri,
        "db_admin_uri": db_uri(plan.db.private_ip, admin_password, user=ADMIN_USER),
        "db_ca_cert": ca_cert_pem,
        # No bucket yet: the local S3 stand-in is not part of the local stack.
        **{key: "" for key in BACKUP_KEYS},
        "redis_uri": redis_uri,
        "redis_ca_cert": redis_ca_cert,
    }
    if domain:
        data.update(acme_directory=acme_directory, acme_ca_cert=acme_ca_cert)
    return parse_inventory(data, source)
