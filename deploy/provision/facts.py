"""Facts: what a host is, read by probe commands and turned into data by parsers.

A fact is a read-only command plus a parser (pyinfra's shape). ``gather_command`` batches any
number of facts into one command line (one SSH round trip), each fact's output framed by a
marker line, and ``parse_gathered`` splits it back. The operations (``operations.py``) read
only ``HostFacts``; nothing here changes a host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deploy import shell
from deploy.provision.files import file_states_command, parse_file_states

MARK = "@@dropstack-fact "


@dataclass(frozen=True)
class Fact:
    key: str
    command: Sequence[str]
    parse: Callable[[str], Any] = str
    root: bool = True  # read as root (most state is root's); False keeps the login's env
    # The one step that reads it, when only one does: provisioning reads such a fact right
    # before that step, not after every change (apt's upgrade simulation is 0.25-0.4 s, ufw's
    # status 0.1 s, and a first provisioning gathers some thirty times).
    read_by: str | None = None


def framed(fact: Fact) -> list[str]:
    """The fact's command between marker lines; its exit status is not needed (parsers read
    what was printed), so a failing probe never stops the batch."""
    return shell.sequence(
        ["echo", MARK + fact.key], [*fact.command, shell.NO_STDERR], ["echo", MARK + "end"]
    )


def gather_command(facts: Iterable[Fact]) -> list[str]:
    """One command printing every fact: the login's own facts first, then root's in one sudo."""
    facts = list(facts)
    own = [framed(f) for f in facts if not f.root]
    root = [framed(f) for f in facts if f.root]
    return shell.sequence(*own, shell.as_root(shell.sequence(*root)) if root else [])


def parse_gathered(output: str, facts: Iterable[Fact]) -> dict[str, Any]:
    raw: dict[str, list[str]] = {}
    current: str | None = None
    for line in output.splitlines():
        if line.startswith(MARK):
            key = line[len(MARK) :]
            current = None if key == "end" else key
            if current:
                raw[current] = []
        elif current is not None:
            raw[current].append(line)
    return {f.key: f.parse("\n".join(raw.get(f.key, []))) for f in facts}


# --- parsers ---


def parse_installed(text: str) -> frozenset[str]:
    """Packages `dpkg-query -W -f '${Package} ${Status}\\n'` reports as installed."""
    return frozenset(
        line.split()[0] for line in text.splitlines() if line.endswith(" ok installed")
    )


def parse_units(text: str) -> dict[str, dict[str, str]]:
    """`systemctl show -p Id -p ...` for several units: blocks separated by blank lines."""
    units: dict[str, dict[str, str]] = {}
    block: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if block.get("Id"):
                units[block["Id"]] = block
            block = {}
            continue
        key, _, value = line.partition("=")
        block[key] = value
    return units


def parse_passwd(text: str) -> dict[str, str] | None:
    fields = text.strip().split(":")
    if len(fields) < 7:
        return None
    return {"name": fields[0], "home": fields[5], "shell": fields[6]}


def keyed_lines(separator: str) -> Callable[[str], dict[str, str]]:
    """A parser of `key<separator>value` lines, keyed by the first field."""

    def parse(text: str) -> dict[str, str]:
        values = {}
        for line in text.splitlines():
            key, _, value = line.partition(separator)
            if key:
                values[key] = value
        return values

    return parse


# `path mode owner group` (or `path absent`) lines; `path<TAB>target` lines (empty: no link).
parse_dirs = keyed_lines(" ")
parse_links = keyed_lines("\t")


def parse_present(text: str) -> frozenset[str]:
    return frozenset(line for line in text.splitlines() if line)


def nameservers(text: str) -> tuple[str, ...]:
    """The non-loopback nameserver addresses in a resolv.conf, for ``dns_servers``."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1].split("%")[0])
            except ValueError:
                continue
            if not address.is_loopback:
                found.append(str(address))
    return tuple(found)


