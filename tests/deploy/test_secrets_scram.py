"""The SCRAM-SHA-256 verifier the database password rotation sends, against a real server:
ALTER ROLE with it, then the plaintext logs in and the old password does not."""

import base64
import hashlib
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from deploy.secrets import plan, rotate, scram
from tests.postgres_cluster import PostgresCluster

ROLE = "rotated_app"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        # Password logins for the role over TCP; the superuser keeps trust (listed after).
        hba = cluster.data_dir / "pg_hba.conf"
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        cluster.execute("SELECT pg_reload_conf()")
        cluster.execute(f"CREATE ROLE {ROLE} LOGIN")
        yield cluster


def login(cluster: PostgresCluster, password: str) -> str:
    url = plan.with_password(f"postgresql://{ROLE}@127.0.0.1:{cluster.port}/postgres", password)
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute("SELECT current_user").fetchone()[0]


def set_password(cluster: PostgresCluster, verifier: str) -> None:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(rotate.alter_role_statement(ROLE, verifier))


def stored_secret(cluster: PostgresCluster) -> str:
    with psycopg.connect(cluster.url()) as conn:
        query = "SELECT rolpassword FROM pg_authid WHERE rolname = %s"
        return conn.execute(query, (ROLE,)).fetchone()[0]


def test_the_verifier_is_stored_as_sent_and_the_password_logs_in(server):
    password = secrets.token_urlsafe(32)
    verifier = scram.verifier(password)
    set_password(server, verifier)
    assert stored_secret(server) == verifier, "the server must store it, not hash it again"
    assert password not in stored_secret(server)
    assert login(server, password) == ROLE


def test_after_a_rotation_the_old_password_is_refused(server):
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    set_password(server, scram.verifier(old))
    assert login(server, old) == ROLE
    set_password(server, scram.verifier(new))
    assert login(server, new) == ROLE
    with pytest.raises(psycopg.OperationalError) as refused:
        login(server, old)
    assert plan.login_refused(str(refused.value))


def test_a_wrong_verifier_does_not_log_in(server):
    """The check above could pass with any string the server accepts; a verifier of another
    password must not let this one in (so the keys really derive from the password)."""
    set_password(server, scram.verifier("another-password-entirely"))
    with pytest.raises(psycopg.OperationalError) as refused:
        login(server, "the-password-we-meant")
    assert plan.login_refused(str(refused.value))


def test_verifier_layout_matches_postgresql():
    salt = bytes(range(16))
    verifier = scram.verifier("pencil", salt=salt, iterations=4096)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt_b64 = iterations_salt.split(":")
    stored, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert (method, iterations, base64.b64decode(salt_b64)) == ("SCRAM-SHA-256", "4096", salt)
    assert len(stored) == len(server_key) == hashlib.sha256().digest_size
    assert scram.verifier("pencil") != scram.verifier("pencil"), "a fresh salt each time"


@pytest.mark.parametrize("password", ["", "pässword", "tab\there"])
def test_passwords_outside_printable_ascii_are_refused(password):
    with pytest.raises(scram.PasswordError) as refused:
        scram.verifier(password)
    assert password not in str(refused.value) or not password
