"""dropstack on DigitalOcean: web droplets behind a cloud firewall (and a load balancer when there
is more than one), managed PostgreSQL reachable only from them (and, for background workers, a
managed Valkey as their Redis), all in one VPC and project; alerts
and an uptime check on all of it, a versioned Spaces bucket for off-site backups, and, when asked,
a second cluster restored from a point in time.

Reads the ``dropstack:*`` stack configuration (see Pulumi.yaml) and exports the inventory the
Fabric tasks and host tests read (deploy/inventory.py).
"""

import sys
from pathlib import Path

# Pulumi runs this file with infra/ itself on sys.path. The modules are imported as the `infra`
# package, exactly as the tests import them, so the repository root has to be importable too.
REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pulumi  # noqa: E402

from infra.backups import BackupStorage  # noqa: E402
from infra.cloudinit import DEPLOY_USER  # noqa: E402
from infra.database import DatabaseTier, restore_point, restored_cluster_name  # noqa: E402
from infra.monitoring import Monitoring  # noqa: E402
from infra.naming import resource_prefix  # noqa: E402
from infra.network import Network  # noqa: E402
from infra.outputs import ABSENT, stack_outputs  # noqa: E402
from infra.settings import SettingsError, load_settings  # noqa: E402
from infra.valkey import RedisTier  # noqa: E402
from infra.web import WebTier  # noqa: E402

try:
    settings = load_settings()
    prefix = resource_prefix(pulumi.get_project(), pulumi.get_stack())
except SettingsError as error:
    # One line per problem, no traceback: nothing has been declared yet.
    raise pulumi.RunError(str(error)) from None

network = Network(prefix, settings)
web = WebTier(f"{prefix}-web", settings, network)
database = DatabaseTier(f"{prefix}-db", settings, network, web_tag=web.tag_name)
# A restore is a new cluster beside the stack's own; the app moves to it only when told to.
point = restore_point(settings)
restored = (
    DatabaseTier(
        restored_cluster_name(f"{prefix}-db", point),
        settings,
        network,
        web_tag=web.tag_name,
        restore=point,
        credentials_from=database,
    )
    if point
    else None
)
active_database = restored if restored and settings.use_restored_database else database
redis = (
    RedisTier(f"{prefix}-redis", settings, network, web_tag=web.tag_name)
    if settings.redis
    else None
)
if settings.alerts:
    Monitoring(
        f"{prefix}-alerts",
        settings,
        web_tag=web.tag_name,
        database_cluster_id=active_database.cluster_id,
        load_balancer_id=web.load_balancer.id if web.load_balancer else None,
        redis_cluster_id=redis.cluster_id if redis else None,
        url=web.url,
    )
backups = BackupStorage(f"{prefix}-backups", prefix, settings) if settings.backups else None

outputs = stack_outputs(
    {
        "stack": pulumi.get_stack(),
        "region": settings.region,
        "vpc_cidr": network.vpc_cidr,
        "web_names": web.names,
        "web_public_ips": web.public_ips,
        "web_private_ips": web.private_ips,
        "ssh_user": DEPLOY_USER,
        "ssh_key_path": settings.ssh_private_key_path,
        "ssh_public_keys": list(settings.ssh_public_keys),
        "load_balancer_ip": web.load_balancer_ip,
        "domain": settings.domain or ABSENT,
        "url": web.url,
        "db_host": active_database.host,
        "db_port": active_database.port,
        "db_name": active_database.db_name,
        "db_user": active_database.db_user,
        "db_uri": active_database.uri,
        "db_admin_uri": active_database.admin_uri,
        "db_ca_cert": active_database.ca_cert,
        # The bucket's coordinates for the backup job (deploy/backup); ABSENT without backups.
        "backup_endpoint": backups.endpoint if backups else ABSENT,
        "backup_bucket": backups.bucket_name if backups else ABSENT,
        "backup_region": backups.region if backups else ABSENT,
        "backup_access_key_id": backups.access_key_id if backups else ABSENT,
        "backup_secret_access_key": backups.secret_access_key if backups else ABSENT,
        # The workers' Redis (secret rediss:// on the private network); ABSENT without it.
        "redis_uri": redis.uri if redis else ABSENT,
    }
)
for output_name, value in outputs.items():
    pulumi.export(output_name, value)
