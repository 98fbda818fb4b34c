"""Alembic's entry point for app/migrations, run by app.schema (``python -m app.manage ...``).

The caller hands over a connection that is already inside the migration transaction and holds
the migration lock (see app.schema.migration_connection), so this file opens nothing itself and
the database URL is read in exactly one place: the app's configuration.
"""

from alembic import context

from app.models import Base

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError(
        "run migrations with `python -m app.manage migrate|downgrade|revision`, "
        "which connect using DATABASE_URL; offline (--sql) mode is not supported"
    )

context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
