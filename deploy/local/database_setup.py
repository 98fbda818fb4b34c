"""Configuring the local database host over SSH, like DigitalOcean configures a managed
cluster: TLS material and settings in place, a restart, then the roles and databases."""

from __future__ import annotations

import io

from deploy import shell
from deploy.local import database
from deploy.local.access import connection
from deploy.local.network import StackPlan
from deploy.local.state import StatePaths
from deploy.provision.apply import run


def database_files(
    plan: StackPlan, tls: database.TlsMaterial, pool_size: int = 0
) -> list[tuple[str, str, str]]:
    """(path, content, mode) of every file the database host gets; the pool's with a pool."""
    db = plan.db
    pool = [(database.POOL_CONF, database.pool_conf(db.private_ip, pool_size), "0640")]
    return (pool if pool_size else []) + [
        (f"{database.TLS_DIR}/ca.crt", tls.ca_cert_pem, "0644"),
        (f"{database.TLS_DIR}/server.crt", tls.server_cert_pem, "0644"),
        (f"{database.TLS_DIR}/server.key", tls.server_key_pem, "0600"),
        (f"{database.CONF_DIR}/conf.d/dropstack.conf", database.server_conf(db.private_ip), "0644"),
        (f"{database.CONF_DIR}/pg_hba.conf", database.pg_hba([h.private_ip for h in plan.web]),
         "0640"),
    ]  # fmt: skip


def configure_database(
    paths: StatePaths,
    plan: StackPlan,
    credentials: database.Credentials,
    tls: database.TlsMaterial,
    pool_size: int = 0,
) -> None:
    with connection(paths, plan.db) as conn:
        # Uploaded over SFTP into a directory only the deploy user can read: Invoke feeds
        # `in_stream` one byte per tick (seconds for a certificate), and a password never
        # belongs on a command line.
        staging = run(conn, ["mktemp", "-d"]).stdout.strip()
        try:
            for index, (path, content, mode) in enumerate(database_files(plan, tls, pool_size)):
                staged = f"{staging}/{index}"
                conn.put(io.BytesIO(content.encode()), staged)
                run(conn, database.install_file_command(staged, path, mode))
            for command in database.configure_commands():
                run(conn, shell.as_root(command))
            run(conn, database.wait_ready_command(plan.db.private_ip))
            conn.put(io.BytesIO(database.roles_sql(credentials).encode()), f"{staging}/roles.sql")
            run(conn, database.run_sql_command(f"{staging}/roles.sql"))
            if pool_size:
                run(conn, database.pool_users_command())
                run(conn, shell.as_root(["systemctl", "restart", database.POOL_SERVICE]))
        finally:
            run(conn, ["rm", "-rf", staging], warn=True)
