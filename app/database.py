"""One SQLAlchemy engine and session factory per app, and one session per request."""

from dataclasses import dataclass

import psycopg
from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.config import sqlalchemy_url

EXTENSION_NAME = "dropstack.database"
POOL_PORT = 25061


@dataclass(frozen=True)
class Database:
    """The app's engine and the factory its request sessions come from."""

    engine: Engine
    sessions: sessionmaker[Session]


def create_database_engine(config: dict) -> Engine:
    """An engine for ``config["DATABASE_URL"]`` tuned for a threaded web worker.

    Connections are made lazily: creating the engine never touches the network, so the app
    starts (and /healthz answers) while the database is down.
    """
    url = sqlalchemy_url(config["DATABASE_URL"])
    connect_args = {}
    if "connect_timeout" not in url.query:  # an operator's explicit choice in the URL wins
        connect_args["connect_timeout"] = config["DATABASE_CONNECT_TIMEOUT"]
    if url.port == POOL_PORT:
        # Through a transaction-mode pool (DigitalOcean's PgBouncer pools listen on 25061) the
        # next transaction may get another server connection, where psycopg's server-side
        # prepared statements do not exist ("prepared statement _pg3_0 does not exist").
        connect_args["prepare_threshold"] = None
    engine = create_engine(
        url,
        connect_args=connect_args,
        # A pooled connection may have been cut by a database restart or failover; test it on
        # checkout instead of failing the request that happens to get it.
        pool_pre_ping=True,
        # Managed databases and firewalls drop idle connections; replace them before that.
        pool_recycle=1800,
        pool_size=config["DATABASE_POOL_SIZE"],
        max_overflow=config["DATABASE_MAX_OVERFLOW"],
        # Waiting longer than this for a free connection means overload: fail the request.
        pool_timeout=5,
    )
    fallback = config.get("DATABASE_PASSWORD_FALLBACK")
    if fallback:
        event.listen(engine, "do_connect", password_fallback(fallback))
    return engine


def password_refused(error: Exception) -> bool:
    """The server refused the credentials (not a network or other failure)."""
    text = str(error).lower()
    return "password authentication failed" in text or "sasl authentication failed" in text


def password_fallback(fallback: str):
    """A ``do_connect`` hook: connect with the URL's password, and when the server refuses it,
    once more with ``fallback``. A rotation changes the role's password between two restarts
    of the app; a connection opened in between must not fail."""

    def connect(dialect, _record, cargs, cparams):
        try:
            return dialect.connect(*cargs, **cparams)
        except psycopg.OperationalError as error:
            if not password_refused(error):
                raise
            return dialect.connect(*cargs, **{**cparams, "password": fallback})

    return connect


def init_app(app: Flask) -> None:
    """Give ``app`` its engine and close each request's session when the request ends."""
    engine = create_database_engine(app.config)
    app.extensions[EXTENSION_NAME] = Database(
        engine=engine,
        # Objects stay readable after commit, so views can serialise what they just saved.
        sessions=sessionmaker(bind=engine, expire_on_commit=False),
    )
    app.teardown_appcontext(close_session)


def database_of(app: Flask) -> Database:
    """The Database that ``init_app`` attached to ``app``."""
    return app.extensions[EXTENSION_NAME]


def get_session() -> Session:
    """The current request's session, opened on first use."""
    if "db_session" not in g:
        g.db_session = database_of(current_app).sessions()
    return g.db_session


def close_session(_exception: BaseException | None = None) -> None:
    """Return the request's connection to the pool; uncommitted work is rolled back."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