# --- probes ---

DIRS_SCRIPT = 'for d in "$@"; do stat -c "%n %a %U %G" "$d" 2>/dev/null || echo "$d absent"; done'
LINKS_SCRIPT = 'for p in "$@"; do printf "%s\\t%s\\n" "$p" "$(readlink "$p")"; done'
PRESENT_SCRIPT = 'for p in "$@"; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done'
# $1: a unit directory, $2: a name prefix; prints the names of the services and timers there.
UNIT_FILES_SCRIPT = (
    'for p in "$1/$2"*.service "$1/$2"*.timer; do [ -e "$p" ] && echo "${p##*/}"; done; true'
)
UNIT_PROPERTIES = ("Id", "LoadState", "UnitFileState", "ActiveState", "ConditionResult")


def os_release() -> Fact:
    return Fact("os_release", ["cat", "/etc/os-release"])


def resolv_conf() -> Fact:
    return Fact("resolv_conf", ["cat", "/etc/resolv.conf"])


def ssh_client() -> Fact:
    """SSH_CLIENT is `address port port`: the address this operator reaches the host from.
    Read before sudo, which drops it from the environment."""
    return Fact("ssh_client", shell.script('printf "%s\\n" "$SSH_CLIENT"'), _first_word, root=False)


def _first_word(text: str) -> str:
    words = text.split()
    return words[0] if words else ""


def installed_packages(packages: Iterable[str]) -> Fact:
    command = ["dpkg-query", "-W", "-f", "${Package} ${Status}\\n", *packages]
    return Fact("packages", command, parse_installed)


def file_states(paths: Iterable[str]) -> Fact:
    return Fact("files", file_states_command(paths), parse_file_states)


def directories(paths: Iterable[str]) -> Fact:
    return Fact("dirs", shell.script(DIRS_SCRIPT, *paths), parse_dirs)


def links(paths: Iterable[str]) -> Fact:
    return Fact("links", shell.script(LINKS_SCRIPT, *paths), parse_links)


def present(paths: Iterable[str]) -> Fact:
    return Fact("present", shell.script(PRESENT_SCRIPT, *paths), parse_present)


def unit_files(unit_dir: str, prefix: str) -> Fact:
    """The service and timer files in unit_dir whose names start with prefix (file names)."""
    return Fact("job_units", shell.script(UNIT_FILES_SCRIPT, unit_dir, prefix), parse_present)


def units(names: Iterable[str]) -> Fact:
    props = [a for p in UNIT_PROPERTIES for a in ("-p", p)]
    return Fact("units", ["systemctl", "show", *props, *names], parse_units)


def user(name: str) -> Fact:
    return Fact("user", ["getent", "passwd", name], parse_passwd)


def secret_file(path: str) -> Fact:
    """A file holding secrets (the app's env file): read to keep its generated values. Held
    in memory only; never printed."""
    return Fact("env_file", ["cat", path])


def ufw_status() -> Fact:
    return Fact("ufw", ["ufw", "status", "verbose"], read_by="host firewall (ufw)")


# --- the host baseline's facts (docs/security.md "Host baseline") ---

HOST_KEYS_SCRIPT = (
    'for k in "$1"/ssh_host_*_key; do [ -f "$k" ] || continue; '
    'printf "%s %s\\n" "${k##*/}" "$(ssh-keygen -l -f "$k" | '
    "awk '{print $1, $NF}')\"; done"
)
MODULI_STATE_SCRIPT = (
    'if [ -f "$1" ]; then awk -v m="$2" \'!/^#/ && NF { if ($5 >= m) s++; else w++ } '
    'END { print s+0, w+0 }\' "$1"; else echo 0 0; fi'
)
# Whether each account has a usable password (y/n), then its password ages; never the hash.
PASSWORDS_SCRIPT = (
    'awk -F: \'{ print $1 ":" (($2 == "" || $2 ~ /^[!*]/) ? "n" : "y") ":" '
    '$3 ":" $4 ":" $5 ":" $6 }\' /etc/shadow'
)


