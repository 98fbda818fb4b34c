"""The pure part of a rotation: its stages, and what each one writes into a host's env file.

SECRET_KEY rotates in stages so that no request ever meets a host that cannot verify what
another host (or its own previous process) signed. With several hosts: *accept* (each host
still signs with its old key and also verifies with the new one), *sign* (all sign with the new
key, the old one only verifies), *retire* (the old key is gone). With one host *accept* is
needed by nobody and is skipped. Each stage is one blue/green switch per host.

The database password has two: *accept* (each host gets the new password as
DATABASE_PASSWORD_FALLBACK, which the app tries when the server refuses DATABASE_URL's), then
the role's password changes, then *use* (DATABASE_URL has the new password, the fallback is
gone). A connection the app opens between the role's change and its restart logs in with the
fallback. An app without that fallback (the contract does not require it) can meet refused
logins in that moment; docs/operations.md says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from deploy.provision import desired

FALLBACKS = "SECRET_KEY_FALLBACKS"
# The name of an env variable, not a password (ruff S105, bandit B105, detect-secrets).
PASSWORD_FALLBACK = "DATABASE_PASSWORD_FALLBACK"  # noqa: S105  # pragma: allowlist secret
# Written by a database password rotation: provisioning then keeps the host's password instead
# of the inventory's, which still holds the old one (see docs/operations.md).
ROTATED_MARK = "DATABASE_PASSWORD_ROTATED"
# The env file's keys in the order provisioning writes them, so a rotated file and the file
# provisioning would write are byte for byte the same (no drift reported after a rotation).
ENV_ORDER = (
    "DROPSTACK_ENV", "DATABASE_URL", PASSWORD_FALLBACK, "SECRET_KEY", FALLBACKS, ROTATED_MARK,
)  # fmt: skip
STAGES = ("accept", "sign", "retire")


class RotationError(Exception):
    """A rotation cannot start or did not end as it should; one line, never a secret."""


def ordered(values: Mapping[str, str]) -> dict[str, str]:
    known = {key: values[key] for key in ENV_ORDER if key in values}
    return {**known, **{k: v for k, v in values.items() if k not in known}}


def env_content(values: Mapping[str, str]) -> str:
    return desired.env_file_content(ordered(values))


def edited(env_text: str, updates: Mapping[str, str | None]) -> str:
    """The env file with ``updates`` applied (None removes a key), in provisioning's order."""
    values = desired.parse_env_file(env_text)
    for key, value in updates.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return env_content(values)


def secret_key_stages(host_count: int, keep_old: bool = False, retire_only: bool = False):
    """The stages a SECRET_KEY rotation runs, in order."""
    if retire_only:
        return ["retire"]
    stages = ["accept", "sign"] if host_count > 1 else ["sign"]
    return stages if keep_old else [*stages, "retire"]


def secret_key_values(stage: str, old: str, new: str) -> dict[str, str | None]:
    """What one stage sets in a host's env file; ``old`` is that host's key before the run."""
    if stage == "accept":
        return {"SECRET_KEY": old, FALLBACKS: new}
    if stage == "sign":
        return {"SECRET_KEY": new, FALLBACKS: old}
    if stage == "retire":
        return {"SECRET_KEY": new, FALLBACKS: None}
    raise ValueError(f"stage: {stage!r} is not one of {', '.join(STAGES)}")


def refuse_to_start(envs: Mapping[str, Mapping[str, str]]) -> str | None:
    """Why a new SECRET_KEY rotation must not start, or None: a host without a key (never
    provisioned) or with fallbacks left (a rotation that did not finish: retire them first)."""
    for host, env in envs.items():
        if not env.get("SECRET_KEY"):
            return f"{host}: its env file has no SECRET_KEY; run `fab provision` first"
        if env.get(FALLBACKS):
            return (
                f"{host}: {FALLBACKS} is set (an unfinished rotation, or --keep-old-key); "
                "finish it with `fab secrets.rotate --retire` before rotating again"
            )
    return None


def secret_key_check(env: Mapping[str, str], old: str, new: str, final_stage: str) -> str | None:
    """Read back after the last stage: the host signs with the new key and, once retired,
    knows the old one no more. None when so; else what is wrong (no values)."""
    fallbacks = [k for k in env.get(FALLBACKS, "").split(",") if k]
    if env.get("SECRET_KEY") != new:
        return "SECRET_KEY is not the new key"
    if final_stage == "retire" and (old in fallbacks or fallbacks):
        return f"{FALLBACKS} still set after the retire stage"
    return None


# --- the database password ---


def password_of(url: str) -> str:
    return unquote(urlsplit(url).password or "")


def with_password(url: str, password: str) -> str:
    """``url`` with its password replaced (percent-encoded); user, host, query unchanged."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def accept_password_values(password: str) -> dict[str, str]:
    """The *accept* stage: the new password as the app's fallback; DATABASE_URL unchanged."""
    return {PASSWORD_FALLBACK: password}


def database_url_values(env_text: str, password: str, when: str) -> dict[str, str | None]:
    """The *use* stage: DATABASE_URL with the new password, no fallback, and the mark
    provisioning reads."""
    url = desired.parse_env_file(env_text).get("DATABASE_URL")
    if not url:
        raise RotationError("env file: DATABASE_URL is not set; run `fab provision` first")
    return {"DATABASE_URL": with_password(url, password), PASSWORD_FALLBACK: None,
            ROTATED_MARK: when}  # fmt: skip


def pending_password(envs: Mapping[str, Mapping[str, str]]) -> str | None:
    """The new password of a rotation that stopped after *accept* (the hosts' fallback), so a
    new run finishes it rather than starting another; None when there is none."""
    pending = {env.get(PASSWORD_FALLBACK) for env in envs.values()} - {None, ""}
    if len(pending) > 1:
        raise RotationError(
            f"the hosts name {len(pending)} different {PASSWORD_FALLBACK}s (interrupted "
            "rotations); set one of them on every host, or remove them, and run again"
        )
    return pending.pop() if pending else None


def login_refused(message: str) -> bool:
    """Whether a failed login was the server refusing the credentials (not a network error)."""
    lowered = message.lower()
    return "password authentication failed" in lowered or "sasl authentication failed" in lowered


def kept_env_values(existing: Mapping[str, str], inventory_url: str) -> dict[str, str]:
    """What provisioning keeps from a host's env file besides SECRET_KEY: the fallbacks (key
    and database password) while a rotation needs them, and, after a database password
    rotation, the host's password in the inventory's URL (the inventory holds the old one)."""
    kept: dict[str, str] = {}
    for key in (FALLBACKS, PASSWORD_FALLBACK):
        if existing.get(key):
            kept[key] = existing[key]
    if existing.get(ROTATED_MARK) and existing.get("DATABASE_URL"):
        kept["DATABASE_URL"] = with_password(inventory_url, password_of(existing["DATABASE_URL"]))
        kept[ROTATED_MARK] = existing[ROTATED_MARK]
    return kept
