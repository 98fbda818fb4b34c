"""What a provisioned web host looks like, as data: packages, OS config files, firewall rules.

Pure functions only; ``operations.py`` compares this with the host's facts and plans what
differs. The Nginx and systemd files come from the templates (``templates.py``); the files here
are the operating-system hardening that has no template variables worth the name.
"""

from __future__ import annotations

import re

from deploy import shell

# The reader of env_file_content's files is the backup job's: it runs on hosts with nothing but
# the standard library and reads these files too; one reader for the one format.
from deploy.backup.on_host.environment import parse_env_file as parse_env_file
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
# openssl: certbot's deploy hook checks the certificate and key it installs for Nginx (and `fab
# status` reads the expiry) with the openssl command, which a minimal image may lack.
TLS_PACKAGES = ("certbot", "openssl")
# psycopg ships its own libpq in the binary wheel, so the host needs no PostgreSQL client library.


def packages_for(tls: bool) -> tuple[str, ...]:
    return BASE_PACKAGES + HARDENING_PACKAGES + (TLS_PACKAGES if tls else ())


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


# Mozilla's OpenSSH "modern" guidelines and ssh-audit's hardening guide for Debian 12; the
# algorithm lists are SSHD_ALGORITHMS (below), exactly what SSH_AUDIT_POLICY wants.
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
# Dead peers are found by ClientAlive (authenticated, not spoofable), not TCP keepalives.
TCPKeepAlive no
Compression no
# Key fingerprints of logins in the journal, for fail2ban and audits.
LogLevel VERBOSE
X11Forwarding no
AllowAgentForwarding no
PermitTunnel no
# Provisioning reaches the database through a local forward (deploy/provision/database.py);
# nothing forwards the other way.
AllowTcpForwarding local
GatewayPorts no
PermitUserEnvironment no
# Fabric keeps an SFTP session open beside its commands; 4 leaves room, lynis's best is 2.
MaxSessions 4
UseDNS no
Banner {banner}
ModuliFile {moduli}
RequiredRSASize {rsa_bits}
{crypto}"""
# fail2ban reads jail.conf, jail.d/*.conf, then jail.local: the package's files stay pristine and
# this one wins over them (lynis looks for a jail.local). Hosts provisioned before have the
# settings in jail.d, which is removed when jail.local is written.
FAIL2BAN_JAIL_PATH = "/etc/fail2ban/jail.local"
RETIRED_FAIL2BAN_JAILS = ("/etc/fail2ban/jail.d/dropstack.local",)
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
            sshd_settings(ssh_user),
            "0600",
        ),
        "fail2ban": RemoteFile(
            FAIL2BAN_JAIL_PATH,
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


def app_database_url(db_uri: str, ca_path: str) -> str:
    """The inventory's URI, upgraded to verify the server against the cluster's CA."""
    base, _, query = db_uri.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith(("sslmode=", "sslrootcert="))]
    params += ["sslmode=verify-full", f"sslrootcert={ca_path}"]
    return f"{base}?{'&'.join(params)}"


# --- host baseline (docs/security.md "Host baseline"): lynis, ssh-audit, CIS-derived checks ---

# The ssh-audit policy the sshd settings below meet, by its exact built-in name (`ssh-audit -L`).
# Version 3 is the newest for Debian 12; it wants sntrup761x25519-sha512, which Debian's
# OpenSSH 9.2p1-2+deb12u10 has (security archive), hence the openssh upgrade step.
SSH_AUDIT_POLICY = "Hardened Debian 12 (version 3)"
HOST_KEY_DIR = "/etc/ssh"
# type -> (file, bits). sshd offers exactly these; ECDSA and DSA keys are deleted.
HOST_KEYS = {"ed25519": ("ssh_host_ed25519_key", 256), "rsa": ("ssh_host_rsa_key", 4096)}
UNWANTED_HOST_KEYS = ("ssh_host_ecdsa_key", "ssh_host_dsa_key")
# Group-exchange moduli of at least 3072 bits (the policy's dh_modulus_sizes). A filtered copy
# beside Debian's file, named by ModuliFile: the packaged /etc/ssh/moduli stays pristine, so an
# openssh-server security update never stops on a conffile prompt (unattended-upgrades skips such
# packages).
MODULI_SOURCE = "/etc/ssh/moduli"
MODULI_FILE = "/etc/ssh/moduli.dropstack"
MODULI_MIN_BITS = 3071  # the moduli file's size column is the modulus length minus one
BANNER_PATH = "/etc/issue.net"

# Exactly the policy's lists, in its order: ssh-audit compares them as sequences. The server
# appends kex-strict-s-v00@openssh.com (the Terrapin countermeasure) itself.
# The key types the policy accepts, for host-based and public-key logins alike, in its order.
ACCEPTED_KEY_ALGORITHMS = (
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "ssh-ed25519",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256-cert-v01@openssh.com",
    "rsa-sha2-256",
)
SSHD_ALGORITHMS = {
    "KexAlgorithms": (
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group-exchange-sha256",
    ),
    "Ciphers": (
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-gcm@openssh.com",
        "aes128-ctr",
    ),
    "MACs": (
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "umac-128-etm@openssh.com",
    ),
    "HostKeyAlgorithms": (
        "sk-ssh-ed25519-cert-v01@openssh.com",
        "ssh-ed25519-cert-v01@openssh.com",
        "rsa-sha2-512-cert-v01@openssh.com",
        "rsa-sha2-256-cert-v01@openssh.com",
        "sk-ssh-ed25519@openssh.com",
        "ssh-ed25519",
        "rsa-sha2-512",
        "rsa-sha2-256",
    ),
    "CASignatureAlgorithms": (
        "sk-ssh-ed25519@openssh.com",
        "ssh-ed25519",
        "rsa-sha2-512",
        "rsa-sha2-256",
    ),
    "GSSAPIKexAlgorithms": ("gss-curve25519-sha256-", "gss-group16-sha512-"),
    "HostbasedAcceptedAlgorithms": ACCEPTED_KEY_ALGORITHMS,
    "PubkeyAcceptedAlgorithms": ACCEPTED_KEY_ALGORITHMS,
}
REQUIRED_RSA_BITS = 3072  # sshd's RequiredRSASize: smaller RSA keys, host or user, are refused
# The key types of authorized keys that PubkeyAcceptedAlgorithms above still accepts: a deploy
# key of another type (ECDSA, DSA) would be refused after the reload, so provisioning stops first.
ACCEPTED_USER_KEY_TYPES = ("ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ssh-rsa")


def sshd_settings(
    ssh_user: str,
    *,
    key_dir: str = HOST_KEY_DIR,
    moduli: str = MODULI_FILE,
    banner: str = BANNER_PATH,
) -> str:
    """The drop-in sshd reads before Debian's defaults (the first value of a keyword wins).
    The paths are parameters for the loopback test, which runs a real sshd on its own files."""
    host_keys = "".join(f"HostKey {key_dir}/{name}\n" for name, _ in HOST_KEYS.values())
    crypto = "".join(f"{k} {','.join(v)}\n" for k, v in SSHD_ALGORITHMS.items())
    return SSHD_HARDENING.format(
        ssh_user=ssh_user,
        banner=banner,
        moduli=moduli,
        rsa_bits=REQUIRED_RSA_BITS,
        crypto=host_keys + crypto,
    )


def user_key_problem(public_key: str) -> str | None:
    """None when the hardened sshd still accepts this authorized key, else why not (one line)."""
    parts = public_key.split()
    if len(parts) < 2:
        return f"{public_key[:30]!r} is not an OpenSSH public key line"
    kind, blob = parts[0], parts[1]
    if kind not in ACCEPTED_USER_KEY_TYPES:
        allowed = ", ".join(ACCEPTED_USER_KEY_TYPES)
        return f"a {kind} key would be refused by the hardened sshd (allowed: {allowed})"
    if kind == "ssh-rsa":
        bits = rsa_key_bits(blob)
        if bits < REQUIRED_RSA_BITS:
            return f"a {bits}-bit RSA key is below RequiredRSASize {REQUIRED_RSA_BITS}"
    return None


def rsa_key_bits(blob_b64: str) -> int:
    """The modulus length of an ssh-rsa public key blob (RFC 4253: string, mpint e, mpint n)."""
    import base64
    import struct

    data = base64.b64decode(blob_b64)
    fields, offset = [], 0
    for _ in range(3):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        fields.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return int.from_bytes(fields[2], "big").bit_length()


def host_key_commands(keys: dict[str, tuple[str, int]]) -> tuple[list[list[str]], list[str]]:
    """What brings /etc/ssh's host keys to ed25519 + RSA 4096: (commands, detail lines).

    A key is made under a temporary name and moved into place, so sshd never finds half a key;
    the ed25519 key, which the operator's known_hosts pins, is only ever created, never replaced.
    """
    commands, detail = [], []
    for name in UNWANTED_HOST_KEYS:
        if name in keys:
            path = f"{HOST_KEY_DIR}/{name}"
            commands.append(["rm", "-f", path, f"{path}.pub"])
            detail.append(f"- {path} ({keys[name][0]} {keys[name][1]} bits)")
    for kind, (name, bits) in HOST_KEYS.items():
        have = keys.get(name)
        if have and (kind == "ed25519" or have[1] >= bits):
            continue
        path = f"{HOST_KEY_DIR}/{name}"
        commands.append(new_host_key_command(kind, bits, path))
        was = f"{have[1]} bits" if have else "absent"
        detail.append(f"~ {path}: {was} -> {kind} {bits} bits (the host's fingerprint changes)")
    return commands, detail


def new_host_key_command(kind: str, bits: int, path: str) -> list[str]:
    staged = f"{path}.dropstack-new"
    size = ["-b", str(bits)] if kind == "rsa" else []
    return shell.chain(
        ["rm", "-f", staged, f"{staged}.pub"],
        ["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-C", "", "-f", staged],
        ["mv", "-f", f"{staged}.pub", f"{path}.pub"],
        ["mv", "-f", staged, path],
    )


def moduli_command() -> list[str]:
    """Write MODULI_FILE: Debian's moduli of at least 3072 bits (comments kept)."""
    return shell.script(
        'awk \'/^#/ || $5 >= m\' m="$1" "$2" > "$3.dropstack-new" && '
        'chmod 644 "$3.dropstack-new" && mv -f "$3.dropstack-new" "$3"',
        MODULI_MIN_BITS,
        MODULI_SOURCE,
        MODULI_FILE,
    )


