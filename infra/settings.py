"""The stack's configuration, validated once into a typed ``Settings`` before any resource exists.

``parse_settings`` is pure: it takes the raw ``dropstack:*`` values (strings, as the Pulumi engine
hands them to the program, or native values) and returns ``Settings`` or raises ``SettingsError``
listing every problem, one line each, naming the key and what is allowed. ``load_settings`` is the
thin part that reads them from the running stack.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import pulumi.runtime

NAMESPACE = "dropstack"

# Regions where droplets, VPCs, load balancers and managed PostgreSQL can all be created today
# (`doctl compute region list`); nyc2, ams2 and sfo1 still exist but take no new resources.
REGIONS = (
    "ams3", "atl1", "blr1", "fra1", "lon1", "nyc1", "nyc3", "sfo2", "sfo3", "sgp1", "syd1", "tor1",
)  # fmt: skip
POSTGRES_VERSIONS = ("14", "15", "16", "17")
POOL_MODES = ("transaction", "session", "statement")
WEB_COUNT_RANGE = (1, 10)
DB_NODE_COUNT_RANGE = (1, 3)
# A pool's size is server connections; in transaction mode 100 serve thousands of clients, and
# DigitalOcean caps a cluster's connections by plan anyway (22 on db-s-1vcpu-1gb).
DB_POOL_SIZE_RANGE = (0, 100)

# Droplet slugs: s-1vcpu-1gb, s-1vcpu-512mb-10gb, s-2vcpu-4gb-amd, c-2vcpu-4gb, g-2vcpu-8gb, ...
DROPLET_SIZE_RE = re.compile(r"[a-z][a-z0-9_]*-\d+vcpu-\d+(mb|gb)(-[a-z0-9]+)*")
# Database slugs: db-s-1vcpu-1gb, db-amd-1vcpu-1gb, db-intel-2vcpu-4gb, gd-2vcpu-8gb, so1_5-...
DB_SIZE_RE = re.compile(r"(db-(s|amd|intel)|gd|m|m3|so1_5)-\d+vcpu-\d+gb")
IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]|\d+")
DOMAIN_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# Addresses reserved for documentation (RFC 5737, RFC 3849): an example copied unedited.
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


class SettingsError(ValueError):
    """The stack configuration is invalid. ``errors`` holds one single-line message per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Settings:
    """Everything the program reads from the stack configuration, validated and normalised."""

    ssh_public_keys: tuple[str, ...]
    admin_cidrs: tuple[str, ...]
    allow_ssh_from_anywhere: bool = False
    region: str = "fra1"
    droplet_size: str = "s-1vcpu-1gb"
    droplet_image: str = "debian-12-x64"
    web_count: int = 1
    ssh_private_key_path: str = ""
    db_size: str = "db-s-1vcpu-1gb"
    db_version: str = "16"
    db_node_count: int = 1
    db_pool_size: int = 0
    db_pool_mode: str = "transaction"
    domain: str | None = None

    @property
    def behind_load_balancer(self) -> bool:
        """More than one web droplet means a load balancer in front of them."""
        return self.web_count > 1

    @property
    def db_pool_enabled(self) -> bool:
        return self.db_pool_size > 0


# Config key (camelCase, as in Pulumi.yaml) -> Settings field. The order is the documented order.
CONFIG_KEYS: dict[str, str] = {
    "region": "region",
    "dropletSize": "droplet_size",
    "dropletImage": "droplet_image",
    "webCount": "web_count",
    "sshPublicKeys": "ssh_public_keys",
    "sshPrivateKeyPath": "ssh_private_key_path",
    "adminCidrs": "admin_cidrs",
    "allowSshFromAnywhere": "allow_ssh_from_anywhere",
    "dbSize": "db_size",
    "dbVersion": "db_version",
    "dbNodeCount": "db_node_count",
    "dbPoolSize": "db_pool_size",
    "dbPoolMode": "db_pool_mode",
    "domain": "domain",
}
REQUIRED_KEYS = ("sshPublicKeys", "adminCidrs")


class _Invalid(Exception):
    """One key's value is wrong; the message says what is allowed (without the key name)."""


