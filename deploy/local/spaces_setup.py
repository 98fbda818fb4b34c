"""Running the local stack's object storage stand-in (deploy/local/spaces.py builds what it
runs): moto's S3 server in its namespace over HTTPS, and the backup bucket made as infra makes
Spaces' (versioned, with the retention lifecycle). ``lifecycle`` calls these during ``up``;
``down`` finds the server by its address.

The TLS material and the access key are made once per stack and kept in the state directory, so
the inventory stays true across restarts of the server; the bucket's objects do not survive one
(moto keeps them in memory), which ``up`` says when it has to start it again.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from deploy.local import spaces
from deploy.local.access import port_answers
from deploy.local.database import make_tls_material
from deploy.local.machine import spaces_processes, terminate
from deploy.local.network import SPACES_ADDRESS, StackPlan
from deploy.local.state import DOWN_HINT, LocalStackError, StatePaths, write_private

Say = Callable[[str], None]
START_SECONDS = 30


def the_stand_in(paths: StatePaths) -> spaces.SpacesStandIn:
    return spaces.SpacesStandIn(str(paths.root / "spaces"), SPACES_ADDRESS)


def start(paths: StatePaths, plan: StackPlan, say: Say) -> spaces.SpacesStandIn:
    """(Re)start the S3 server and make the bucket (idempotent: an existing bucket is kept)."""
    if not plan.spaces:
        raise LocalStackError("spaces: the stack's plan has no object storage (a bug: report it)")
    stand_in = the_stand_in(paths)
    _ensure_material(stand_in)
    stop()
    env = {k: v for k, v in os.environ.items() if k not in spaces.MACHINE_CA_VARIABLES}
    with Path(stand_in.log_path).open("ab") as log:
        subprocess.Popen(
            ["ip", "netns", "exec", plan.spaces.netns, *spaces.server_command(stand_in)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + START_SECONDS
    while not port_answers(stand_in.address, stand_in.port, timeout=0.5):
        if time.monotonic() > deadline:
            last = Path(stand_in.log_path).read_text().strip().splitlines()[-1:] or ["no log"]
            raise LocalStackError(f"spaces: the S3 server did not start: {last[0]}; {DOWN_HINT}")
        time.sleep(0.2)
    make_bucket(stand_in)
    say(f"spaces: S3 stand-in at {stand_in.endpoint}, bucket {spaces.BUCKET} (versioned, "
        f"{spaces.RETENTION_DAYS}-day lifecycle)")  # fmt: skip
    return stand_in


def running() -> bool:
    return bool(spaces_processes())


def stop() -> list[int]:
    return terminate(spaces_processes())


def access_key(stand_in: spaces.SpacesStandIn) -> tuple[str, str]:
    pair = json.loads(Path(stand_in.keys_path).read_text())
    return pair["access_key_id"], pair["secret_access_key"]


def inventory_keys(paths: StatePaths) -> dict[str, str]:
    stand_in = the_stand_in(paths)
    key_id, secret = access_key(stand_in)
    ca = Path(stand_in.ca_path).read_text()
    return spaces.inventory_keys(stand_in, key_id, secret, ca)


def client(stand_in: spaces.SpacesStandIn):
    """boto3 against the stand-in, trusting only its CA, never a proxy from the environment.
    Imported here: boto3 is a development requirement, as the stand-in is."""
    import boto3
    import botocore.config

    key_id, secret = access_key(stand_in)
    return boto3.client(
        "s3",
        endpoint_url=stand_in.endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=spaces.REGION,
        verify=stand_in.ca_path,
        config=botocore.config.Config(
            proxies={}, retries={"max_attempts": 2}, s3={"addressing_style": "path"}
        ),
    )


def make_bucket(stand_in: spaces.SpacesStandIn) -> None:
    import botocore.exceptions

    s3 = client(stand_in)
    try:
        s3.create_bucket(Bucket=spaces.BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    except botocore.exceptions.BotoCoreError as exc:
        raise LocalStackError(f"spaces: making the bucket failed: {exc}; {DOWN_HINT}") from None
    s3.put_bucket_versioning(Bucket=spaces.BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(
        Bucket=spaces.BUCKET, LifecycleConfiguration=spaces.lifecycle_configuration()
    )


def _ensure_material(stand_in: spaces.SpacesStandIn) -> None:
    """The CA, the server's certificate and key, and the access key pair: made once."""
    directory = Path(stand_in.directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not Path(stand_in.cert_path).exists():
        tls = make_tls_material(stand_in.address, ca_name=spaces.CA_NAME)
        write_private(Path(stand_in.key_path), tls.server_key_pem)
        write_private(Path(stand_in.cert_path), tls.server_cert_pem, mode=0o644)
        write_private(Path(stand_in.ca_path), tls.ca_cert_pem, mode=0o644)
    if not Path(stand_in.keys_path).exists():
        pair = {
            # The shapes of a Spaces key: a 20-character id and a 43-character secret.
            "access_key_id": "DO" + secrets.token_hex(9).upper(),
            "secret_access_key": secrets.token_urlsafe(32),
        }
        write_private(Path(stand_in.keys_path), json.dumps(pair) + "\n")