# Kernel parameters. The network ones are per network namespace, so a container (the local
# droplet) sets them too; the kernel.*, fs.* and global ones a container cannot write
# (/proc/sys is read-only there), so they are applied on a droplet and only installed in one.


# The host baseline's data lives in desired_baseline.py; re-exported so callers read one module.
from deploy.provision.desired_baseline import (  # noqa: E402, F401
    ACCT_DROPIN,
    ACCT_DROPIN_PATH,
    AIDE_CHECK_SERVICE,
    AIDE_CHECK_TIMER,
    AIDE_CHECK_UNIT,
    AIDE_CONF,
    AIDE_CONF_PATH,
    AIDE_DB,
    AUDIT_RULES,
    AUDIT_RULES_PATH,
    CHKROOTKIT_DROPIN,
    CHKROOTKIT_DROPIN_PATH,
    CHKROOTKIT_TIMER,
    COMPILER_MODE,
    COMPILERS,
    CORE_LIMITS,
    COREDUMP_CONF,
    CRON_MODES,
    FSTAB_SHM,
    HARDENING_PACKAGES,
    HOME_MODE,
    LOGIN_BANNER,
    LOGIN_DEFS,
    LOGIN_DEFS_PATH,
    MODPROBE_PATH,
    NEEDRESTART_CONF,
    NEEDRESTART_CONF_PATH,
    PASSWORD_POLICY_DAYS,
    PWQUALITY,
    SHM,
    SHM_OPTIONS,
    SSHD_CONFIG_MODES,
    SYSCTL_KERNEL,
    SYSCTL_KERNEL_PATH,
    SYSCTL_NETWORK,
    SYSCTL_NETWORK_PATH,
    SYSSTAT_DEFAULT_PATH,
    SYSSTAT_UNITS,
    TMOUT_PATH,
    TMOUT_PROFILE,
    TMOUT_SECONDS,
    TMP_MOUNT,
    TMP_MOUNT_PATH,
    UNUSED_MODULES,
    aide_init_command,
    compiler_override_command,
    edit_fstab_shm,
    edit_login_defs,
    edit_sysstat_default,
    modprobe_file,
    sysctl_differences,
    sysctl_file,
    upgrade_packages_command,
)
