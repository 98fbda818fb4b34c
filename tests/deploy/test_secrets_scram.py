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


def app_engine(cluster: PostgresCluster, password: str, fallback: str | None):
    """The app's own engine (app/database.py) for the role, as a host's env file sets it."""
    from app.database import create_database_engine

    url = plan.with_password(f"postgresql://{ROLE}@127.0.0.1:{cluster.port}/postgres", password)
    return create_database_engine(
        {"DATABASE_URL": url, "DATABASE_CONNECT_TIMEOUT": 5, "DATABASE_POOL_SIZE": 1,
         "DATABASE_MAX_OVERFLOW": 0, "DATABASE_PASSWORD_FALLBACK": fallback}
    )  # fmt: skip


def current_user(engine) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT current_user").scalar_one()


def test_the_app_logs_in_with_the_fallback_between_the_role_change_and_its_restart(server):
    """The rotation's middle: the app still has the old DATABASE_URL and the new password as
    its fallback, and the role already has the new password. New connections must work."""
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    set_password(server, scram.verifier(old))
    accepting = app_engine(server, old, fallback=new)  # the accept stage's env file
    assert current_user(accepting) == ROLE  # before the role changes: the URL's password
    set_password(server, scram.verifier(new))
    accepting.dispose()  # every connection from now on is a new login
    assert current_user(accepting) == ROLE  # the URL's password is refused: the fallback
    without = app_engine(server, old, fallback=None)
    with pytest.raises(Exception, match="password authentication failed"):
        current_user(without)
    # A fallback that is wrong too still fails, with the server's refusal.
    wrong = app_engine(server, old, fallback="not-it")
    with pytest.raises(Exception, match="password authentication failed"):
        current_user(wrong)


def test_the_password_rotation_stages_write_fallback_then_url():
    url = "postgresql://app:old@10.0.0.5:25060/app?sslmode=verify-full"  # pragma: allowlist secret
    accept = plan.accept_password_values("n3w")
    assert accept == {plan.PASSWORD_FALLBACK: "n3w"}  # pragma: allowlist secret
    text = plan.edited(f"DATABASE_URL={url}\nSECRET_KEY=k\n", accept)
    keys = [line.split("=")[0] for line in text.splitlines() if "=" in line and line[0] != "#"]
    assert keys == ["DATABASE_URL", plan.PASSWORD_FALLBACK, "SECRET_KEY"]  # provisioning's order
    use = plan.database_url_values(text, "n3w", "2026-12-05T20:00:00+00:00")
    assert use[plan.PASSWORD_FALLBACK] is None
    final = plan.edited(text, use)
    assert plan.PASSWORD_FALLBACK not in final and "app:n3w@" in final
    # Provisioning keeps a fallback while a rotation is under way, like the key fallbacks.
    kept = plan.kept_env_values({plan.PASSWORD_FALLBACK: "n3w"}, url)
    assert kept == {plan.PASSWORD_FALLBACK: "n3w"}  # pragma: allowlist secret


def test_a_rotation_stopped_after_accept_is_finished_with_its_password():
    assert plan.pending_password({"web-1": {}, "web-2": {}}) is None
    envs = {"web-1": {plan.PASSWORD_FALLBACK: "p1"}, "web-2": {}}  # pragma: allowlist secret
    assert plan.pending_password(envs) == "p1"
    with pytest.raises(plan.RotationError, match="2 different"):
        two = ({plan.PASSWORD_FALLBACK: v} for v in ("p1", "p2"))
        plan.pending_password(dict(zip("ab", two, strict=True)))
