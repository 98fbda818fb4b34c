"""The local stack's stand-in for DigitalOcean Spaces: moto's S3 server over HTTPS, as data.

On DigitalOcean the backup job on the first web droplet talks to
``https://<region>.digitaloceanspaces.com`` with a key that may read and write one private,
versioned bucket with a retention lifecycle (infra/backups.py). Here the same job, with the same
rclone and the same S3 calls, talks to moto's S3 server in a network namespace of its own on
the public side (Spaces is on the internet, not in the VPC), over HTTPS with a certificate from a
CA made for the stack. The bucket is made as infra makes it: versioned, with the same lifecycle
rule. The hosts trust that CA through the inventory's ``backup_ca_cert``, the one key a real
stack leaves empty (Spaces' certificate chains to a public CA).

What differs from Spaces (docs/local-droplet.md): moto keeps objects in memory only (a restart of
the stand-in empties the bucket), accepts any access key, and stores the lifecycle rule without
ever expiring anything.

Pure builders only; deploy/local/spaces_setup.py runs them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from infra.backups import lifecycle_rules

PORT = 443
BUCKET = "dropstack-local-backups"
# moto's default region; a bucket elsewhere needs a LocationConstraint moto then checks for
# nothing. The signature's region is not verified either.
REGION = "us-east-1"
RETENTION_DAYS = 30  # infra's default backupRetentionDays
CA_NAME = "dropstack local object storage CA"
# The machine's registry CA variables (ENVIRONMENT.md) must not steer moto or boto3.
MACHINE_CA_VARIABLES = (
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "AWS_CA_BUNDLE",
)  # fmt: skip


@dataclass(frozen=True)
class SpacesStandIn:
    """Where the stand-in listens and keeps its files (``directory``, in the state dir)."""

    directory: str
    address: str
    port: int = PORT

    @property
    def endpoint(self) -> str:
        return f"https://{self.address}" + ("" if self.port == 443 else f":{self.port}")

    @property
    def cert_path(self) -> str:
        return f"{self.directory}/server.crt"

    @property
    def key_path(self) -> str:
        return f"{self.directory}/server.key"

    @property
    def ca_path(self) -> str:
        return f"{self.directory}/ca.crt"

    @property
    def keys_path(self) -> str:
        """The bucket's access key pair, made once per stack (moto accepts any)."""
        return f"{self.directory}/access-key.json"

    @property
    def log_path(self) -> str:
        return f"{self.directory}/moto.log"


def server_command(spaces: SpacesStandIn, python: str = sys.executable) -> list[str]:
    """moto's S3 server (``moto.server``, from requirements-dev.txt) on the stand-in's address,
    ending TLS itself with the stack's certificate."""
    return [
        python, "-m", "moto.server", "-H", spaces.address, "-p", str(spaces.port),
        "-c", spaces.cert_path, "-k", spaces.key_path,
    ]  # fmt: skip


def is_server_process_of(cmdline: list[str], address: str) -> bool:
    """The stand-in's server, found again by its module and the address it binds."""
    return "moto.server" in cmdline and address in cmdline


def lifecycle_configuration(retention_days: int = RETENTION_DAYS) -> dict:
    """infra's lifecycle rule for the backup bucket, as S3's PutBucketLifecycleConfiguration
    takes it (the same rule, so the local bucket's configuration reads like the real one)."""
    return {
        "Rules": [
            {
                "ID": rule.id,
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "Expiration": {"Days": rule.expiration_days},
                "NoncurrentVersionExpiration": {
                    "NoncurrentDays": rule.noncurrent_version_expiration_days
                },
                "AbortIncompleteMultipartUpload": {
                    "DaysAfterInitiation": rule.abort_incomplete_multipart_upload_days
                },
            }
            for rule in lifecycle_rules(retention_days)
        ]
    }


def inventory_keys(spaces: SpacesStandIn, access_key_id: str, secret: str, ca_pem: str) -> dict:
    """The inventory's bucket keys, as ``pulumi up`` exports them for a real stack, plus the
    stand-in's CA (``backup_ca_cert``: '' on DigitalOcean)."""
    return {
        "backup_endpoint": spaces.endpoint,
        "backup_bucket": BUCKET,
        "backup_region": REGION,
        "backup_access_key_id": access_key_id,
        "backup_secret_access_key": secret,
        "backup_ca_cert": ca_pem,
    }
