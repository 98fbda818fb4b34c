"""The Redis tier: DigitalOcean's managed Valkey on the VPC, reachable only from the web tier's tag.

Declared only when the stack asks for it (``dropstack:redis``): the background workers' queues
live there. Valkey is the Redis-compatible engine DigitalOcean offers today; it speaks TLS only,
so the URI the tier exports is ``rediss://``, on the cluster's private host.

(The module is named for the engine, not ``redis``: Pulumi runs the program with infra/ first on
sys.path, where an ``infra/redis.py`` would shadow the redis client package.)
"""

from __future__ import annotations

import pulumi
import pulumi_digitalocean as digitalocean

from infra.database import data_options, web_only_firewall
from infra.network import Network
from infra.outputs import redis_uri
from infra.settings import VALKEY_VERSION, Settings

ENGINE = "valkey"


class RedisTier(pulumi.ComponentResource):
    """A Valkey cluster in the stack's VPC, region and project, and its own database firewall
    trusting only ``web_tag``.

    ``uri`` is a secret ``rediss://`` URI on the private network (the cluster's own user and
    password), what the app and its workers get as REDIS_URL.
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        network: Network,
        web_tag: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("dropstack:valkey:RedisTier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Queued jobs live here: protected like the PostgreSQL cluster (protectDatabase), so a
        # change that would replace it, or turning the tier off, fails before anything is lost.
        # Its name derives from the project and stack only, never from a setting.
        self.cluster = digitalocean.DatabaseCluster(
            name,
            name=name,
            engine=ENGINE,
            version=VALKEY_VERSION,
            size=settings.redis_size,
            region=settings.region,
            node_count=settings.redis_node_count,
            eviction_policy=settings.redis_eviction_policy,
            private_network_uuid=network.vpc_id,
            project_id=network.project_id,
            opts=data_options(self, protect=settings.protect_database),
        )
        # Its own firewall: without one a managed cluster accepts anyone with the password.
        self.firewall = web_only_firewall(f"{name}-firewall", self.cluster, web_tag, child)

        self.cluster_id: pulumi.Output[str] = self.cluster.id
        self.host: pulumi.Output[str] = self.cluster.private_host
        self.port: pulumi.Output[int] = self.cluster.port
        # The URI waits for the firewall: nothing is handed the credentials of an open cluster.
        self.uri = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.user, self.cluster.password, self.host, self.port, self.firewall.id
            ).apply(lambda parts: redis_uri(*parts[:4]))
        )
        self.register_outputs(
            {"cluster_id": self.cluster_id, "host": self.host, "port": self.port, "uri": self.uri}
        )
