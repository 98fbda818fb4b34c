"""The app's database connection: TLS, and plain text refused by the server.

The check runs on the host exactly as the app runs: as the app user, with systemd reading the
same EnvironmentFile, with the live release's Python and psycopg. The URL and password are
never printed: the script prints only the outcome, with the password masked out of any error.
"""

from __future__ import annotations

from tests.host.probes import python_as_app

# argv[1]: "as-configured" (the app's DATABASE_URL) or "plaintext" (sslmode=disable).
CONNECT = r"""
import json, os, sys, urllib.parse
import psycopg

url = os.environ["DATABASE_URL"]
password = urllib.parse.unquote(urllib.parse.urlsplit(url).password or "") or None
if sys.argv[1] == "plaintext":
    base, _, query = url.partition("?")
    keep = [p for p in query.split("&") if p and not p.startswith(("sslmode=", "sslrootcert="))]
    url = base + "?" + "&".join(keep + ["sslmode=disable"])
try:
    with psycopg.connect(url, connect_timeout=10) as conn:
        conn.execute("SELECT 1")
        # The client's own view of the link it has: to the server, or to a pool in front of
        # it (whose own link to the server pg_stat_ssl would describe instead).
        ssl = bool(conn.pgconn.ssl_in_use)
    print(json.dumps({"connected": True, "ssl": ssl}))
except Exception as exc:
    message = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    if password:
        message = message.replace(password, "***")
    print(json.dumps({"connected": False, "error": type(exc).__name__, "message": message}))
"""


def connect_as_app(host, settings, mode: str) -> dict:
    return python_as_app(host, settings, CONNECT, mode)


def test_app_connects_over_tls(host, settings):
    outcome = connect_as_app(host, settings, "as-configured")
    assert outcome["connected"], (
        f"the app cannot reach PostgreSQL with its DATABASE_URL: {outcome['error']}: "
        f"{outcome['message']}"
    )
    assert outcome["ssl"] is True, (
        "the app's database connection is NOT encrypted (libpq reports no TLS on it); "
        "DATABASE_URL must use sslmode=verify-full"
    )


def test_database_refuses_plaintext(host, settings):
    outcome = connect_as_app(host, settings, "plaintext")
    assert not outcome["connected"], (
        "PostgreSQL accepted the app's credentials without TLS (sslmode=disable): passwords and "
        "data cross the network in clear; the server must reject non-SSL connections"
    )