def parse_host_keys(text: str) -> dict[str, tuple[str, int]]:
    """`<file> <bits> <type>` lines (HOST_KEYS_SCRIPT) -> {file: (type, bits)}."""
    keys = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            keys[parts[0]] = (parts[2].strip("()").lower(), int(parts[1]))
    return keys


def parse_moduli_state(text: str) -> tuple[int, int]:
    """`<strong> <weak>` counts of moduli lines in MODULI_FILE (MODULI_STATE_SCRIPT)."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return (0, 0)
    return int(parts[0]), int(parts[1])


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl key ...` output: `key = value` lines (an unknown key prints nothing on stdout)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            values[key.strip()] = value.strip()
    return values


def parse_shadow_ages(text: str) -> dict[str, tuple[bool, str, str, str]]:
    """`/etc/shadow` lines -> {user: (has_password, max, min, warn)}. Read as root; only the
    password field's first character leaves the host's probe (PASSWORDS_SCRIPT)."""
    users = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 6:
            users[fields[0]] = (fields[1] == "y", fields[4], fields[3], fields[5])
    return users


def parse_lynis_report(text: str) -> dict:
    """The report's hardening index, test count, warnings and suggestions."""
    values: dict[str, Any] = {"warnings": [], "suggestions": []}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "hardening_index":
            values["hardening_index"] = int(value)
        elif key == "lynis_tests_done":
            values["tests"] = int(value)
        elif key in ("warning[]", "suggestion[]"):
            test, message = [*value.split("|"), ""][:2]
            values[f"{key[:-2]}s"].append({"test": test, "message": message})
    return values


LYNIS_TEST = re.compile(r"Performing test ID (\S+)")
LYNIS_POINTS = re.compile(
    r"Hardening: assigned (?:partial|maximum) number of hardening points(?: for this item)?"
    r" \((?:(\d+) of )?(\d+)\)\. Currently having (\d+) points \(out of (\d+)\)"
)


def parse_lynis_points(log: str) -> dict:
    """From lynis's log: the points and their maximum behind the index, and every test that
    got less than its maximum (what stands between the host and a higher index)."""
    values: dict[str, Any] = {"points": 0, "total": 0, "partial": []}
    test = "?"
    for line in log.splitlines():
        if found := LYNIS_TEST.search(line):
            test = found.group(1)
        elif found := LYNIS_POINTS.search(line):
            got, most, values["points"], values["total"] = found.groups()
            values["points"], values["total"] = int(values["points"]), int(values["total"])
            if got is not None and int(got) < int(most):
                values["partial"].append({"test": test, "points": int(got), "max": int(most)})
    return values


def parse_security_updates(text: str) -> tuple[str, ...]:
    """Packages `apt-get -s upgrade` would take from a security archive (`Inst` lines)."""
    found = []
    for line in text.splitlines():
        if line.startswith("Inst ") and "-security" in line.split("(", 1)[-1]:
            found.append(line.split()[1])
    return tuple(found)


def _container(text: str) -> str:
    return text.strip() or "none"


def container() -> Fact:
    """systemd-detect-virt's container type ("none" on a droplet or a VM)."""
    return Fact("container", ["systemd-detect-virt", "--container"], _container)


def ssh_host_keys(key_dir: str) -> Fact:
    return Fact("host_keys", shell.script(HOST_KEYS_SCRIPT, key_dir), parse_host_keys)


def ssh_kex() -> Fact:
    """The key exchanges this host's OpenSSH knows (openssh-server depends on the very same
    openssh-client version, so the client's list is the server's)."""
    return Fact("ssh_kex", ["ssh", "-Q", "kex"], lambda text: frozenset(text.split()))


