"""The host baseline's desired state as data: kernel parameters, banner, core dumps, password
policy, audit rules, unused modules, mount options, file modes (docs/security.md "Host baseline").
Pure; deploy/provision/baseline.py plans the changes from it."""

from __future__ import annotations

from deploy import shell

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

# Packages lynis suggests that cost nothing at run time. apt-listbugs is left out: it asks
# bugs.debian.org during every apt run and prompts when a bug is found (docs/security.md).
HARDENING_PACKAGES = (
    "auditd",  # the audit log of privilege use (AUDIT_RULES)
    "libpam-pwquality",  # password strength (PWQUALITY)
    "libpam-tmpdir",  # a private $TMPDIR per login session
    "debsums",  # verify installed files against the packages' checksums
    "apt-show-versions",  # which packages have updates (patch management)
    "apt-listchanges",  # changelogs of upgrades, in the apt log
    "acct",  # process accounting: which commands ran, by whom (lastcomm, sa)
    "sysstat",  # sar's history of CPU, memory, disk and network, every 10 minutes
    "chkrootkit",  # a daily rootkit scan, its findings in the journal (CHKROOTKIT_DROPIN)
    "aide",  # file integrity of /etc and the system's programs, checked daily (AIDE_CONF)
    "needrestart",  # after upgrades, lists the daemons still running replaced libraries
)


# --- lynis's remaining findings, fixed where a droplet should have the setting ---

# needrestart runs after every apt/dpkg run (unattended upgrades too). Debian's default mode
# asks, and with no terminal it restarts what it finds; a production host restarts its services
# when the operator decides (a release, `fab provision`), so it only lists them. Written before
# the package is installed: its first run is the very apt run that installs it.
NEEDRESTART_CONF_PATH = "/etc/needrestart/conf.d/dropstack.conf"
NEEDRESTART_CONF = """\
# Managed by dropstack (fab provision): list the services that run replaced libraries, in the
# apt and unattended-upgrades logs; never restart one (l = list only).
$nrconf{restart} = 'l';
"""

# needrestart depends on binutils, whose assembler lynis counts as a compiler on the host. Nothing
# on a web host assembles code (pip installs wheels; there is no C compiler), so it is executable
# by root only, through dpkg-statoverride so that binutils' security updates keep the mode.
COMPILERS = ("/usr/bin/as", "/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang")
COMPILER_MODE = "750"


def compiler_override_command(path: str) -> list[str]:
    """Restrict one compiler (the resolved file, not the alternatives link) to root, now and
    across package upgrades; an existing override of another mode is replaced."""
    return shell.script(
        'if dpkg-statoverride --list "$1" >/dev/null; then dpkg-statoverride --remove "$1"; fi; '
        'dpkg-statoverride --update --add root root "$2" "$1"',
        path,
        COMPILER_MODE,
    )


# Process accounting: the kernel records every process that exits. A container cannot switch it
# on (the acct() call needs CAP_SYS_PACCT, which systemd-nspawn does not grant), so the unit is
# skipped there the way Debian skips systemd-timesyncd, instead of failing at every boot.
ACCT_DROPIN_PATH = "/etc/systemd/system/acct.service.d/dropstack.conf"
ACCT_DROPIN = """\
# Managed by dropstack (fab provision): a container cannot enable process accounting (it needs
# CAP_SYS_PACCT, which the machine keeps); a droplet (a VM) runs it.
[Unit]
ConditionVirtualization=!container
"""

# sysstat: Debian installs it collecting nothing (ENABLED="false" in /etc/default/sysstat, which
# its timers' scripts and lynis read). The line is set in the host's own copy, the way Debian's
# `dpkg-reconfigure sysstat` would write it, so a sysstat upgrade finds nothing to ask about.
SYSSTAT_DEFAULT_PATH = "/etc/default/sysstat"
SYSSTAT_UNITS = ("sysstat.service", "sysstat-collect.timer", "sysstat-summary.timer")


def edit_sysstat_default(text: str) -> str:
    """``text`` with ENABLED="true" (the first ENABLED line set, or one appended)."""
    lines, found = [], False
    for line in text.splitlines():
        if line.startswith("ENABLED="):
            if found:
                continue
            found = True
            line = 'ENABLED="true"'
        lines.append(line)
    if not found:
        lines.append('ENABLED="true"')
    return "\n".join(lines) + "\n"


