"""The application's settings: defaults, then the environment, validated once at startup.

Every setting comes from an environment variable of the same name; on hosts systemd loads them
from the release's EnvironmentFile. A bad value is a ``ConfigError`` whose message is one line
naming the variable and what is allowed, so that a failed start is obvious in the journal.
"""

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ENVIRONMENTS = ("production", "development")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_SECRET_KEY_LENGTH = 32
# Values copied from tutorials and .env.example files. Compared after lower-casing.
PLACEHOLDER_SECRET_KEYS = frozenset({"changeme", "change-me", "change_me", "dev", "secret", "test"})
# Words that give a longer placeholder away ("change-me-in-production", "django-insecure-...").
PLACEHOLDER_SECRET_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "secret-key",
    "secret_key",
    "secretkey",
    "insecure",
    "notsecret",
)
# A 32-character key made of a handful of characters ("xxxx...", "abab...") is a placeholder too.
MIN_DISTINCT_SECRET_KEY_CHARACTERS = 10
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")

DEFAULTS: dict[str, Any] = {
    "DROPSTACK_ENV": "production",
    "DATABASE_URL": None,
    "SECRET_KEY": None,
    # Old keys that still verify what they signed (Flask 3.1 tries them after SECRET_KEY), so a
    # rotation does not sign everyone out at once: comma-separated in the environment.
    "SECRET_KEY_FALLBACKS": (),
    # A second password for DATABASE_URL's user, tried when the server refuses the first: a
    # database password rotation sets it to the new password before the role changes, so the
    # connections opened meanwhile log in either way (fab secrets.rotate, docs/operations.md).
    "DATABASE_PASSWORD_FALLBACK": None,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "LOG_LEVEL": "INFO",
    "DROPSTACK_RELEASE": None,
    # libpq waits this many seconds for a connection; /readyz must answer fast when the database
    # is down, and a healthy private-network database connects in milliseconds.
    "DATABASE_CONNECT_TIMEOUT": 2,
    # Per process. Gunicorn runs `threads` request threads per worker, each holding at most one
    # connection, so the pool never needs to be much larger than that.
    "DATABASE_POOL_SIZE": 4,
    "DATABASE_MAX_OVERFLOW": 2,
    # Bearer tokens for the task API (app.auth). Unset: the API is open, as before.
    "API_WRITE_TOKEN": None,
    "API_READ_TOKEN": None,
    # The background jobs' Redis (redis:// or rediss:// for TLS). Unset: no job can be queued
    # and the endpoints that queue one answer 503.
    "REDIS_URL": None,
}
ENVIRONMENT_VARIABLES = (
    "DROPSTACK_ENV",
    "DATABASE_URL",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "DATABASE_PASSWORD_FALLBACK",
    "MAX_CONTENT_LENGTH",
    "LOG_LEVEL",
    "DROPSTACK_RELEASE",
    "API_WRITE_TOKEN",
    "API_READ_TOKEN",
    "REDIS_URL",
)
TOKEN_SETTINGS = ("API_WRITE_TOKEN", "API_READ_TOKEN")
MIN_TOKEN_LENGTH = 32
# What RFC 6750 allows in a bearer token (b64token); anything else could never be sent in a header.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
DEVELOPMENT_SECRET_KEY = "dev"  # noqa: S105 (development only; production refuses it)


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message is one line meant for an operator."""


def load_config(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> dict:
    """Defaults, then the environment, then ``overrides`` (tests); validated and normalised."""
    config = dict(DEFAULTS)
    config.update(settings_from_environment(environ))
    config.update(overrides or {})
    return validated(config)


def settings_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The known variables that are set and non-empty, as strings (validation converts them)."""
    return {
        name: environ[name].strip()
        for name in ENVIRONMENT_VARIABLES
        if environ.get(name, "").strip()
    }


def validated(config: dict[str, Any]) -> dict[str, Any]:
    """Check every setting and convert it to its type; ``ConfigError`` on the first bad one."""
    environment = str(config["DROPSTACK_ENV"]).lower()
    if environment not in ENVIRONMENTS:
        allowed = ", ".join(ENVIRONMENTS)
        raise ConfigError(
            f"DROPSTACK_ENV must be one of {allowed}, got {config['DROPSTACK_ENV']!r}"
        )
    config["DROPSTACK_ENV"] = environment
    config["MAX_CONTENT_LENGTH"] = positive_int("MAX_CONTENT_LENGTH", config["MAX_CONTENT_LENGTH"])
    config["LOG_LEVEL"] = log_level(config["LOG_LEVEL"])
    redis_url = config["REDIS_URL"]
    if redis_url is not None and not str(redis_url).startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    config["SECRET_KEY"] = secret_key(config["SECRET_KEY"], environment)
    config["SECRET_KEY_FALLBACKS"] = secret_key_fallbacks(
        config["SECRET_KEY_FALLBACKS"], environment
    )
    for name in TOKEN_SETTINGS:
        config[name] = api_token(name, config[name])
    if not config["DATABASE_URL"]:
        raise ConfigError(
            "DATABASE_URL is not set: it must be a postgresql:// URL, "
            "e.g. postgresql://user:password@host:5432/dbname?sslmode=require"
        )
    sqlalchemy_url(config["DATABASE_URL"])  # raises ConfigError when it is not a PostgreSQL URL
    return config