def moduli_state(path: str, min_bits: int) -> Fact:
    return Fact("moduli", shell.script(MODULI_STATE_SCRIPT, path, min_bits), parse_moduli_state)


def sysctl_values(keys: Iterable[str]) -> Fact:
    return Fact("sysctl", ["sysctl", *keys], parse_sysctl)


def text_file(key: str, path: str) -> Fact:
    """A distribution file provisioning edits line by line (login.defs, fstab): its content."""
    return Fact(key, ["cat", path])


def certbot_renewal(path: str) -> Fact:
    """certbot's renewal configuration for the site's certificate (empty when none yet)."""
    return Fact("certbot_renewal", ["cat", path])


def passwords() -> Fact:
    return Fact("passwords", shell.script(PASSWORDS_SCRIPT), parse_shadow_ages)


def modes(paths: Iterable[str]) -> Fact:
    """`path mode owner group` (or `path absent`) of files and directories."""
    return Fact("modes", shell.script(DIRS_SCRIPT, *paths), parse_dirs)


# `path mode owner group` of each program's real file (an alternatives link resolved), if present.
RESOLVED_MODES_SCRIPT = (
    'for p in "$@"; do t=$(readlink -f "$p") && [ -f "$t" ] && stat -c "%n %a %U %G" "$t"; done'
)


def compilers(paths: Iterable[str]) -> Fact:
    """The compilers present (binutils' assembler comes with needrestart), by their real file."""
    return Fact("compilers", shell.script(RESOLVED_MODES_SCRIPT, *paths), parse_dirs)


def baseline_present(paths: Iterable[str]) -> Fact:
    """Which of the baseline's generated files exist (AIDE's database)."""
    return Fact("baseline_present", shell.script(PRESENT_SCRIPT, *paths), parse_present)


def security_updates() -> Fact:
    """What apt would upgrade from the security archive, with the lists the host has (the
    packages step and apt's daily timer refresh them)."""
    command = ["apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade"]
    return Fact("security_updates", command, parse_security_updates, read_by="security updates")


@dataclass(frozen=True)
class HostFacts:
    """Everything provisioning knows about one host, from one batched probe."""

    os_release: str = ""
    resolv_conf: str = ""
    ssh_client: str = ""
    packages: frozenset[str] = frozenset()
    files: dict[str, str] = field(default_factory=dict)
    dirs: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    present: frozenset[str] = frozenset()
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    user: dict[str, str] | None = None
    env_file: str = ""
    ufw: str = ""
    job_units: frozenset[str] = frozenset()  # scheduled jobs' unit files (names) on the host
    web_unit: str = ""  # the installed <app>@.service: did the app's command change?
    certbot_renewal: str = ""  # /etc/letsencrypt/renewal/<domain>.conf
    # The app user's (USAGE, CREATE) on schema public, read through the cluster admin on the
    # first host only (deploy.provision.database); None: not read on this host.
    db_privileges: tuple[bool, bool] | None = None
    # The host baseline's facts (read by the hardening steps in operations.py).
    container: str = "none"
    host_keys: dict[str, tuple[str, int]] = field(default_factory=dict)
    ssh_kex: frozenset[str] = frozenset()
    moduli: tuple[int, int] = (0, 0)
    sysctl: dict[str, str] = field(default_factory=dict)
    login_defs: str = ""
    fstab: str = ""
    passwords: dict[str, tuple[bool, str, str, str]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    security_updates: tuple[str, ...] = ()
    sysstat_default: str = ""
    compilers: dict[str, str] = field(default_factory=dict)
    baseline_present: frozenset[str] = frozenset()

    def unit(self, name: str) -> dict[str, str]:
        full = name if "." in name else f"{name}.service"
        return self.units.get(full, {})

    def active(self, name: str) -> bool:
        return self.unit(name).get("ActiveState") == "active"

    @classmethod
    def from_gathered(cls, values: dict[str, Any]) -> HostFacts:
        return cls(**values)
