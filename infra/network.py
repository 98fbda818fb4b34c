"""The network tier: the stack's VPC, the SSH keys droplets boot with, its DigitalOcean project."""

from __future__ import annotations

import pulumi
import pulumi_digitalocean as digitalocean

from infra.settings import Settings


class Network(pulumi.ComponentResource):
    """A VPC in the stack's region, one ``SshKey`` per configured public key, and a ``Project``
    that the web and database tiers put their resources in.

    ``name`` is the stack's resource prefix (e.g. ``dropstack-prod``); children are named from it.
    """

    def __init__(
        self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("dropstack:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # The first VPC created in a region becomes the region's default, and DigitalOcean refuses
        # to delete a default VPC: docs/digitalocean.md says how to destroy such a stack.
        self.vpc = digitalocean.Vpc(
            f"{name}-vpc",
            name=f"{name}-vpc",
            region=settings.region,
            description=f"{name}: web droplets and their database",
            opts=child,
        )
        # Droplets get the keys for root too (it stops DigitalOcean mailing a root password);
        # root cannot log in anyway, the deploy user's keys come from the cloud-init user-data.
        # A key already in the account cannot be uploaded again (the API answers 422), so those
        # listed in existingSshKeyFingerprints are used by fingerprint instead of created.
        new_keys = set(settings.new_ssh_public_keys)
        self.ssh_keys = [
            digitalocean.SshKey(
                f"{name}-key-{number}", name=f"{name}-key-{number}", public_key=key, opts=child
            )
            for number, key in enumerate(settings.ssh_public_keys, start=1)
            if key in new_keys
        ]
        self.project = digitalocean.Project(
            f"{name}-project",
            name=name,
            description="dropstack: Flask app on droplets with managed PostgreSQL",
            purpose="Web Application",
            opts=child,
        )

        self.vpc_id: pulumi.Output[str] = self.vpc.id
        self.vpc_cidr: pulumi.Output[str] = self.vpc.ip_range
        self.ssh_key_fingerprints: list[pulumi.Input[str]] = [
            *(key.fingerprint for key in self.ssh_keys),
            *settings.existing_ssh_key_fingerprints,
        ]
        self.project_id: pulumi.Output[str] = self.project.id
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "vpc_cidr": self.vpc_cidr,
                "ssh_key_fingerprints": self.ssh_key_fingerprints,
                "project_id": self.project_id,
            }
        )
