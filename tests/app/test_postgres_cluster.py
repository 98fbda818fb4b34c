"""The throwaway PostgreSQL helper itself: it cleans up after failures and says what is missing."""

import subprocess
from pathlib import Path

import psycopg
import pytest

import tests.postgres_cluster as postgres_cluster
from tests.postgres_cluster import PostgresCluster, PostgresNotInstalled, find_bin_dir


def test_a_server_that_fails_to_start_leaves_nothing_behind(monkeypatch):
    created = []
    real_mkdtemp = postgres_cluster.tempfile.mkdtemp

    def recording_mkdtemp(**kwargs):
        created.append(Path(real_mkdtemp(**kwargs)))
        return str(created[-1])

    monkeypatch.setattr(postgres_cluster.tempfile, "mkdtemp", recording_mkdtemp)
    with (
        pytest.raises(subprocess.CalledProcessError) as raised,
        PostgresCluster(settings=("no_such_setting=1",)),
    ):
        pass
    assert "no_such_setting" in raised.value.stderr  # the server log explains the failure
    assert len(created) == 1
    assert not created[0].exists()


def test_the_cluster_is_gone_after_the_block():
    with PostgresCluster() as cluster:
        base_dir, url = cluster.base_dir, cluster.url()
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    assert not base_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_missing_binaries_are_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PG_BIN_DIR", str(tmp_path))
    monkeypatch.setattr(postgres_cluster, "DEBIAN_BIN_DIRS", str(tmp_path / "none" / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresNotInstalled, match="install the Debian package 'postgresql'"):
        find_bin_dir()
