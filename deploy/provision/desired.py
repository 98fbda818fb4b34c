"""What a provisioned web host looks like, as data: packages, OS config files, firewall rules.

Pure functions only; ``operations.py`` compares this with the host's facts and plans what
differs. The Nginx and systemd files come from the templates (``templates.py``); the files here
are the operating-system hardening that has no template variables worth the name.
"""

from __future__ import annotations

import re

from deploy import shell
from deploy.provision.files import RemoteFile

SUPPORTED_DISTROS = {"debian": ("12",), "ubuntu": ("22.04", "24.04")}

BASE_PACKAGES = (
    "nginx",  # the reverse proxy in front of Gunicorn
    "python3-venv",  # each release gets its own virtualenv
    "curl",  # health checks over the app's unix socket
    "ufw",  # host firewall, defence in depth behind the cloud firewall
    "fail2ban",
    "python3-systemd",  # fail2ban's journald backend (Debian 12 has no /var/log/auth.log)
    "unattended-upgrades",
    "systemd-timesyncd",  # NTP
    "ca-certificates",
)
TLS_PACKAGES = ("certbot",)
# psycopg ships its own libpq in the binary wheel, so the host needs no PostgreSQL client library.


def packages_for(tls: bool) -> tuple[str, ...]:
    return BASE_PACKAGES + (TLS_PACKAGES if tls else ())


def check_distro(os_release: str) -> str | None:
    """None when /etc/os-release describes a supported system, else what is wrong (one line)."""
    fields = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', os_release, flags=re.M))
    distro, version = fields.get("ID", "?"), fields.get("VERSION_ID", "?")
    allowed = SUPPORTED_DISTROS.get(distro)
    if allowed and version in allowed:
        return None
    supported = ", ".join(f"{d} {'/'.join(v)}" for d, v in SUPPORTED_DISTROS.items())
    return f"{distro} {version} is not supported; dropstack provisions {supported}"


def install_packages_command(packages: list[str]) -> list[str]:
    noninteractive = ["env", "DEBIAN_FRONTEND=noninteractive"]
    return shell.chain(
        [*noninteractive, "apt-get", "update", "-q"],
        [*noninteractive, "apt-get", "install", "-y", "-q", "--no-install-recommends",
         "-o", "Dpkg::Options::=--force-confold", *packages],
    )  # fmt: skip


# Mozilla's OpenSSH "modern" guidelines, trimmed to what OpenSSH 9.2 (Debian 12) offers.
SSHD_HARDENING = """\
# Managed by dropstack (fab provision). Validated with `sshd -t` before sshd reloads.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PubkeyAuthentication yes
AuthenticationMethods publickey
AllowUsers {ssh_user}
MaxAuthTries 3
LoginGraceTime 20
ClientAliveInterval 300
ClientAliveCountMax 2
X11Forwarding no
AllowAgentForwarding no
PermitTunnel no
{crypto}"""
SSHD_ALGORITHMS = {
    "KexAlgorithms": (
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
    ),
    "Ciphers": (
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
    ),
    "MACs": (
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
        "umac-128-etm@openssh.com",
    ),
    "HostKeyAlgorithms": ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256"),
}

FAIL2BAN_JAIL = """\
# Managed by dropstack (fab provision).
[DEFAULT]
# Debian 12 logs to journald only; the file backend would find no auth.log and the jail would fail.
backend = systemd
banaction = ufw
# Never ban the operator's own address (the one provisioning connects from): a typo'd key or a
# test of password refusal must not lock the operator out of their own host.
ignoreip = 127.0.0.1/8 ::1{operator}

[sshd]
enabled = true
maxretry = 5
findtime = 10m
bantime = 1h
"""

APT_PERIODIC = """\
// Managed by dropstack (fab provision): refresh lists and apply security updates daily.
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
"""

JOURNALD = """\
# Managed by dropstack (fab provision): keep logs across reboots, bounded in size.
[Journal]
Storage=persistent
SystemMaxUse=500M
MaxRetentionSec=1month
"""


