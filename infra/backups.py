"""Off-site storage for the database's logical backups: a private, versioned Spaces bucket whose
objects and old versions expire after ``backupRetentionDays``, and a Spaces key that can read and
write that bucket only (the key the backup job on a web droplet uses).

``bucket_name``, ``spaces_endpoint`` and ``lifecycle_rules`` are pure; ``BackupStorage`` declares.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as digitalocean

from infra.database import data_options
from infra.settings import Settings

# A multipart upload that never finished (a backup job killed mid-upload) holds storage that no
# listing shows; a day is longer than any dump upload takes.
ABORT_INCOMPLETE_UPLOAD_DAYS = 1
# The only grant the backup job needs: list, get and put objects of its own bucket.
BACKUP_KEY_PERMISSION = "readwrite"


@dataclass(frozen=True)
class LifecycleRule:
    """One Spaces lifecycle rule (the provider's field names)."""

    id: str
    expiration_days: int
    noncurrent_version_expiration_days: int
    abort_incomplete_multipart_upload_days: int = ABORT_INCOMPLETE_UPLOAD_DAYS
    enabled: bool = True


def bucket_name(stack_prefix: str, settings: Settings) -> str:
    """``backupBucket``, or ``<prefix>-backups``. Bucket names are global across DigitalOcean,
    so a taken name fails at creation and is then set explicitly."""
    return settings.backup_bucket or f"{stack_prefix}-backups"


def spaces_endpoint(region: str) -> str:
    """The S3 endpoint of a Spaces region, as S3 clients take it."""
    return f"https://{region}.digitaloceanspaces.com"


def lifecycle_rules(retention_days: int) -> tuple[LifecycleRule, ...]:
    """A backup is current for ``retention_days``; expiring it, deleting it or overwriting it
    keeps it as a noncurrent version for ``retention_days`` more. So a backup deleted by a
    compromised host (its key may write) stays recoverable for the whole retention."""
    return (
        LifecycleRule(
            id="expire-old-backups",
            expiration_days=retention_days,
            noncurrent_version_expiration_days=retention_days,
        ),
    )


class BackupStorage(pulumi.ComponentResource):
    """The backup bucket in ``settings.spaces_region`` and its readwrite key.

    The bucket holds data: protected and retained on delete like the database
    (``protectDatabase``), never force-destroyed with objects in it.
    """

    def __init__(
        self,
        name: str,
        stack_prefix: str,
        settings: Settings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("dropstack:backups:BackupStorage", name, None, opts)
        self.region = settings.spaces_region
        self.bucket = digitalocean.SpacesBucket(
            f"{name}-bucket",
            name=bucket_name(stack_prefix, settings),
            region=self.region,
            acl="private",
            force_destroy=False,
            versioning=digitalocean.SpacesBucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                digitalocean.SpacesBucketLifecycleRuleArgs(
                    id=rule.id,
                    enabled=rule.enabled,
                    abort_incomplete_multipart_upload_days=(
                        rule.abort_incomplete_multipart_upload_days
                    ),
                    expiration=digitalocean.SpacesBucketLifecycleRuleExpirationArgs(
                        days=rule.expiration_days
                    ),
                    noncurrent_version_expiration=(
                        digitalocean.SpacesBucketLifecycleRuleNoncurrentVersionExpirationArgs(
                            days=rule.noncurrent_version_expiration_days
                        )
                    ),
                )
                for rule in lifecycle_rules(settings.backup_retention_days)
            ],
            opts=data_options(self, protect=settings.protect_database),
        )
        self.key = digitalocean.SpacesKey(
            f"{name}-key",
            name=f"{name}-key",
            grants=[
                digitalocean.SpacesKeyGrantArgs(
                    bucket=self.bucket.name, permission=BACKUP_KEY_PERMISSION
                )
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.bucket_name: pulumi.Output[str] = self.bucket.name
        self.endpoint = spaces_endpoint(self.region)
        self.access_key_id: pulumi.Output[str] = self.key.access_key
        self.secret_access_key: pulumi.Output[str] = pulumi.Output.secret(self.key.secret_key)
        self.register_outputs(
            {
                "bucket": self.bucket_name,
                "region": self.region,
                "endpoint": self.endpoint,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
            }
        )
