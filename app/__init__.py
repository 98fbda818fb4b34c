"""dropstack's web application: a task-list JSON API on PostgreSQL.

``create_app`` is the factory Gunicorn (via app.wsgi), ``flask --app app run``, app.manage and
the tests all use. To run it on a laptop, against a throwaway PostgreSQL:

    python -m tests.postgres_cluster            # prints DATABASE_URL=...; Ctrl-C removes it
    export DATABASE_URL=... DROPSTACK_ENV=development
    python -m app.manage migrate
    flask --app app run --debug                 # or: gunicorn -c app/gunicorn_conf.py app.wsgi:app
"""

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import database, errors, health, index, logs, tasks
from app.config import load_config, sqlalchemy_url

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then ``test_config``; validated first.

    Raises ``app.config.ConfigError`` with a one-line message when a setting is missing or
    unsafe (for example a placeholder SECRET_KEY in production), before anything is started.
    """
    config = load_config(os.environ, test_config)
    logs.configure_logging(config["LOG_LEVEL"])

    app = Flask(__name__)
    app.config.from_mapping(config)
    # Nginx sits in front on every host and sets X-Forwarded-For/-Proto/-Host, replacing (for
    # -Proto and -Host) or appending to (for -For) whatever the client sent; trust exactly that
    # one hop. Then request.remote_addr is the client, request.scheme is https behind TLS and
    # generated URLs carry the public host. No prefix: the app is mounted at "/", and trusting
    # X-Forwarded-Prefix would let any client rewrite the URLs the app generates.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=0)

    logs.init_app(app)
    errors.init_app(app)
    database.init_app(app)
    app.register_blueprint(index.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(tasks.bp)

    log.info(
        "app created",
        extra={
            "environment": config["DROPSTACK_ENV"],
            "release": config["DROPSTACK_RELEASE"],
            "database": sqlalchemy_url(config["DATABASE_URL"]).render_as_string(hide_password=True),
        },
    )
    return app
