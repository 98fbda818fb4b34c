"""The host baseline's desired state as data: kernel parameters, banner, core dumps, password
policy, audit rules, unused modules, mount options, file modes (docs/security.md "Host baseline").
Pure; deploy/provision/baseline.py plans the changes from it."""

from __future__ import annotations

SYSCTL_NETWORK = {
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.default.accept_redirects": "0",
    "net.ipv4.conf.all.secure_redirects": "0",
    "net.ipv4.conf.default.secure_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.conf.all.accept_source_route": "0",
    "net.ipv4.conf.default.accept_source_route": "0",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.default.rp_filter": "1",
    "net.ipv4.conf.all.log_martians": "1",
    "net.ipv4.conf.default.log_martians": "1",
    "net.ipv4.icmp_echo_ignore_broadcasts": "1",
    "net.ipv4.icmp_ignore_bogus_error_responses": "1",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv6.conf.all.accept_redirects": "0",
    "net.ipv6.conf.default.accept_redirects": "0",
    "net.ipv6.conf.all.accept_source_route": "0",
    "net.ipv6.conf.default.accept_source_route": "0",
}
SYSCTL_KERNEL = {
    "kernel.kptr_restrict": "2",
    "kernel.dmesg_restrict": "1",
    "kernel.perf_event_paranoid": "3",
    "kernel.unprivileged_bpf_disabled": "1",
    "kernel.yama.ptrace_scope": "1",
    "kernel.sysrq": "0",
    "kernel.core_uses_pid": "1",
    "kernel.randomize_va_space": "2",
    "fs.suid_dumpable": "0",
    "fs.protected_fifos": "2",
    "fs.protected_regular": "2",
    "fs.protected_hardlinks": "1",
    "fs.protected_symlinks": "1",
    "dev.tty.ldisc_autoload": "0",
    "net.core.bpf_jit_harden": "2",
}
SYSCTL_NETWORK_PATH = "/etc/sysctl.d/60-dropstack-network.conf"
SYSCTL_KERNEL_PATH = "/etc/sysctl.d/60-dropstack-kernel.conf"


def sysctl_file(values: dict[str, str], why: str) -> str:
    lines = [f"# Managed by dropstack (fab provision): {why}"]
    return "\n".join([*lines, *(f"{key} = {value}" for key, value in values.items())]) + "\n"


def sysctl_differences(wanted: dict[str, str], running: dict[str, str]) -> list[str]:
    """The wanted keys whose running value differs (multi-value keys compare word by word)."""
    return [k for k, v in wanted.items() if running.get(k, "").split() != v.split()]


LOGIN_BANNER = """\
Authorised access only. This system is private property: activity on it is monitored and
logged, and evidence of unauthorised use may be given to law enforcement. By continuing you
consent to these terms.
"""

CORE_LIMITS = """\
# Managed by dropstack (fab provision): no process may write a core dump (memory can hold
# secrets: the app's SECRET_KEY, database passwords).
* hard core 0
* soft core 0
root hard core 0
"""
COREDUMP_CONF = """\
# Managed by dropstack (fab provision): systemd-coredump, if ever installed, keeps nothing.
[Coredump]
Storage=none
ProcessSizeMax=0
"""

# login.defs is the distribution's file (no drop-in directory in Debian 12's shadow): these keys
# are set in place, every other line is kept as it is.
LOGIN_DEFS_PATH = "/etc/login.defs"
PASSWORD_POLICY_DAYS = (365, 1, 14)  # max, min, warn: login.defs, and chage for existing accounts
LOGIN_DEFS = {
    **dict(
        zip(
            ("PASS_MAX_DAYS", "PASS_MIN_DAYS", "PASS_WARN_AGE"),
            (str(days) for days in PASSWORD_POLICY_DAYS),
            strict=True,
        )
    ),
    "UMASK": "027",
    "SHA_CRYPT_MIN_ROUNDS": "65536",
    "SHA_CRYPT_MAX_ROUNDS": "65536",
    "ENCRYPT_METHOD": "SHA512",
}


def edit_login_defs(text: str, wanted: dict[str, str] = LOGIN_DEFS) -> str:
    """``text`` with each wanted key's active line set to its value (the first active line
    rewritten, later duplicates dropped); keys absent from the file are appended."""
    seen: set[str] = set()
    out = []
    for line in text.splitlines():
        words = line.split()
        key = words[0] if words and not line.lstrip().startswith("#") else None
        if key in wanted:
            if key in seen:
                continue
            seen.add(key)
            out.append(f"{key}\t{wanted[key]}")
        else:
            out.append(line)
    missing = [k for k in wanted if k not in seen]
    if missing:
        out.append("# Set by dropstack (fab provision):")
        out += [f"{k}\t{wanted[k]}" for k in missing]
    return "\n".join(out) + "\n"


