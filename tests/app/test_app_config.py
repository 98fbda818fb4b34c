"""Settings come only from the environment; unsafe production settings stop the app."""

import secrets

import pytest

from app import create_app
from app.config import ConfigError, load_config, sqlalchemy_url

DATABASE_URL = "postgresql://app:hunter2pw@db.internal:25060/app?sslmode=require"
GOOD_SECRET_KEY = secrets.token_hex(32)


def production(**environment):
    """A production environment with valid settings, changed by ``environment``."""
    return {"DATABASE_URL": DATABASE_URL, "SECRET_KEY": GOOD_SECRET_KEY, **environment}


@pytest.mark.parametrize(
    ("secret_key", "problem"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("changeme", "is a placeholder value"),
        ("dev", "is a placeholder value"),
        ("secret", "is a placeholder value"),
        ("CHANGEME", "is a placeholder value"),
        ("change-me-in-production-0123456789abcdef", "is a placeholder value"),
        ("django-insecure-k2#9x!q0z$w1m8v7c6b5n4a3s2d1f0g9", "is a placeholder value"),
        (secrets.token_hex(15), "is too short (30 characters)"),
        ("x" * 64, "is too repetitive"),
        ("ab" * 32, "is too repetitive"),
    ],
    # Ids without the values: random ones would differ between pytest-xdist's workers.
    ids=[
        "unset",
        "empty",
        "changeme",
        "dev",
        "secret",
        "CHANGEME",
        "change-me-in-production",
        "django-insecure",
        "short",
        "one-character",
        "two-characters",
    ],
)
def test_production_refuses_unsafe_secret_keys(secret_key, problem):
    environment = production(SECRET_KEY=secret_key)
    if secret_key is None:
        del environment["SECRET_KEY"]
    with pytest.raises(ConfigError) as raised:
        load_config(environment)
    message = str(raised.value)
    assert message.startswith(f"SECRET_KEY {problem} (DROPSTACK_ENV=production): ")
    assert "at least 32 characters" in message
    assert "\n" not in message
    if secret_key and len(secret_key) > len("changeme"):  # short words occur in the advice
        assert secret_key not in message


@pytest.mark.parametrize(
    "secret_key",
    [secrets.token_hex(32), secrets.token_urlsafe(32), secrets.token_hex(16)],
    ids=["hex-32", "urlsafe-32", "hex-16"],
)
def test_production_accepts_random_secret_keys(secret_key):
    assert load_config(production(SECRET_KEY=secret_key))["SECRET_KEY"] == secret_key


def test_production_is_the_default_environment():
    config = load_config(production())
    assert config["DROPSTACK_ENV"] == "production"
    with pytest.raises(ConfigError, match=r"^SECRET_KEY is not set"):
        load_config({"DATABASE_URL": DATABASE_URL})


def test_development_allows_a_missing_secret_key():
    config = load_config({"DROPSTACK_ENV": "development", "DATABASE_URL": DATABASE_URL})
    assert config["SECRET_KEY"] == "dev"


@pytest.mark.parametrize("environment", ["production", "development"])
def test_database_url_is_required(environment):
    with pytest.raises(ConfigError, match=r"^DATABASE_URL is not set: it must be a postgresql://"):
        load_config({"DROPSTACK_ENV": environment, "SECRET_KEY": GOOD_SECRET_KEY})


def test_create_app_raises_the_config_error(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("SECRET_KEY", "changeme")
    with pytest.raises(ConfigError, match=r"^SECRET_KEY is a placeholder value"):
        create_app()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DROPSTACK_ENV", "staging", "DROPSTACK_ENV must be one of production, development"),
        ("MAX_CONTENT_LENGTH", "64k", "MAX_CONTENT_LENGTH must be a whole number above zero"),
        ("MAX_CONTENT_LENGTH", "0", "MAX_CONTENT_LENGTH must be a whole number above zero"),
        ("MAX_CONTENT_LENGTH", "-1", "MAX_CONTENT_LENGTH must be a whole number above zero"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("DATABASE_URL", "mysql://db/app", "DATABASE_URL must be a postgresql:// URL"),
        ("DATABASE_URL", "not a url", "DATABASE_URL is not a valid URL"),
        ("DATABASE_URL", "postgresql://app:hunter2pw@db:port/app", "DATABASE_URL is not a valid"),
    ],
)
def test_invalid_settings_are_one_line_errors_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError) as raised:
        load_config(production(**{name: value}))
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert "hunter2pw" not in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MAX_CONTENT_LENGTH", "1048576", 1048576),
        ("LOG_LEVEL", "debug", "DEBUG"),
        ("DROPSTACK_ENV", "Development", "development"),
        ("DROPSTACK_RELEASE", "2026-11-21-abc1234", "2026-11-21-abc1234"),
        ("DROPSTACK_RELEASE", "  ", None),  # blank is unset
    ],
)
def test_settings_are_read_from_the_environment(name, value, expected):
    assert load_config(production(**{name: value}))[name] == expected