def parse_settings(raw: Mapping[str, object]) -> Settings:
    """Validate raw ``dropstack:*`` values (keys without the namespace) into ``Settings``.

    Every problem is collected, so one run shows them all; ``SettingsError.errors`` has one line
    per problem, each starting with the namespaced key.
    """
    errors: list[str] = []
    values: dict[str, Any] = {}
    for key in sorted(set(raw) - set(CONFIG_KEYS)):
        errors.append(f"{NAMESPACE}:{key}: unknown key; known keys are {', '.join(CONFIG_KEYS)}")

    def take(key: str, parse: Callable[[object], Any]) -> None:
        value = raw.get(key)
        if value is None:
            if key in REQUIRED_KEYS:
                errors.append(f"{NAMESPACE}:{key}: required; {_REQUIRED_HINTS[key]}")
            return
        try:
            values[CONFIG_KEYS[key]] = parse(value)
        except _Invalid as exc:
            errors.append(f"{NAMESPACE}:{key}: {exc}")

    take("allowSshFromAnywhere", _boolean)
    allow_anywhere = values.get("allow_ssh_from_anywhere", False)
    take("region", _region)
    take("dropletSize", _droplet_size)
    take("dropletImage", _image)
    take("webCount", lambda v: _integer(v, WEB_COUNT_RANGE, "number of web droplets"))
    take("sshPublicKeys", _ssh_public_keys)
    take("sshPrivateKeyPath", _ssh_private_key_path)
    take("adminCidrs", lambda v: _admin_cidrs(v, allow_anywhere=allow_anywhere))
    take("dbSize", _db_size)
    take("dbVersion", _db_version)
    take("dbNodeCount", lambda v: _integer(v, DB_NODE_COUNT_RANGE, "a primary plus 0-2 standbys"))
    take("dbPoolSize", lambda v: _integer(v, DB_POOL_SIZE_RANGE, "0 means no connection pool"))
    take("dbPoolMode", _pool_mode)
    take("domain", _domain)
    if errors:
        raise SettingsError(errors)
    return Settings(**values)


_REQUIRED_HINTS = {
    "sshPublicKeys": "a list of OpenSSH public keys for the deploy user "
    "(pulumi config set --path 'dropstack:sshPublicKeys[0]' \"$(cat ~/.ssh/id_ed25519.pub)\")",
    "adminCidrs": "a list of the networks allowed to SSH in "
    "(pulumi config set --path 'dropstack:adminCidrs[0]' <your-ip>/32)",
}


def load_settings() -> Settings:
    """Read and validate this stack's ``dropstack:*`` configuration.

    Keys are gathered from everything the engine passed (so a misspelt key is reported, not
    ignored) and each value is read the way ``pulumi.Config`` reads it.
    """
    prefix = f"{NAMESPACE}:"
    keys = {
        *pulumi.runtime.config.CONFIG.get(),
        *pulumi.runtime.get_config_env(),
        *(prefix + key for key in CONFIG_KEYS),
    }
    raw = {
        key.removeprefix(prefix): value
        for key in sorted(keys)
        if key.startswith(prefix) and (value := pulumi.runtime.get_config(key)) is not None
    }
    return parse_settings(raw)


def settings_field_defaults() -> dict[str, object]:
    """The default of every optional Settings field, keyed by config key (for docs and tests)."""
    by_field = {f.name: f.default for f in fields(Settings)}
    return {key: by_field[name] for key, name in CONFIG_KEYS.items() if key not in REQUIRED_KEYS}


# --- one parser per kind of value; each returns the normalised value or raises _Invalid ---------


def _text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(f"{value!r} is not a string")
    return str(value).strip()


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Invalid(f"{value!r} is not true or false")


def _integer(value: object, bounds: tuple[int, int], meaning: str) -> int:
    low, high = bounds
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    else:
        number = None
    if number is None:
        raise _Invalid(f"{value!r} is not an integer from {low} to {high} ({meaning})")
    if not low <= number <= high:
        raise _Invalid(f"{number} is outside {low}..{high} ({meaning})")
    return number