PWQUALITY = """\
# Managed by dropstack (fab provision). No account logs in with a password (SSH takes keys
# only), but any password set later (console, sudo) must be strong.
minlen = 14
dcredit = -1
ucredit = -1
lcredit = -1
ocredit = -1
retry = 3
enforce_for_root
"""


AUDIT_RULES_PATH = "/etc/audit/rules.d/dropstack.rules"
AUDIT_RULES = """\
# Managed by dropstack (fab provision): who used privilege, and who changed who may.
-w /usr/bin/sudo -p x -k privileged
-w /usr/bin/su -p x -k privileged
-w /etc/sudoers -p wa -k privilege-config
-w /etc/sudoers.d/ -p wa -k privilege-config
-w /etc/passwd -p wa -k identity
-w /etc/shadow -p wa -k identity
-w /etc/group -p wa -k identity
-w /etc/gshadow -p wa -k identity
-w /usr/bin/passwd -p x -k passwd-change
-w /usr/sbin/usermod -p x -k identity
-w /etc/ssh/sshd_config -p wa -k sshd-config
-w /etc/ssh/sshd_config.d/ -p wa -k sshd-config
-a always,exit -F arch=b64 -S execve -C uid!=euid -F euid=0 -k setuid-root
-a always,exit -F arch=b32 -S execve -C uid!=euid -F euid=0 -k setuid-root
"""

MODPROBE_PATH = "/etc/modprobe.d/dropstack-blacklist.conf"
# Filesystems and protocols a web droplet never uses: each is one more kernel attack surface
# that loads on demand. `install X /bin/true` is the form lynis and CIS look for.
UNUSED_MODULES = (
    "dccp",
    "sctp",
    "rds",
    "tipc",
    "cramfs",
    "freevxfs",
    "hfs",
    "hfsplus",
    "jffs2",
    "udf",
    "usb-storage",
    "firewire-core",
)


def modprobe_file() -> str:
    lines = ["# Managed by dropstack (fab provision): modules a web droplet never loads."]
    return "\n".join([*lines, *(f"install {m} /bin/true" for m in UNUSED_MODULES)]) + "\n"


# /tmp on a droplet: Debian 12 ships tmp.mount masked-off (disabled); this drop-in plus
# `systemctl enable tmp.mount` gives a tmpfs /tmp without device files, setuid or execution.
# noexec is deliberately left off /tmp: pip and apt run build and maintainer scripts there.
TMP_MOUNT_PATH = "/etc/systemd/system/tmp.mount.d/dropstack.conf"
TMP_MOUNT = """\
# Managed by dropstack (fab provision).
[Mount]
Options=mode=1777,strictatime,nosuid,nodev,size=50%,nr_inodes=1m
"""
# Not a temporary file: the shared-memory mount whose options are hardened.
SHM = "/dev/shm"  # noqa: S108
SHM_OPTIONS = ("nodev", "nosuid", "noexec")
# /dev/shm: a systemd drop-in cannot remount it (systemd mounts it itself), an fstab line can.
FSTAB_SHM = f"tmpfs {SHM} tmpfs defaults,nodev,nosuid,noexec 0 0"


def edit_fstab_shm(fstab: str) -> str:
    """``fstab`` with /dev/shm mounted nodev,nosuid,noexec: an existing /dev/shm line is
    replaced, else FSTAB_SHM is appended; every other line is kept."""
    lines = [line for line in fstab.splitlines() if line.split()[1:2] != [SHM]]
    current = [line for line in fstab.splitlines() if line.split()[1:2] == [SHM]]
    if current == [FSTAB_SHM]:
        return fstab
    return "\n".join([*lines, FSTAB_SHM]) + "\n"


def upgrade_packages_command(packages: list[str]) -> list[str]:
    """Upgrade installed packages only (never installs a new one), keeping local configs."""
    return [
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-q",
        "--only-upgrade",
        "-o",
        "Dpkg::Options::=--force-confold",
        *packages,
    ]


CRON_MODES = {
    "/etc/crontab": "600",
    **{f"/etc/cron.{d}": "700" for d in ("d", "hourly", "daily", "weekly", "monthly")},
}
SSHD_CONFIG_MODES = {"/etc/ssh/sshd_config": "600", "/etc/ssh/sshd_config.d": "700"}

# Packages lynis suggests that cost nothing at run time. needrestart and apt-listbugs are left
# out: both prompt during apt runs (needrestart may restart services unattended).
HARDENING_PACKAGES = (
    "auditd",  # the audit log of privilege use (AUDIT_RULES)
    "libpam-pwquality",  # password strength (PWQUALITY)
    "libpam-tmpdir",  # a private $TMPDIR per login session
    "debsums",  # verify installed files against the packages' checksums
    "apt-show-versions",  # which packages have updates (patch management)
    "apt-listchanges",  # changelogs of upgrades, in the apt log
)
