"""The database tier: managed PostgreSQL on the VPC, reachable only from the web tier's tag.

The same tier also describes a cluster restored from another one's backups at a point in time
(``restore_point``): a new cluster beside the stack's own, never a replacement of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as digitalocean

from infra.firewall_rules import database_trusted_tags
from infra.network import Network
from infra.outputs import DB_POOL_NAME, postgres_uri
from infra.settings import Settings

DB_NAME = "dropstack"
DB_USER = "dropstack"


@dataclass(frozen=True)
class RestorePoint:
    """Restore ``source_cluster``'s backups as of ``time`` (RFC 3339 UTC; "" = newest backup)."""

    source_cluster: str
    time: str = ""


def restore_point(settings: Settings) -> RestorePoint | None:
    """The restore the settings ask for, or None."""
    if not settings.restore_from_cluster:
        return None
    return RestorePoint(settings.restore_from_cluster, settings.restore_to_time)


def restored_cluster_name(tier: str, point: RestorePoint) -> str:
    """``<tier>-r<YYYYMMDDHHMMSS>``, or ``<tier>-restored`` for the newest backup.

    A different restore point is a different cluster: restoring again never rewrites one that
    may already hold verified data (and its protection stops the old one being deleted).
    """
    if not point.time:
        return f"{tier}-restored"
    return f"{tier}-r{''.join(ch for ch in point.time if ch.isdigit())}"


def data_options(parent: pulumi.Resource, *, protect: bool) -> pulumi.ResourceOptions:
    """Options for the resources that hold data (cluster, database, user).

    ``protect`` makes `pulumi destroy`, and any change that would replace them, fail before
    anything is deleted; ``retain_on_delete`` keeps them in DigitalOcean even if they leave the
    stack while protected state was lost (``pulumi state unprotect`` alone is not enough). Both
    follow ``dropstack:protectDatabase``; docs/digitalocean.md describes the deliberate destroy.
    """
    return pulumi.ResourceOptions(parent=parent, protect=protect, retain_on_delete=protect)


def web_only_firewall(
    name: str,
    cluster: digitalocean.DatabaseCluster,
    web_tag: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> digitalocean.DatabaseFirewall:
    """A managed cluster's database firewall whose only trusted sources are the droplets with
    the web tier's tag (``database_trusted_tags``): PostgreSQL's and the Redis tier's alike."""
    return digitalocean.DatabaseFirewall(
        name,
        cluster_id=cluster.id,
        rules=pulumi.Output.from_input(web_tag).apply(
            lambda tag: [
                digitalocean.DatabaseFirewallRuleArgs(type="tag", value=trusted)
                for trusted in database_trusted_tags(tag)
            ]
        ),
        opts=opts,
    )


class DatabaseTier(pulumi.ComponentResource):
    """A PostgreSQL cluster in the stack's VPC and region, the application's database and user,
    a database firewall trusting only ``web_tag``, and a PgBouncer pool when ``db_pool_size`` > 0.

    ``uri`` is a secret private-network URI with ``sslmode=require``; it goes through the pool
    (port 25061, the pool's name as database) when there is one.

    With ``restore``, the cluster is created from ``restore.source_cluster``'s backups. Its
    database and roles come from the backup, so the tier declares no ``DatabaseDb`` or
    ``DatabaseUser``; the URI carries the application user's password from ``credentials_from``
    (the stack's own tier), which the restored role has as of the restore point.
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        network: Network,
        web_tag: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
        *,
        restore: RestorePoint | None = None,
        credentials_from: DatabaseTier | None = None,
    ) -> None:
        if restore is not None and credentials_from is None:
            raise ValueError("a restored database tier needs the tier whose credentials it uses")
        super().__init__("dropstack:database:DatabaseTier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        data = data_options(self, protect=settings.protect_database)

        # The cluster's name derives from the project and stack only (never from a setting), so
        # no config change renames it; private_network_uuid and project_id force a replacement
        # too, and `protect` turns any such replacement into an error before anything is deleted.
        self.cluster = digitalocean.DatabaseCluster(
            name,
            name=name,
            engine="pg",
            version=settings.db_version,
            size=settings.db_size,
            region=settings.region,
            node_count=settings.db_node_count,
            private_network_uuid=network.vpc_id,
            project_id=network.project_id,
            backup_restore=(
                digitalocean.DatabaseClusterBackupRestoreArgs(
                    database_name=restore.source_cluster,
                    backup_created_at=restore.time or None,
                )
                if restore
                else None
            ),
            opts=data,
        )
        # Trusted sources replace "anyone with the password": only droplets with the web tag.
        # A new cluster is open until this exists, so the app's database and credentials are
        # created only after it.
        self.firewall = web_only_firewall(f"{name}-firewall", self.cluster, web_tag, child)
        after_firewall = pulumi.ResourceOptions(depends_on=[self.firewall])
        self.database: digitalocean.DatabaseDb | None = None
        self.user: digitalocean.DatabaseUser | None = None
        if restore is None:
            self.database = digitalocean.DatabaseDb(
                f"{name}-database",
                cluster_id=self.cluster.id,
                name=DB_NAME,
                opts=pulumi.ResourceOptions.merge(data, after_firewall),
            )
            # The user owns the application's tables once migrations ran; losing it orphans them.
            self.user = digitalocean.DatabaseUser(
                f"{name}-user",
                cluster_id=self.cluster.id,
                name=DB_USER,
                opts=pulumi.ResourceOptions.merge(data, after_firewall),
            )
            self.db_name: pulumi.Output[str] = self.database.name
            self.db_user: pulumi.Output[str] = self.user.name
            self.password: pulumi.Output[str] = self.user.password
        else:
            # After the firewall, like the stack's own tier: nothing reaches the data before it.
            self.db_name = self.firewall.id.apply(lambda _: DB_NAME)
            self.db_user = self.firewall.id.apply(lambda _: DB_USER)
            self.password = credentials_from.password
        self.pool = (
            digitalocean.DatabaseConnectionPool(
                f"{name}-pool",
                cluster_id=self.cluster.id,
                name=DB_POOL_NAME,
                db_name=self.db_name,
                user=self.db_user,
                mode=settings.db_pool_mode,
                size=settings.db_pool_size,
                opts=child,
            )
            if settings.db_pool_enabled
            else None
        )

        self.cluster_id: pulumi.Output[str] = self.cluster.id
        self.host: pulumi.Output[str] = self.cluster.private_host
        self.port: pulumi.Output[int] = self.pool.port if self.pool else self.cluster.port
        # Through a pool, the "database" in the URI is the pool's name.
        path = self.pool.name if self.pool else self.db_name
        self.uri = pulumi.Output.secret(
            pulumi.Output.all(self.db_user, self.password, self.host, self.port, path).apply(
                lambda parts: postgres_uri(*parts)
            )
        )
        # The cluster's admin (doadmin), straight to the app's database (never the pool): what
        # provisioning uses once to grant the app user CREATE on schema public, which a user
        # made through DigitalOcean's API does not have on PostgreSQL 15+.
        self.admin_uri = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.user, self.cluster.password, self.host, self.cluster.port,
                self.db_name,
            ).apply(lambda parts: postgres_uri(*parts))
        )  # fmt: skip
        self.ca_cert = digitalocean.get_database_ca_output(
            cluster_id=self.cluster.id, opts=pulumi.InvokeOutputOptions(parent=self)
        ).certificate
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "name": self.db_name,
                "user": self.db_user,
                "uri": self.uri,
                "admin_uri": self.admin_uri,
                "ca_cert": self.ca_cert,
            }
        )
