"""dropstack on DigitalOcean: web droplets behind a cloud firewall (and a load balancer when there
is more than one), managed PostgreSQL reachable only from them, all in one VPC and project.

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

from infra.cloudinit import DEPLOY_USER  # noqa: E402
from infra.database import DatabaseTier  # noqa: E402
from infra.naming import resource_prefix  # noqa: E402
from infra.network import Network  # noqa: E402
from infra.outputs import ABSENT, stack_outputs  # noqa: E402
from infra.settings import SettingsError, load_settings  # noqa: E402
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
        "db_host": database.host,
        "db_port": database.port,
        "db_name": database.db_name,
        "db_user": database.db_user,
        "db_uri": database.uri,
        "db_admin_uri": database.admin_uri,
        "db_ca_cert": database.ca_cert,
    }
)
for output_name, value in outputs.items():
    pulumi.export(output_name, value)
