"""The local stand-in for DigitalOcean's managed PostgreSQL, as files, SQL and certificates.

Like the managed service it listens on port 25060 on the private network only, requires TLS with a
certificate signed by the service's own CA, and accepts connections only from its trusted sources
(the web hosts' VPC addresses). Ownership and grants are DigitalOcean's (docs/digitalocean.md):
the admin ``doadmin`` is not a superuser; ``defaultdb`` and every database made through the API
belong to ``doadmin``; a user made through the API gets nothing but its login. So on PostgreSQL
15+, where only a database's owner may create in schema ``public``, the app user cannot run its
first migration until it is granted CREATE there: provisioning does that, as on a real cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.shell import Raw
from infra.firewall_rules import POSTGRES_POOL_PORT, POSTGRES_PORT
from infra.outputs import DB_POOL_NAME

PG_VERSION = "15"
CLUSTER = "main"
CONF_DIR = f"/etc/postgresql/{PG_VERSION}/{CLUSTER}"
TLS_DIR = f"{CONF_DIR}/tls"
SERVICE = f"postgresql@{PG_VERSION}-{CLUSTER}"
DB_NAME = "app"
DB_USER = "app"
ADMIN_USER = "doadmin"
DEFAULT_DB = "defaultdb"
# doadmin's attributes on a DigitalOcean cluster: it creates databases and roles, and may
# replicate and bypass row security, but it is not a superuser.
ADMIN_ATTRIBUTES = "LOGIN CREATEDB CREATEROLE REPLICATION BYPASSRLS NOSUPERUSER"
CERT_DAYS = 365
POOL_CONF = "/etc/pgbouncer/pgbouncer.ini"
POOL_USERS = "/etc/pgbouncer/userlist.txt"
POOL_SERVICE = "pgbouncer"
# DigitalOcean's pools take up to 5000 client connections whatever the plan; the pool's size is
# the server connections it opens.
POOL_MAX_CLIENTS = 5000


@dataclass(frozen=True)
class Credentials:
    app_password: str
    admin_password: str

    @classmethod
    def generate(cls) -> Credentials:
        return cls(app_password=secrets.token_urlsafe(24), admin_password=secrets.token_urlsafe(24))


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert_pem: str
    server_cert_pem: str
    server_key_pem: str


def make_tls_material(
    db_address: str, *, now: datetime.datetime | None = None,
    ca_name: str = "dropstack local database CA",
) -> TlsMaterial:  # fmt: skip
    """A fresh CA named ``ca_name`` and a server certificate for ``db_address`` (as IP SAN)
    signed by it (the Redis stand-in gets its own, deploy/local/redis.py).

    The CA's private key is not returned: nothing signs with it again, so it is never stored.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(issuer)
        .issuer_name(issuer)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, db_address)]))
        .issuer_name(issuer)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(db_address))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_cert_pem=ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        server_cert_pem=server_cert.public_bytes(serialization.Encoding.PEM).decode(),
        server_key_pem=server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


def server_conf(db_address: str, port: int = POSTGRES_PORT) -> str:
    """A conf.d file; Debian's postgresql.conf includes conf.d last, so these settings win."""
    return (
        "# Written by `fab local.up`: the local stand-in for a managed database.\n"
        f"listen_addresses = '{db_address}'\n"
        f"port = {port}\n"
        "ssl = on\n"
        f"ssl_cert_file = '{TLS_DIR}/server.crt'\n"
        f"ssl_key_file = '{TLS_DIR}/server.key'\n"
        f"ssl_ca_file = '{TLS_DIR}/ca.crt'\n"
        "ssl_min_protocol_version = 'TLSv1.2'\n"
        "password_encryption = 'scram-sha-256'\n"
    )


def pg_hba(trusted_addresses: list[str]) -> str:
    """Peer auth on the local socket for administration; from the network, TLS from the trusted
    sources with a password (any user, any database: trusted sources limit addresses, not
    roles, as on DigitalOcean), an explicit reject for anything without TLS, and nothing else."""
    lines = [
        "# Written by `fab local.up`. First match wins.",
        "# TYPE    DATABASE  USER       ADDRESS          METHOD",
        "local     all       postgres                    peer",
        # The connection pool (PgBouncer, on this host) reaches the server on the unix socket.
        "local     all       all                         scram-sha-256",
        "hostnossl all       all        0.0.0.0/0        reject",
        "hostnossl all       all        ::/0             reject",
    ]
    for address in trusted_addresses:
        cidr = f"{address}/32"
        lines.append(f"hostssl   all       all        {cidr:<16} scram-sha-256")
    return "\n".join(lines) + "\n"


