"""What the settings models share: their one-line error, field documentation, and the small
predicates that validate values pasted into Nginx and systemd syntax."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import field
from typing import Any

NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]"
)
NGINX_SIZE = re.compile(r"[1-9][0-9]*[km]?")
NGINX_RATE = re.compile(r"[1-9][0-9]*r/[sm]")
# Paths and names are pasted into Nginx and systemd syntax: no spaces, quotes, ';' or '%'.
ABSOLUTE_PATH = re.compile(r"/[A-Za-z0-9._/-]*")


class SettingsError(ValueError):
    """A settings value is not allowed; ``str()`` is one line naming the field."""


def doc(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


def full(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def absolute(value: object) -> bool:
    return full(ABSOLUTE_PATH, value) and "/../" not in f"{value}/"


def int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def network(value: object) -> bool:
    try:
        # strict: host bits set (10.110.0.5/20) is a typo, not a network
        return isinstance(value, str) and ipaddress.ip_network(value) is not None
    except ValueError:
        return False


def address(value: object, versions: tuple[int, ...] = (4, 6)) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version in versions
    except ValueError:
        return False


def ipv4(value: object) -> bool:
    return address(value, (4,))


def plain(value: Any) -> Any:
    """Invoke's config proxies as plain dicts."""
    if hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    return value