def positive_int(name: str, value: Any) -> int:
    """``value`` as a whole number above zero, or a ConfigError naming ``name``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ConfigError(f"{name} must be a whole number above zero (bytes), got {value!r}")
    return number


def log_level(value: Any) -> str:
    """A logging level name, upper-cased."""
    level = str(value).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def secret_key(value: str | None, environment: str) -> str:
    """The SECRET_KEY to use. Production refuses a missing, short or placeholder key."""
    if environment != "production":
        return value or DEVELOPMENT_SECRET_KEY
    problem = secret_key_problem(value)
    if problem:
        # The message never repeats the value: even a wrong key may be a real secret elsewhere.
        raise ConfigError(
            f"SECRET_KEY {problem} (DROPSTACK_ENV=production): use a random string of at least "
            f"{MIN_SECRET_KEY_LENGTH} characters, e.g. the output of "
            "python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return value


def secret_key_fallbacks(value: str | list | tuple | None, environment: str) -> list[str]:
    """The old keys, as the list Flask wants; each held to SECRET_KEY's rules in production."""
    if isinstance(value, str):
        keys = [key.strip() for key in value.split(",")]
    else:
        keys = [str(key).strip() for key in value or ()]
    if any(not key for key in keys):
        raise ConfigError(
            "SECRET_KEY_FALLBACKS has an empty entry: it must be old keys separated by commas"
        )
    if environment == "production":
        for number, key in enumerate(keys, 1):
            problem = secret_key_problem(key)
            if problem:
                # Never the value: an old key is still a real secret while it verifies anything.
                raise ConfigError(
                    f"SECRET_KEY_FALLBACKS entry {number} {problem} (DROPSTACK_ENV=production): "
                    f"old keys must meet SECRET_KEY's rules, at least {MIN_SECRET_KEY_LENGTH} "
                    "random characters"
                )
    return keys


def secret_key_problem(value: str | None) -> str | None:
    """What makes ``value`` unfit to sign anything in production, or None when it is fine."""
    if not value:
        return "is not set"
    lowered = value.lower()
    if lowered in PLACEHOLDER_SECRET_KEYS or any(w in lowered for w in PLACEHOLDER_SECRET_WORDS):
        return "is a placeholder value"
    if len(value) < MIN_SECRET_KEY_LENGTH:
        return f"is too short ({len(value)} characters)"
    if len(set(value)) < MIN_DISTINCT_SECRET_KEY_CHARACTERS:
        return "is too repetitive"
    return None


def api_token(name: str, value: str | None) -> str | None:
    """An API bearer token, or None when unset; refused when guessable or unsendable."""
    if not value:
        return None
    # The messages never repeat the value: it is a credential.
    if not BEARER_TOKEN.fullmatch(value):
        raise ConfigError(
            f"{name} must be a bearer token (letters, digits and -._~+/ only), e.g. the output of "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if len(value) < MIN_TOKEN_LENGTH or len(set(value)) < MIN_DISTINCT_SECRET_KEY_CHARACTERS:
        raise ConfigError(
            f"{name} is too short or repetitive ({len(value)} characters): use at least "
            f"{MIN_TOKEN_LENGTH} random characters, e.g. the output of "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value


def sqlalchemy_url(database_url: str) -> URL:
    """The SQLAlchemy URL for ``database_url``, always on the psycopg 3 driver.

    Ops and DigitalOcean hand out libpq URLs (``postgresql://``, sometimes ``postgres://``);
    SQLAlchemy would pick psycopg2 for those, which is not installed. Query parameters such as
    ``sslmode`` and ``sslrootcert`` are kept: the psycopg dialect passes them on to libpq.
    """
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError):
        # The URL itself is not repeated: it may hold a password.
        raise ConfigError(
            "DATABASE_URL is not a valid URL: it must look like postgresql://user:password@host/db"
        ) from None
    if url.drivername not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"DATABASE_URL must be a postgresql:// URL, got a {url.drivername}:// URL"
        )
    return url.set(drivername="postgresql+psycopg")