def roles_sql(credentials: Credentials) -> str:
    """Idempotent SQL run by ``postgres``: the cluster as DigitalOcean's API leaves it.

    ``doadmin`` (not a superuser) owns ``defaultdb`` and the app database; the app user has a
    login and nothing else (PostgreSQL's defaults: CONNECT and TEMP on databases via PUBLIC, no
    CREATE on schema ``public``, which belongs to the database owner, pg_database_owner).
    It is sent on stdin, never on a command line, so the passwords stay out of process lists.
    """
    admin = _literal(credentials.admin_password)
    app = _literal(credentials.app_password)
    # Names are this module's constants; passwords go through _literal. Not injectable.
    return f"""\
\\set ON_ERROR_STOP on
SELECT 'CREATE ROLE {ADMIN_USER}' WHERE NOT EXISTS
  (SELECT FROM pg_roles WHERE rolname = '{ADMIN_USER}')\\gexec
ALTER ROLE {ADMIN_USER} {ADMIN_ATTRIBUTES} PASSWORD {admin};
GRANT pg_monitor TO {ADMIN_USER};
SELECT 'CREATE ROLE {DB_USER}' WHERE NOT EXISTS
  (SELECT FROM pg_roles WHERE rolname = '{DB_USER}')\\gexec
ALTER ROLE {DB_USER} LOGIN NOCREATEDB NOCREATEROLE PASSWORD {app};
SELECT 'CREATE DATABASE {DEFAULT_DB} OWNER {ADMIN_USER}' WHERE NOT EXISTS
  (SELECT FROM pg_database WHERE datname = '{DEFAULT_DB}')\\gexec
SELECT 'CREATE DATABASE {DB_NAME} OWNER {ADMIN_USER}' WHERE NOT EXISTS
  (SELECT FROM pg_database WHERE datname = '{DB_NAME}')\\gexec
"""  # noqa: S608


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def db_uri(host: str, password: str, port: int = POSTGRES_PORT, user: str = DB_USER) -> str:
    """The URI a managed database hands out: TLS required, on the private network."""
    return f"postgresql://{user}:{quote(password, safe='')}@{host}:{port}/{DB_NAME}?sslmode=require"


def configure_commands() -> list[list[str]]:
    """Run on the database host (as root) after the files are in place: restart, then wait."""
    return [
        ["chown", "-R", "postgres:postgres", TLS_DIR],
        ["chmod", "0700", TLS_DIR],
        ["systemctl", "restart", SERVICE],
    ]


def ready_command(db_address: str, port: int = POSTGRES_PORT) -> list[str]:
    return ["pg_isready", "--quiet", f"--host={db_address}", f"--port={port}", "--timeout=2"]


# $1...: the readiness command. Up to 30 s for PostgreSQL to accept connections after a restart.
WAIT_READY_SCRIPT = 'for i in $(seq 60); do "$@" && exit 0; sleep 0.5; done; "$@"'


def wait_ready_command(db_address: str, port: int = POSTGRES_PORT) -> list[str]:
    return ["sh", "-c", WAIT_READY_SCRIPT, "wait-ready", *ready_command(db_address, port)]


def install_file_command(staged: str, path: str, mode: str) -> list[str]:
    return ["sudo", "-n", "install", "-D", "-m", mode, "-o", "postgres", "-g", "postgres",
            staged, path]  # fmt: skip


def run_sql_command(sql_file: str, port: int = POSTGRES_PORT) -> list[str]:
    """psql as postgres reading SQL from a file the deploy user's shell opens (stdin), so
    the passwords in it are on no command line."""
    return ["sudo", "-n", "-u", "postgres", "psql", "--no-psqlrc", "--quiet", f"--port={port}",
            "--dbname=postgres", Raw("<"), sql_file]  # fmt: skip


def pool_conf(db_address: str, size: int, port: int = POSTGRES_POOL_PORT) -> str:
    """PgBouncer as DigitalOcean runs a connection pool: its own port, TLS required, SCRAM,
    transaction mode, ``size`` server connections to the app database."""
    return f"""\
; Written by `fab local.up`: the local stand-in for a DigitalOcean connection pool.
[databases]
{DB_POOL_NAME} = host=/var/run/postgresql port={POSTGRES_PORT} dbname={DB_NAME} pool_size={size}

[pgbouncer]
listen_addr = {db_address}
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {POOL_USERS}
pool_mode = transaction
max_client_conn = {POOL_MAX_CLIENTS}
default_pool_size = {size}
client_tls_sslmode = require
client_tls_protocols = tlsv1.2,tlsv1.3
client_tls_cert_file = {TLS_DIR}/server.crt
client_tls_key_file = {TLS_DIR}/server.key
ignore_startup_parameters = extra_float_digits
logfile =
pidfile = /var/run/postgresql/pgbouncer.pid
"""


# Who may log in through the pool, with the server's own SCRAM secret (PgBouncer then passes the
# client's proof through to the server: no plaintext password is stored).
POOL_USERS_SQL = (
    """SELECT format('"%s" "%s"', rolname, rolpassword) FROM pg_authid """  # noqa: S608
    f"WHERE rolname = '{DB_USER}'"
)


def pool_users_command(port: int = POSTGRES_PORT) -> list[str]:
    """As root on the database host: the pool's auth file from the server's SCRAM secret."""
    script = (
        'umask 077; sudo -n -u postgres psql --no-psqlrc -At --port="$1" --dbname=postgres '
        '-c "$2" > "$3.tmp" && chown postgres:postgres "$3.tmp" && mv -f "$3.tmp" "$3"'
    )
    return ["sudo", "-n", "sh", "-c", script, "pool-users", str(port), POOL_USERS_SQL, POOL_USERS]