def test_defaults():
    config = load_config(production())
    assert config["MAX_CONTENT_LENGTH"] == 64 * 1024
    assert config["LOG_LEVEL"] == "INFO"
    assert config["DROPSTACK_RELEASE"] is None


def test_test_config_overrides_the_environment():
    config = load_config(production(MAX_CONTENT_LENGTH="100"), {"MAX_CONTENT_LENGTH": 200})
    assert config["MAX_CONTENT_LENGTH"] == 200


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        (
            "postgresql://app:pw@db:25060/app?sslmode=require",
            "postgresql+psycopg://app:pw@db:25060/app?sslmode=require",
        ),
        (
            "postgres://app:pw@db/app?sslmode=verify-full&sslrootcert=/etc/dropstack/ca.crt",
            "postgresql+psycopg://app:pw@db/app?sslmode=verify-full&sslrootcert=/etc/dropstack/ca.crt",
        ),
        ("postgresql+psycopg://app@db/app", "postgresql+psycopg://app@db/app"),
        ("postgresql://app:p%40ss%25word@db/app", "postgresql+psycopg://app:p%40ss%25word@db/app"),
    ],
)
def test_database_urls_are_moved_to_psycopg_3_keeping_libpq_parameters(database_url, expected):
    url = sqlalchemy_url(database_url)
    assert url.render_as_string(hide_password=False).replace("%2F", "/") == expected
    assert url.get_dialect().driver == "psycopg"


def test_libpq_parameters_reach_psycopg():
    url = sqlalchemy_url("postgresql://app:pw@db:25060/app?sslmode=require&sslrootcert=/ca.crt")
    _, connect_kwargs = url.get_dialect()().create_connect_args(url)
    assert connect_kwargs["sslmode"] == "require"
    assert connect_kwargs["sslrootcert"] == "/ca.crt"
    assert connect_kwargs["password"] == "pw"


# --- SECRET_KEY_FALLBACKS: old keys that still verify during a rotation -------------------------

OLD_SECRET_KEY = secrets.token_hex(32)
OLDER_SECRET_KEY = secrets.token_urlsafe(40)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        (OLD_SECRET_KEY, [OLD_SECRET_KEY]),
        (f"{OLD_SECRET_KEY},{OLDER_SECRET_KEY}", [OLD_SECRET_KEY, OLDER_SECRET_KEY]),
        (f" {OLD_SECRET_KEY} , {OLDER_SECRET_KEY} ", [OLD_SECRET_KEY, OLDER_SECRET_KEY]),
    ],
    ids=["unset", "one", "two", "two-with-spaces"],
)
def test_secret_key_fallbacks_are_a_comma_separated_list(value, expected):
    environment = production(**({"SECRET_KEY_FALLBACKS": value} if value else {}))
    assert load_config(environment)["SECRET_KEY_FALLBACKS"] == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"{OLD_SECRET_KEY},", "SECRET_KEY_FALLBACKS has an empty entry"),
        (f"{OLD_SECRET_KEY},short-but-random-k3y", "SECRET_KEY_FALLBACKS entry 2 is too short"),
        ("changeme-" + secrets.token_hex(20), "SECRET_KEY_FALLBACKS entry 1 is a placeholder"),
    ],
    ids=["empty-entry", "short-entry", "placeholder-entry"],
)
def test_production_refuses_unsafe_fallbacks_without_repeating_them(value, message):
    with pytest.raises(ConfigError) as caught:
        load_config(production(SECRET_KEY_FALLBACKS=value))
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    assert all(part not in text for part in value.split(",") if part)


def _session_cookie(app, value: dict) -> str:
    return app.session_interface.get_signing_serializer(app).dumps(value)


def _session(app, cookie: str):
    from itsdangerous import BadSignature

    try:
        return app.session_interface.get_signing_serializer(app).loads(cookie)
    except BadSignature:
        return None


def test_flask_verifies_with_the_fallbacks_and_signs_with_the_new_key():
    """What the rotation's stages rely on: a cookie signed with the old key still verifies
    while the old key is a fallback (sign stage), and no longer once it is retired."""
    old = create_app({"DATABASE_URL": DATABASE_URL, "SECRET_KEY": OLD_SECRET_KEY})
    cookie = _session_cookie(old, {"user": 7})
    signing = create_app(production(SECRET_KEY_FALLBACKS=OLD_SECRET_KEY))
    assert _session(signing, cookie) == {"user": 7}
    new_cookie = _session_cookie(signing, {"user": 8})
    assert _session(old, new_cookie) is None, "the new key signs, not the old one"
    retired = create_app(production())
    assert _session(retired, cookie) is None
    assert _session(retired, new_cookie) == {"user": 8}
