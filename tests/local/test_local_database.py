"""The managed-database stand-in: certificates, server settings, pg_hba and SQL."""

import ipaddress
import re

import pytest
from cryptography import x509

from deploy.local.database import (
    Credentials,
    db_uri,
    make_tls_material,
    pg_hba,
    roles_sql,
    server_conf,
)


@pytest.fixture(scope="module")
def tls():
    return make_tls_material("198.18.1.100")


def test_server_certificate_names_the_database_address_and_is_signed_by_the_ca(tls):
    ca = x509.load_pem_x509_certificate(tls.ca_cert_pem.encode())
    server = x509.load_pem_x509_certificate(tls.server_cert_pem.encode())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("198.18.1.100")]
    server.verify_directly_issued_by(ca)  # raises if the signature does not verify
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_only_the_server_key_is_handed_out(tls):
    assert tls.server_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert tls.ca_cert_pem.count("BEGIN CERTIFICATE") == 1
    assert "PRIVATE KEY" not in tls.ca_cert_pem + tls.server_cert_pem


def test_every_stack_gets_its_own_ca(tls):
    assert make_tls_material("198.18.1.100").ca_cert_pem != tls.ca_cert_pem


def test_server_listens_on_the_vpc_address_at_the_managed_port_with_tls():
    conf = server_conf("198.18.1.100")
    assert "listen_addresses = '198.18.1.100'" in conf
    assert "port = 25060" in conf
    assert "ssl = on" in conf
    assert "password_encryption = 'scram-sha-256'" in conf


def hba_rows(text):
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


def test_hba_rejects_plaintext_before_anything_from_the_network():
    rows = hba_rows(pg_hba(["198.18.1.11", "198.18.1.12"]))
    first_network = next(i for i, r in enumerate(rows) if r[0] != "local")
    assert rows[first_network][0] == "hostnossl" and rows[first_network][-1] == "reject"
    assert ["hostnossl", "all", "all", "::/0", "reject"] in rows


def test_hba_allows_tls_with_scram_from_each_web_host_only():
    rows = hba_rows(pg_hba(["198.18.1.11", "198.18.1.12"]))
    network = [r for r in rows if r[0] != "local" and r[-1] != "reject"]
    # Trusted sources limit addresses, not roles or databases (DigitalOcean's model).
    assert ["hostssl", "all", "all", "198.18.1.11/32", "scram-sha-256"] in network
    assert ["hostssl", "all", "all", "198.18.1.12/32", "scram-sha-256"] in network
    assert all(r[0] == "hostssl" and r[-1] == "scram-sha-256" for r in network)
    assert {r[3] for r in network} == {"198.18.1.11/32", "198.18.1.12/32"}
    assert not any(r[0] == "host" or r[-1] in ("trust", "md5", "password") for r in rows)


def test_sql_leaves_the_cluster_as_digitaloceans_api_does():
    sql = roles_sql(Credentials(app_password="app-pw", admin_password="admin-pw"))
    # doadmin is powerful but not a superuser; the databases are its, the app user has a login.
    assert (
        "ALTER ROLE doadmin LOGIN CREATEDB CREATEROLE REPLICATION BYPASSRLS NOSUPERUSER "
        "PASSWORD 'admin-pw';" in sql
    )
    assert "ALTER ROLE app LOGIN NOCREATEDB NOCREATEROLE PASSWORD 'app-pw';" in sql
    assert "CREATE DATABASE defaultdb OWNER doadmin" in sql
    assert "CREATE DATABASE app OWNER doadmin" in sql
    assert "OWNER app" not in sql and "GRANT" not in sql.replace("GRANT pg_monitor", "")
    assert sql.count("WHERE NOT EXISTS") == 4  # safe to run again


def test_sql_quotes_passwords():
    sql = roles_sql(Credentials(app_password="it's", admin_password="x"))
    assert "PASSWORD 'it''s';" in sql


def test_generated_passwords_are_long_and_distinct():
    credentials = Credentials.generate()
    assert len(credentials.app_password) >= 32
    assert credentials.app_password != credentials.admin_password


def test_uri_requires_tls_on_the_private_network():
    uri = db_uri("198.18.1.100", "p@ss/word")
    assert uri == "postgresql://app:p%40ss%2Fword@198.18.1.100:25060/app?sslmode=require"
    assert re.fullmatch(r"postgresql://app:[^@]+@198\.18\.1\.100:25060/app\?sslmode=require", uri)