def _string_list(value: object, what: str) -> list[str]:
    """A list from a native list or the JSON text Pulumi passes for structured config."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _Invalid(
                f"must be a list of {what}, not the plain string {_shorten(value)!r}; "
                "set entries with pulumi config set --path 'KEY[0]' VALUE"
            ) from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"must be a list of {what}")
    return [v.strip() for v in value]


def _region(value: object) -> str:
    region = _text(value).lower()
    if region not in REGIONS:
        raise _Invalid(f"{region!r} is not a DigitalOcean region; use one of {', '.join(REGIONS)}")
    return region


def _droplet_size(value: object) -> str:
    size = _text(value)
    if not DROPLET_SIZE_RE.fullmatch(size):
        raise _Invalid(f"{size!r} is not a droplet size slug like s-1vcpu-1gb or s-2vcpu-4gb")
    return size


def _db_size(value: object) -> str:
    size = _text(value)
    if not DB_SIZE_RE.fullmatch(size):
        raise _Invalid(
            f"{size!r} is not a database size slug like db-s-1vcpu-1gb, db-s-2vcpu-4gb "
            "or gd-2vcpu-8gb"
        )
    return size


def _image(value: object) -> str:
    image = _text(value)
    if not IMAGE_RE.fullmatch(image):
        raise _Invalid(f"{image!r} is not an image slug like debian-12-x64 or a numeric image id")
    return image


def _db_version(value: object) -> str:
    version = _text(value)
    if version not in POSTGRES_VERSIONS:
        raise _Invalid(
            f"{version!r} is not a PostgreSQL version DigitalOcean offers; "
            f"use one of {', '.join(POSTGRES_VERSIONS)}"
        )
    return version


def _pool_mode(value: object) -> str:
    mode = _text(value).lower()
    if mode not in POOL_MODES:
        raise _Invalid(f"{mode!r} is not one of {', '.join(POOL_MODES)}")
    return mode


def _domain(value: object) -> str | None:
    domain = _text(value).lower().removesuffix(".")
    if not domain:
        return None
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(DOMAIN_LABEL_RE.fullmatch(label) for label in labels)
        or not re.fullmatch(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}", labels[-1])
    ):
        raise _Invalid(
            f"{_shorten(domain)!r} is not a domain name like example.com (no scheme, path or port)"
        )
    return domain


def _ssh_public_keys(value: object) -> tuple[str, ...]:
    keys = _string_list(value, "OpenSSH public keys")
    if not keys:
        raise _Invalid(f"is empty; {_REQUIRED_HINTS['sshPublicKeys']}")
    seen: dict[str, int] = {}
    for number, key in enumerate(keys, start=1):
        if "PRIVATE KEY" in key:
            # Never echo it: this is a private key pasted by mistake.
            raise _Invalid(f"entry {number} is a PRIVATE key; give the contents of the .pub file")
        if not is_openssh_public_key(key):
            raise _Invalid(
                f"entry {number} ({_shorten(key)!r}) is not an OpenSSH public key "
                f"('TYPE BASE64 [comment]' with TYPE one of {', '.join(SSH_KEY_TYPES[:3])}, ...)"
            )
        blob = key.split()[1]
        if blob in seen:
            raise _Invalid(f"entry {number} repeats entry {seen[blob]}")
        seen[blob] = number
    return tuple(keys)


def is_openssh_public_key(line: str) -> bool:
    """True for one ``authorized_keys``-style public key line whose blob matches its type."""
    parts = line.split()
    if "\n" in line.strip() or len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        return False
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return False
    length = int.from_bytes(blob[:4], "big")
    return len(blob) > 4 + length and blob[4 : 4 + length] == parts[0].encode()


def _ssh_private_key_path(value: object) -> str:
    path = _text(value)
    if "\n" in path or "BEGIN" in path:
        raise _Invalid("looks like key material; give the private key's file path ('' = ssh-agent)")
    if path.endswith(".pub"):
        raise _Invalid(f"{path!r} is a public key; give the private key's path ('' = ssh-agent)")
    return path


def _admin_cidrs(value: object, *, allow_anywhere: bool) -> tuple[str, ...]:
    entries = _string_list(value, "CIDRs")
    if not entries:
        raise _Invalid(f"is empty; {_REQUIRED_HINTS['adminCidrs']}")
    cidrs: list[str] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                fixed = ipaddress.ip_network(entry, strict=False)
                raise _Invalid(f"{entry!r} has host bits set; did you mean {fixed}?") from None
            raise _Invalid(f"{_shorten(entry)!r} is not an IPv4/IPv6 address or CIDR") from None
        if network.prefixlen == 0 and not allow_anywhere:
            raise _Invalid(
                f"{network} opens SSH to the whole internet; list the networks you SSH from, "
                f"or set {NAMESPACE}:allowSshFromAnywhere to true to accept that"
            )
        if any(
            network.subnet_of(doc)
            for doc in DOCUMENTATION_NETWORKS
            if doc.version == network.version
        ):
            raise _Invalid(
                f"{network} is a documentation example range (RFC 5737/3849); "
                "put the address you SSH from"
            )
        if str(network) not in cidrs:
            cidrs.append(str(network))
    return tuple(cidrs)


def _shorten(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
