"""Schema commands for operators and the deploy: ``python -m app.manage <command>``.

    migrate             upgrade the database to the newest migration (the deploy runs this)
    downgrade REV       revert to revision REV ("base" removes every table)
    current             print the database's revision and the code's head
    check               exit 0 when the database answers and is at head, else 1 with the reason
    revision -m MSG     write a new migration file (--autogenerate compares with app.models)
    purge [--older-than-days N]
                        delete tasks done and untouched for more than N days (default 30);
                        the scheduled job purge-done-tasks (fabric.yaml) runs this daily

Settings come from the environment, exactly as for the web app (DATABASE_URL, DROPSTACK_ENV,
SECRET_KEY, ...); a bad setting is reported on one line and the exit status is 2.
"""

import argparse
import logging
import os
import sys

from alembic import command
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app import create_app, schema
from app.config import ConfigError
from app.database import database_of

log = logging.getLogger(__name__)

QUIET_COMMANDS = ("check", "current")


def build_parser() -> argparse.ArgumentParser:
    """The command line, one subcommand per schema operation."""
    parser = argparse.ArgumentParser(
        prog="python -m app.manage",
        description="dropstack schema commands (settings from the environment)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the database to head")
    downgrade = commands.add_parser("downgrade", help="revert to a revision")
    downgrade.add_argument("revision", help='target revision id, or "base"')
    commands.add_parser("current", help="print the current and head revisions")
    commands.add_parser("check", help="exit 0 if reachable and at head, else 1")
    revision = commands.add_parser("revision", help="write a new migration file")
    revision.add_argument("-m", "--message", required=True, help="what the migration does")
    revision.add_argument(
        "--autogenerate", action="store_true", help="fill it in by comparing with app.models"
    )
    purge = commands.add_parser("purge", help="delete tasks done for more than N days")
    purge.add_argument("--older-than-days", type=positive_days, default=30, metavar="N")
    return parser


def positive_days(value: str) -> int:
    """--older-than-days: a whole number of days, at least 1 (0 would purge today's work)."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of days above 0, got {value!r}")
    return int(value)


PURGE = text("DELETE FROM tasks WHERE done AND updated_at < now() - make_interval(days => :days)")


def run(arguments: argparse.Namespace) -> int:
    """Run one command against the configured database; the exit status."""
    engine = database_of(create_app(quieter_logging(arguments.command))).engine
    try:
        if arguments.command == "migrate":
            schema.upgrade(engine, "head")
            print(f"migrate: database at head {schema.head_revision()}")
        elif arguments.command == "downgrade":
            schema.downgrade(engine, arguments.revision)
            print(f"downgrade: database at {arguments.revision}")
        elif arguments.command == "current":
            with engine.connect() as connection:
                current = schema.current_revision(connection)
            print(f"current: {current or 'base'} (head: {schema.head_revision()})")
        elif arguments.command == "check":
            status = schema.schema_status(engine)
            print(f"check: {'ok' if status.ready else 'failed'}: {status.reason}")
            return 0 if status.ready else 1
        elif arguments.command == "purge":
            # The database's clock decides "older than", as it stamped updated_at.
            with engine.begin() as connection:
                purged = connection.execute(PURGE, {"days": arguments.older_than_days}).rowcount
            print(f"purge: {purged} tasks done for more than {arguments.older_than_days} days")
        elif arguments.command == "revision":
            with schema.migration_connection(engine) as connection:
                command.revision(
                    schema.alembic_config(connection),
                    message=arguments.message,
                    autogenerate=arguments.autogenerate,
                    rev_id=schema.next_revision_id(),
                )
    finally:
        engine.dispose()
    return 0


def quieter_logging(command_name: str) -> dict[str, str]:
    """Settings that keep `check` and `current` to their one line, unless LOG_LEVEL is set.

    Their printed line is the answer a script reads; INFO lines about connecting add nothing.
    Migrations keep INFO: "Running upgrade 0001 -> 0002" is worth having in the deploy log.
    """
    if command_name in QUIET_COMMANDS and not os.environ.get("LOG_LEVEL"):
        return {"LOG_LEVEL": "WARNING"}
    return {}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command, and turn expected failures into one-line errors."""
    arguments = build_parser().parse_args(argv)
    try:
        return run(arguments)
    except ConfigError as error:
        print(f"{arguments.command}: configuration error: {error}", file=sys.stderr)
        return 2
    except CommandError as error:
        # Alembic's own refusals: an unknown revision, a downgrade below base, ...
        print(f"{arguments.command}: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        # The full error (with the SQL that failed) goes to the JSON log; stderr gets the
        # database's first line, the useful one ("connection refused", "permission denied").
        log.error("%s failed", arguments.command, exc_info=True)
        first_line = str(getattr(error, "orig", None) or error).splitlines()[0]
        print(f"{arguments.command}: database error: {first_line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