def os_files(ssh_user: str, operator_ip: str = "") -> dict[str, RemoteFile]:
    """The OS hardening files, keyed by the service each one configures."""
    return {
        "sshd": RemoteFile(
            "/etc/ssh/sshd_config.d/20-dropstack.conf",
            SSHD_HARDENING.format(
                ssh_user=ssh_user,
                crypto="".join(f"{k} {','.join(v)}\n" for k, v in SSHD_ALGORITHMS.items()),
            ),
        ),
        "fail2ban": RemoteFile(
            "/etc/fail2ban/jail.d/dropstack.local",
            FAIL2BAN_JAIL.format(operator=f" {operator_ip}" if operator_ip else ""),
        ),
        "apt": RemoteFile("/etc/apt/apt.conf.d/20auto-upgrades", APT_PERIODIC),
        "journald": RemoteFile("/etc/systemd/journald.conf.d/50-dropstack.conf", JOURNALD),
    }


# Host firewall: what ufw allows inbound. SSH is not rate-limited with ufw's `limit` (6 new
# connections in 30 s): Fabric, testinfra and CI open more than that from one address and would
# lock themselves out. The cloud firewall already admits SSH only from adminCidrs, and fail2ban
# bans addresses that fail to log in.
UFW_RULES = (("allow", "22/tcp"), ("allow", "80/tcp"), ("allow", "443/tcp"))


def ufw_is_as_wanted(status_verbose: str) -> bool:
    """True when `ufw status verbose` shows an active firewall denying inbound by default
    with exactly the wanted rules, for IPv4 and IPv6, and nothing else."""
    if "Status: active" not in status_verbose or "deny (incoming)" not in status_verbose:
        return False
    _, separator, table = status_verbose.partition("\n--")
    if not separator:
        return False
    found = set()
    for line in table.splitlines()[1:]:
        if not line.strip():
            continue
        match = re.fullmatch(
            r"(\d+/tcp)( \(v6\))?\s+(ALLOW|LIMIT) IN\s+Anywhere( \(v6\))?", line.strip()
        )
        if not match:
            return False  # a rule we did not ask for
        found.add((match.group(3).lower(), match.group(1), bool(match.group(2))))
    wanted = {(action, port, v6) for action, port in UFW_RULES for v6 in (False, True)}
    return found == wanted


def ufw_commands() -> list[list[str]]:
    """Reset ufw to exactly our policy. `--force` skips the interactive confirmation."""
    return [
        ["ufw", "--force", "reset"],
        ["ufw", "default", "deny", "incoming"],
        ["ufw", "default", "allow", "outgoing"],
        *(["ufw", action, port] for action, port in UFW_RULES),
        ["ufw", "--force", "enable"],
    ]


def env_file_content(settings: dict[str, str]) -> str:
    """A systemd EnvironmentFile: KEY=value lines, values quoted when they need it."""
    lines = ["# Managed by dropstack (fab provision). Secrets: mode 0640 root:app, never printed."]
    for key, value in settings.items():
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise ValueError(f"environment variable name {key!r} must be UPPER_SNAKE_CASE")
        if re.fullmatch(r"[A-Za-z0-9_./:@?=&%+,-]*", value):
            lines.append(f"{key}={value}")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def parse_env_file(text: str) -> dict[str, str]:
    """Read back what env_file_content wrote (enough to keep SECRET_KEY across provisions).

    Hand-written rather than python-dotenv: the file is systemd's EnvironmentFile format, whose
    quoting differs from dotenv's, and the host suite ships this very function to the host,
    where no third-party package is installed."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        values[key] = value
    return values


def app_database_url(db_uri: str, ca_path: str) -> str:
    """The inventory's URI, upgraded to verify the server against the cluster's CA."""
    base, _, query = db_uri.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith(("sslmode=", "sslrootcert="))]
    params += ["sslmode=verify-full", f"sslrootcert={ca_path}"]
    return f"{base}?{'&'.join(params)}"
