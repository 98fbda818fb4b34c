"""Fixtures for the backup tests: the real pipeline on this machine, no droplet.

A real PostgreSQL 15 (tests/postgres_cluster.py) holds the app's database, migrated by the real
Alembic migrations; moto's S3 server on loopback stands in for Spaces (a versioned bucket, as
infra makes it); real ``age`` and ``rclone`` do the work. job.py runs as a subprocess through
``BackupLayout.job_command``, exactly the argv a host runs, with a host layout whose paths point
into a temporary directory (its ``current`` release is this checkout).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg
import pytest

from deploy.backup.settings import BackupLayout, BackupSettings, Bucket, job_environment
from deploy.backup.sites import LocalSite
from deploy.host_model import HostSettings
from deploy.provision import desired
from tests.app.conftest import migrate_to_head
from tests.loopback import free_port
from tests.postgres_cluster import PostgresCluster

REPO = Path(__file__).resolve().parents[2]
MOTO_SERVER = Path(sys.executable).with_name("moto_server")
START_SECONDS = 30
# The machine's registry CA variables (ENVIRONMENT.md) must not steer the tools under test.
MACHINE_CA_VARIABLES = (
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "AWS_CA_BUNDLE",
)  # fmt: skip


class S3Server:
    """``moto_server`` on a free loopback port; ``stop()`` makes the bucket unreachable."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in MACHINE_CA_VARIABLES}
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not listen on {self.port}: see {log}")

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # pragma: allowlist secret (moto accepts any key)
            region_name="us-east-1",
        )

    def make_bucket(self, name: str) -> None:
        """Versioned, like the Spaces bucket infra/ creates (rclone 1.60 also needs a real
        version id after a multipart upload: moto answers "null" on unversioned buckets)."""
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def age_key(tmp_path_factory) -> tuple[Path, str]:
    """An age key pair made the way an operator makes the stack's: (private key file, public)."""
    key = tmp_path_factory.mktemp("age") / "backup.key"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True)
    return key, public.stdout.decode().strip()


@dataclass
class Stack:
    """One app database and its backups, as a web host would have them."""

    layout: BackupLayout
    site: LocalSite
    database: str
    postgres: PostgresCluster
    identity: Path
    bucket: Bucket
    s3: S3Server

    @property
    def url(self) -> str:
        return self.postgres.url(self.database)

    @property
    def admin_url(self) -> str:
        return self.postgres.url("postgres")

    def command(self, *args: str) -> list[str]:
        return self.layout.job_command(*args)

    def add_tasks(self, count: int, title: str = "task") -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute(
                "INSERT INTO tasks (title) SELECT %s || g FROM generate_series(1, %s) g",
                (title, count),
            )

    def backup(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command("backup"), env=self.site.env, capture_output=True, text=True, timeout=300
        )


def make_stack(tmp_path: Path, postgres, s3: S3Server, age_key, bucket_name: str) -> Stack:
    key, public = age_key
    database = f"app_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    migrate_to_head(postgres.url(database))
    settings = HostSettings(app_root=str(tmp_path / "srv"), config_dir=str(tmp_path / "etc"))
    layout = BackupLayout(settings.paths, state_root=str(tmp_path / "state"))
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "current").symlink_to(REPO)  # this checkout is the "release"
    Path(layout.state_dir).mkdir(parents=True)
    Path(settings.config_dir).mkdir()
    bucket = Bucket(s3.endpoint, bucket_name, "us-east-1", "test", "test")
    s3.make_bucket(bucket_name)
    Path(settings.env_file).write_text(
        desired.env_file_content({"DATABASE_URL": postgres.url(database)})
    )
    Path(layout.env_file).write_text(job_environment(layout, bucket, BackupSettings()))
    Path(layout.recipients_file).write_text(public + "\n")
    # The environment a unit gets: a PATH, nothing inherited from this machine's shell.
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    return Stack(layout, LocalSite(env), database, postgres, key, bucket, s3)


@pytest.fixture
def stack(tmp_path, postgres, s3, age_key) -> Iterator[Stack]:
    made = make_stack(tmp_path, postgres, s3, age_key, f"backups-{uuid.uuid4().hex[:8]}")
    yield made
    postgres.drop_database(made.database)