# chkrootkit's daily timer runs Debian's chkrootkit-daily, which mails root: a droplet has no
# mail transport, so the run would fail at `mail`. The scan runs quiet (-q: findings only) and
# its output goes to the journal (`journalctl -u chkrootkit`).
CHKROOTKIT_DROPIN_PATH = "/etc/systemd/system/chkrootkit.service.d/dropstack.conf"
CHKROOTKIT_DROPIN = """\
# Managed by dropstack (fab provision): findings in the journal, not by mail (no MTA here).
[Service]
ExecStart=
ExecStart=/usr/sbin/chkrootkit -q
IOSchedulingClass=idle
"""
CHKROOTKIT_TIMER = "chkrootkit.timer"

# AIDE: only the `aide` package (aide-common, a Recommends, is not installed: its daily check
# scans the whole file system with every hash AIDE knows and mails root). Instead, one bounded
# configuration at the path AIDE's users and auditors look for, one hash (SHA-512), and what an
# intruder or a mistake would change on a web host: /etc, the system's programs and libraries,
# /boot and the SSH keys that let people in. Not watched: /srv (every deploy changes releases,
# which `fab deploy` builds from the repository), /var (data and logs), /tmp, /proc, /sys, /run.
AIDE_CONF_PATH = "/etc/aide/aide.conf"
AIDE_DB = "/var/lib/aide/aide.db"
AIDE_CONF = f"""\
# Managed by dropstack (fab provision): what AIDE watches on a web droplet (docs/security.md).
# After a reviewed change (an upgrade, a provision): sudo aide --config {AIDE_CONF_PATH} --update
# and move {AIDE_DB}.new over {AIDE_DB}.
database_in=file:{AIDE_DB}
database_out=file:{AIDE_DB}.new
gzip_dbout=yes
report_url=stdout
report_summarize_changes=yes
Checksums = sha512
Watched = p+i+n+u+g+s+m+c+acl+xattrs+ftype+Checksums
/boot Watched
/etc Watched
!/etc/mtab$
!/etc/adjtime$
!/etc/ld\\.so\\.cache$
/usr/bin Watched
/usr/sbin Watched
/usr/lib Watched
/usr/local Watched
/root/\\.ssh Watched
/home/[^/]+/\\.ssh Watched
"""
AIDE_CHECK_UNIT = "dropstack-aide-check"
AIDE_CHECK_SERVICE = f"""\
# Managed by dropstack (fab provision): AIDE's daily check, bounded so that a small droplet
# keeps serving while it runs. The report is in the journal (journalctl -u {AIDE_CHECK_UNIT}).
[Unit]
Description=AIDE file integrity check of /etc and the system's programs
Documentation=man:aide(1) man:aide.conf(5)
ConditionPathExists={AIDE_DB}

[Service]
Type=oneshot
ExecStart=/usr/bin/aide --check --config {AIDE_CONF_PATH}
# AIDE's exit status is a bit field of what it found (1 added, 2 removed, 4 changed): a report,
# not a failure. 14 and above are errors, and fail the unit.
SuccessExitStatus=1 2 3 4 5 6 7
Nice=19
IOSchedulingClass=idle
CPUQuota=50%
MemoryMax=512M
TimeoutStartSec=2h
# It reads every watched file and writes nothing.
UMask=0077
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=yes
NoNewPrivileges=yes
CapabilityBoundingSet=CAP_DAC_READ_SEARCH
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
"""
AIDE_CHECK_TIMER = """\
# Managed by dropstack (fab provision).
[Unit]
Description=Daily AIDE file integrity check

[Timer]
OnCalendar=daily
RandomizedDelaySec=1h
AccuracySec=1h
Persistent=true

[Install]
WantedBy=timers.target
"""


def aide_init_command() -> list[str]:
    """A new database from the current files, moved into place whole (a check never reads a
    half-written one)."""
    return shell.script(
        'install -d -m 0700 "${1%/*}" && aide --init --config "$2" >/dev/null && '
        'chmod 600 "$1.new" && mv -f "$1.new" "$1"',
        AIDE_DB,
        AIDE_CONF_PATH,
    )


# An interactive shell left at its prompt ends after 15 minutes (CIS 5.4.5); readonly, so a
# login cannot lift it. Commands run over SSH (Fabric, testinfra) are not interactive: no effect.
TMOUT_PATH = "/etc/profile.d/dropstack-tmout.sh"
TMOUT_SECONDS = 900
TMOUT_PROFILE = f"""\
# Managed by dropstack (fab provision): an idle interactive shell ends after {TMOUT_SECONDS}s.
TMOUT={TMOUT_SECONDS}
readonly TMOUT
export TMOUT
"""

# Login users' homes closed to other users (lynis HOME-9304); cloud-init makes them 0755.
HOME_MODE = "750"
