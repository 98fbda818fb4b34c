"""Gunicorn settings for dropstack, from the environment.

    gunicorn -c app/gunicorn_conf.py app.wsgi:app        (a file path, from the release dir)
    gunicorn -c python:app.gunicorn_conf app.wsgi:app    (the same, as a module)

Environment: GUNICORN_BIND (default 127.0.0.1:8000; on hosts systemd passes a unix socket such
as unix:/run/dropstack/blue/gunicorn.sock), WEB_CONCURRENCY (workers, default 2 x CPUs + 1, at
most 8), GUNICORN_THREADS (default 4), GUNICORN_GRACEFUL_TIMEOUT (default 30 seconds),
FORWARDED_ALLOW_IPS, LOG_LEVEL; and the app's own settings, checked before anything starts.
"""

import json
import logging
import os
import sys
from datetime import UTC, datetime

from gunicorn.glogging import Logger

MAX_DEFAULT_WORKERS = 8


def env_int(name: str, default: int) -> int:
    """A whole-number setting from the environment; a bad value stops Gunicorn with one line."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"{name} must be a whole number above zero, got {value!r}")
    return int(value)


def default_workers() -> int:
    """Gunicorn's rule of thumb, 2 x CPUs + 1, capped: each worker holds its own DB pool."""
    return min(2 * (os.cpu_count() or 1) + 1, MAX_DEFAULT_WORKERS)


class JsonAccessLogger(Logger):
    """Gunicorn's logger with access lines written as real JSON, like the app's own logs.

    The stock access_log_format is %-interpolated text: a quote in a User-Agent would break a
    JSON-shaped format, so the line is built with json.dumps instead.
    """

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "gunicorn.access",
            "message": f"{atoms['m']} {atoms['U']} {atoms['s']}",
            "request_id": atoms.get("{x-request-id}o"),
            "method": atoms["m"],
            "path": atoms["U"],
            "status": int(atoms["s"]),
            "bytes": atoms["B"],
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "forwarded_for": atoms.get("{x-forwarded-for}i"),
            "user_agent": atoms["a"],
        }
        self.access_log.info(json.dumps(entry))


def on_starting(server) -> None:
    """Refuse to start, before binding the socket or telling systemd READY, on bad app settings.

    Workers would fail the same way (create_app validates too), but only after the master has
    reported itself ready; failing here makes `systemctl start` itself fail, with one clear line.
    """
    from app.config import ConfigError, load_config

    try:
        load_config(os.environ)
    except ConfigError as error:
        print(f"dropstack: refusing to start: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


def leaves_at_once(booted: bool, leaving: BaseException | None) -> bool:
    """Whether a worker may skip the interpreter's teardown: it served (booted) and is ending
    normally (exit status 0: told to stop, or max_requests). A failed boot or a crash keeps the
    usual exit and its status, which the arbiter reads (3 and 4 stop Gunicorn)."""
    return booted and isinstance(leaving, SystemExit) and leaving.code in (0, None)


def worker_exit(server, worker) -> None:
    """A worker that finished its requests after SIGTERM (the end of a blue/green switch)
    leaves with os._exit instead of tearing the interpreter down.

    That teardown (freeing every module and object of the app, joining the idle threads of
    the gthread pool) costs about 0.3 s of CPU per worker: with 5 workers on a 2-core host
    that is also serving the new slot under load, the old slot took 4 to 12 s to exit after
    it had drained. What matters of it is done here first: the database connections are
    closed (PostgreSQL sees a clean goodbye) and the logs flushed."""
    if not leaves_at_once(getattr(worker, "booted", False), sys.exc_info()[1]):
        return
    try:
        from app.database import database_of

        database_of(worker.wsgi).engine.dispose()
    except Exception as error:  # no app, no database: the process ends either way
        worker.log.warning("worker exit: database connections not closed: %s", error)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def on_exit(server) -> None:
    """The arbiter, once its workers are gone after SIGTERM, leaves with os._exit too: its own
    teardown took 0.2 s of CPU idle and 0.7-1.9 s on a busy host. Only for a stop asked by a
    signal (the StopIteration Gunicorn's handlers raise is in flight here); a halt with an
    error status (a worker failed to boot: 3, 4) exits as usual, with that status."""
    if not isinstance(sys.exc_info()[1], (StopIteration, KeyboardInterrupt)):
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
workers = env_int("WEB_CONCURRENCY", default_workers())
# Threads let a worker wait on PostgreSQL for one request while serving another.
worker_class = "gthread"
threads = env_int("GUNICORN_THREADS", 4)
timeout = 30
# On SIGTERM (systemctl stop, the end of a blue/green switch) in-flight requests get this long.
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Longer than Nginx's upstream keepalive_timeout (60 s by default), so Nginx closes an idle
# upstream connection first and never sends a request into one Gunicorn is closing.
keepalive = 65

# Blue/green deploys start a fresh master for each release and stop the old one; nothing sends a
# running master HUP to load new code. Without preloading, each worker builds its own app (and
# database pool) after the fork, so no connection is ever shared between processes; the cost is
# a little memory per worker.
preload_app = False

# On hosts the socket is a unix socket that only Nginx can reach, and Gunicorn trusts forwarded
# headers on unix sockets unconditionally; this list matters only for TCP binds (development).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Only the header Nginx sets. Gunicorn's default also honours X-Forwarded-Ssl/-Protocol, which
# Nginx passes through from the client untouched.
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}

accesslog = "-"  # stdout, JSON lines (JsonAccessLogger)
errorlog = "-"  # stderr
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = JsonAccessLogger
proc_name = "dropstack"

# Gunicorn 25+ opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/ by
# default. Blue and green run as the same user, so they would fight over (and unlink) one path;
# and nothing here uses gunicornc. Stop and reload go through systemd signals instead.
control_socket_disable = True
