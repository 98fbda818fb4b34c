"""The host baseline as provisioning steps: what lynis, ssh-audit's "Hardened Debian 12" policy and
the CIS-derived host tests check (docs/security.md, "Host baseline"). Pure steps, like
``operations``: facts in, ``Change`` objects out."""

from __future__ import annotations

from dataclasses import replace

from deploy import shell
from deploy.provision import desired
from deploy.provision import facts as f
from deploy.provision.change import (
    Change,
    Command,
    Target,
    Unsupported,
    ensure_running,
    file_changes,
    root,
)
from deploy.provision.files import RemoteFile, differing

# --- the host baseline (lynis, ssh-audit's policy, the CIS-derived host tests) ---


def baseline_files(t: Target, login_defs: str) -> list[RemoteFile]:
    """Every file the baseline steps write (login.defs from the host's own copy)."""
    files = [*banner_files(), *sysctl_files(), *core_dump_files(), *audit_files()]
    files += [*password_files(login_defs), modprobe_file(), tmp_mount_file()]
    files += [*preinstall_files(), chkrootkit_dropin(), aide_config_file(), *aide_unit_files()]
    return [*files, tmout_file()]


def in_container(facts: f.HostFacts) -> bool:
    return facts.container != "none"


def openssh_for_policy(t: Target, facts: f.HostFacts) -> list[Change]:
    """The policy's key exchanges need Debian's current OpenSSH (security archive): an older
    one would fail `sshd -t` on sntrup761x25519-sha512, so it is upgraded first."""
    wanted = desired.SSHD_ALGORITHMS["KexAlgorithms"]
    missing = [k for k in wanted if k not in facts.ssh_kex]
    if not missing:
        return []
    upgrade = desired.install_packages_command(["openssh-server", "openssh-client"])
    return [
        Change(
            "upgrade openssh-server",
            commands=(root(upgrade),),
            detail=(f"~ openssh: lacks {', '.join(missing)} -> the security archive's version",),
        )
    ]


def _reload_ssh(facts: f.HostFacts) -> tuple[Command, ...]:
    return (root(["systemctl", "reload-or-restart", "ssh"]),) if facts.active("ssh") else ()


def ssh_host_keys(t: Target, facts: f.HostFacts) -> list[Change]:
    """ed25519 and RSA 4096 only. The operator's known_hosts pins the ed25519 key, which is
    never replaced, so the next connection still verifies; sshd reloads to drop the others."""
    commands, detail = desired.host_key_commands(facts.host_keys)
    if not commands:
        return []
    return [
        Change(
            "ssh host keys",
            commands=tuple(root(c) for c in commands),
            then=_reload_ssh(facts),
            detail=tuple(detail),
        )
    ]


def ssh_moduli(t: Target, facts: f.HostFacts) -> list[Change]:
    strong, weak = facts.moduli
    if strong and not weak:
        return []
    return [
        Change(
            "ssh group-exchange moduli",
            commands=(root(desired.moduli_command()),),
            detail=(
                f"~ {desired.MODULI_FILE}: {strong} strong, {weak} weak -> "
                f"{desired.MODULI_SOURCE} lines of >= {desired.MODULI_MIN_BITS + 1} bits",
            ),
        )
    ]


def sshd_user_keys(t: Target) -> None:
    """Refuse before the hardened sshd would refuse the key this run connects with (or, when
    that is unknown, every listed key): the operator would be locked out after the reload."""
    keys = [t.connecting_key] if t.connecting_key else list(t.inv["ssh_public_keys"])
    problems = [p for key in keys if (p := desired.user_key_problem(key))]
    if keys and len(problems) == len(keys):
        raise Unsupported(f"ssh_public_keys: {problems[0]}; the deploy user would be locked out")


def banner_files() -> list[RemoteFile]:
    return [
        RemoteFile("/etc/issue", desired.LOGIN_BANNER),
        RemoteFile(desired.BANNER_PATH, desired.LOGIN_BANNER),
    ]


def login_banner(t: Target, facts: f.HostFacts) -> list[Change]:
    return file_changes(t, facts, banner_files(), "login banner")


def sysctl_files() -> list[RemoteFile]:
    return [
        RemoteFile(
            desired.SYSCTL_NETWORK_PATH,
            desired.sysctl_file(
                desired.SYSCTL_NETWORK, "network hardening (per network namespace: containers too)"
            ),
        ),
        RemoteFile(
            desired.SYSCTL_KERNEL_PATH,
            desired.sysctl_file(
                desired.SYSCTL_KERNEL,
                "kernel hardening (a container's /proc/sys is read-only: droplets only)",
            ),
        ),
    ]


def kernel_parameters(t: Target, facts: f.HostFacts) -> list[Change]:
    """The files, and the running values: a container never runs systemd-sysctl at boot
    (/proc/sys is read-only there), so a restarted local host is repaired by the next run."""
    network, kernel = sysctl_files()
    if in_container(facts):
        # /proc/sys is read-only in the local droplet's containers (every key: permission
        # denied), so there the files are installed and checked, and a droplet loads them
        # (systemd-sysctl at boot, and this step).
        return file_changes(t, facts, [network, kernel], "kernel parameters")
    applied = [(network, desired.SYSCTL_NETWORK), (kernel, desired.SYSCTL_KERNEL)]
    stale = [
        (file, keys) for file, keys in applied if desired.sysctl_differences(keys, facts.sysctl)
    ]
    written = differing([network, kernel], facts.files)
    loads = {file.path for file, _ in applied if file in written} | {file.path for file, _ in stale}
    then = tuple(root(["sysctl", "-q", "-p", path]) for path in sorted(loads))
    changes = file_changes(t, facts, [network, kernel], "kernel parameters", then=then)
    if changes or not then:
        return changes
    detail = tuple(
        f"~ {k}: {facts.sysctl.get(k, '?')} -> {v}"
        for _, keys in stale
        for k, v in keys.items()
        if k in desired.sysctl_differences(keys, facts.sysctl)
    )
    return [Change("kernel parameters (running values)", then=then, detail=detail)]


def core_dump_files() -> list[RemoteFile]:
    return [
        RemoteFile("/etc/security/limits.d/60-dropstack-coredump.conf", desired.CORE_LIMITS),
        RemoteFile("/etc/systemd/coredump.conf.d/60-dropstack.conf", desired.COREDUMP_CONF),
    ]


def core_dumps(t: Target, facts: f.HostFacts) -> list[Change]:
    return file_changes(t, facts, core_dump_files(), "core dumps restricted")


def password_files(login_defs: str) -> list[RemoteFile]:
    files = [RemoteFile("/etc/security/pwquality.conf.d/60-dropstack.conf", desired.PWQUALITY)]
    if login_defs:  # never written from nothing: the distribution's file is the base
        files.append(RemoteFile(desired.LOGIN_DEFS_PATH, desired.edit_login_defs(login_defs)))
    return files


def password_policy(t: Target, facts: f.HostFacts) -> list[Change]:
    """login.defs (new accounts), pwquality, and the ages of the accounts that have a
    password now (none on a dropstack host: logins take keys; chage covers any set later)."""
    with_host_copy = replace(t, contents={**t.contents, desired.LOGIN_DEFS_PATH: facts.login_defs})
    files = password_files(facts.login_defs)
    changes = file_changes(with_host_copy, facts, files, "password policy")
    maximum, minimum, warn = (str(d) for d in desired.PASSWORD_POLICY_DAYS)
    aged = [
        user
        for user, (has, mx, mn, wn) in facts.passwords.items()
        if has and (mx, mn, wn) != (maximum, minimum, warn)
    ]
    if aged:
        chage = [root(["chage", "-M", maximum, "-m", minimum, "-W", warn, u]) for u in aged]
        changes.append(
            Change(
                "password ages",
                commands=tuple(chage),
                detail=tuple(
                    f"~ {u}: max/min/warn days -> {maximum}/{minimum}/{warn}" for u in aged
                ),
            )
        )
    return changes


def audit_files() -> list[RemoteFile]:
    return [RemoteFile(desired.AUDIT_RULES_PATH, desired.AUDIT_RULES, "0640")]


def audit_rules(t: Target, facts: f.HostFacts) -> list[Change]:
    """The rules file everywhere; loaded, and auditd running, only outside a container (the
    kernel's audit subsystem belongs to the machine: an nspawn host cannot use it)."""
    if in_container(facts):
        return file_changes(t, facts, audit_files(), "audit rules (not loaded in a container)")
    load = (root(["augenrules", "--load"]),)
    return file_changes(t, facts, audit_files(), "audit rules", then=load) + ensure_running(
        facts, "auditd"
    )


def modprobe_file() -> RemoteFile:
    return RemoteFile(desired.MODPROBE_PATH, desired.modprobe_file())


def unused_modules(t: Target, facts: f.HostFacts) -> list[Change]:
    """Inert in a container (it loads no modules) and installed there too: the same file."""
    return file_changes(t, facts, [modprobe_file()], "unused kernel modules")


def tmp_mount_file() -> RemoteFile:
    return RemoteFile(desired.TMP_MOUNT_PATH, desired.TMP_MOUNT)


def temp_mounts(t: Target, facts: f.HostFacts) -> list[Change]:
    """A droplet: tmpfs /tmp (nodev,nosuid) from the next boot on, /dev/shm remounted
    nodev,nosuid,noexec now and by fstab. A container: nspawn owns its mounts; nothing."""
    if in_container(facts):
        return []
    enable = (root(["systemctl", "daemon-reload"]), root(["systemctl", "enable", "tmp.mount"]))
    changes = file_changes(t, facts, [tmp_mount_file()], "tmpfs /tmp (from next boot)", then=enable)
    fstab = desired.edit_fstab_shm(facts.fstab)
    if fstab != facts.fstab:
        remount = (root(["mount", "-o", "remount", desired.SHM]),)
        changes += [
            Change(
                f"{desired.SHM} nodev,nosuid,noexec",
                files=(RemoteFile("/etc/fstab", fstab),),
                then=remount,
                detail=(f"+ /etc/fstab: {desired.FSTAB_SHM}",),
            )
        ]
    return changes


def file_modes(t: Target, facts: f.HostFacts) -> list[Change]:
    """cron's and sshd's files closed to other users (those present: minbase has no cron)."""
    wanted = {**desired.CRON_MODES, **desired.SSHD_CONFIG_MODES}
    wrong = {
        p: m
        for p, m in wanted.items()
        if facts.modes.get(p, "absent") != "absent" and facts.modes[p].split()[0] != m
    }
    if not wrong:
        return []
    commands = tuple(root(["chmod", mode, path]) for path, mode in sorted(wrong.items()))
    detail = tuple(f"~ {p}: {facts.modes[p].split()[0]} -> {m}" for p, m in sorted(wrong.items()))
    return [Change("cron and sshd file modes", commands=commands, detail=detail)]


def security_updates(t: Target, facts: f.HostFacts) -> list[Change]:
    if not facts.security_updates:
        return []
    upgrade = desired.upgrade_packages_command(list(facts.security_updates))
    return [
        Change(
            f"security updates ({len(facts.security_updates)} packages)",
            commands=(root(upgrade),),
            detail=tuple(f"~ package {p} (security)" for p in facts.security_updates),
        )
    ]


# --- what remained of lynis's findings (docs/security.md "lynis findings that remain") ---


def preinstall_files() -> list[RemoteFile]:
    """Read by packages the moment they are installed: needrestart's mode (its first run is the
    apt run installing it) and acct's unit condition (its postinst starts the unit)."""
    return [
        RemoteFile(desired.NEEDRESTART_CONF_PATH, desired.NEEDRESTART_CONF),
        RemoteFile(desired.ACCT_DROPIN_PATH, desired.ACCT_DROPIN),
    ]


def before_packages(t: Target, facts: f.HostFacts) -> list[Change]:
    reload = (root(["systemctl", "daemon-reload"]),)
    return file_changes(t, facts, preinstall_files(), "needrestart list-only, acct", then=reload)


def process_accounting(t: Target, facts: f.HostFacts) -> list[Change]:
    """acct enabled and active (skipped by its condition in a container: see ACCT_DROPIN)."""
    return ensure_running(facts, "acct")


def compilers_root_only(t: Target, facts: f.HostFacts) -> list[Change]:
    wrong = {p: m for p, m in facts.compilers.items() if m.split()[0] != desired.COMPILER_MODE}
    if not wrong:
        return []
    return [
        Change(
            "compilers executable by root only",
            commands=tuple(root(desired.compiler_override_command(p)) for p in sorted(wrong)),
            detail=tuple(
                f"~ {p}: {m.split()[0]} -> {desired.COMPILER_MODE} (dpkg-statoverride)"
                for p, m in sorted(wrong.items())
            ),
        )
    ]


def sysstat_file(current: str) -> RemoteFile:
    return RemoteFile(desired.SYSSTAT_DEFAULT_PATH, desired.edit_sysstat_default(current))


def sysstat_collecting(t: Target, facts: f.HostFacts) -> list[Change]:
    """ENABLED="true" in the host's own /etc/default/sysstat (absent until the package is
    installed: nothing is written from nothing), and its boot record and timers running."""
    if not facts.sysstat_default:
        return []
    host_copy = {**t.contents, desired.SYSSTAT_DEFAULT_PATH: facts.sysstat_default}
    file = sysstat_file(facts.sysstat_default)
    changes = file_changes(replace(t, contents=host_copy), facts, [file], "sysstat enabled")
    for unit in desired.SYSSTAT_UNITS:
        changes += ensure_running(facts, unit)
    return changes


def chkrootkit_dropin() -> RemoteFile:
    return RemoteFile(desired.CHKROOTKIT_DROPIN_PATH, desired.CHKROOTKIT_DROPIN)


def rootkit_scan(t: Target, facts: f.HostFacts) -> list[Change]:
    reload = (root(["systemctl", "daemon-reload"]),)
    summary = "chkrootkit findings to the journal"
    changes = file_changes(t, facts, [chkrootkit_dropin()], summary, then=reload)
    return changes + ensure_running(facts, desired.CHKROOTKIT_TIMER)


def aide_config_file() -> RemoteFile:
    return RemoteFile(desired.AIDE_CONF_PATH, desired.AIDE_CONF, "0600")


def aide_unit_files() -> list[RemoteFile]:
    unit = f"/etc/systemd/system/{desired.AIDE_CHECK_UNIT}"
    return [
        RemoteFile(f"{unit}.service", desired.AIDE_CHECK_SERVICE),
        RemoteFile(f"{unit}.timer", desired.AIDE_CHECK_TIMER),
    ]


# `systemd-analyze verify` exits 0 on the complaints it prints: any output is the failure.
SILENT_VERIFY_SCRIPT = (
    'out=$(systemd-analyze verify --man=no "$@" 2>&1); '
    'if [ -n "$out" ]; then printf "%s\\n" "$out" >&2; exit 1; fi'
)


def file_integrity(t: Target, facts: f.HostFacts) -> list[Change]:
    """AIDE's configuration (checked by `aide --config-check`), its database (made again when
    the configuration changes, so that a check compares like with like) and its daily timer."""
    init = root(desired.aide_init_command())
    config = file_changes(
        t, facts, [aide_config_file()], "AIDE configuration",
        validate=root(["aide", "--config-check", "--config", desired.AIDE_CONF_PATH]),
        validate_name="aide --config-check", then=(init,),
    )  # fmt: skip
    unit, timer = (file.path.rsplit("/", 1)[1] for file in aide_unit_files())
    units = file_changes(
        t, facts, aide_unit_files(), "AIDE daily check",
        validate=root(shell.script(SILENT_VERIFY_SCRIPT, unit, timer)),
        validate_name="systemd-analyze verify",
        then=(root(["systemctl", "daemon-reload"]), root(["systemctl", "enable", "--now", timer])),
    )  # fmt: skip
    changes = config + units
    if not config and desired.AIDE_DB not in facts.baseline_present:
        changes.append(Change("AIDE database", commands=(init,),
                              detail=(f"+ {desired.AIDE_DB} (aide --init)",)))  # fmt: skip
    return changes + ([] if units else ensure_running(facts, timer))


def tmout_file() -> RemoteFile:
    return RemoteFile(desired.TMOUT_PATH, desired.TMOUT_PROFILE)


def idle_shell_timeout(t: Target, facts: f.HostFacts) -> list[Change]:
    return file_changes(t, facts, [tmout_file()], "idle shells end (TMOUT)")


def home_directories(t: Target, facts: f.HostFacts) -> list[Change]:
    """The deploy user's home (the one login account) closed to others: no group write, nothing
    for others. A stricter mode is kept."""
    home = f"/home/{t.deploy_user}"
    have = facts.modes.get(home, "absent")
    if have == "absent" or not int(have.split()[0], 8) & 0o027:
        return []
    return [
        Change(
            "home directory modes",
            commands=(root(["chmod", "g-w,o-rwx", home]),),
            detail=(f"~ {home}: {have.split()[0]} -> no group write, nothing for others",),
        )
    ]


# The baseline in the order provisioning runs it (deploy/provision/operations.STEPS). Before the
# sshd step, which names the banner, the moduli file and the host keys: everything sshd's
# settings refer to. After sshd and fail2ban: the rest, AIDE last of all, so its database records
# the files every step before it wrote.
BEFORE_SSHD = (
    ("security updates", security_updates),
    ("kernel parameters", kernel_parameters),
    ("core dumps restricted", core_dumps),
    ("password policy", password_policy),
    ("audit rules for privilege use", audit_rules),
    ("unused kernel modules", unused_modules),
    ("tmp and shm mount options", temp_mounts),
    ("login banner", login_banner),
    ("openssh for the hardened policy", openssh_for_policy),
    ("ssh host keys", ssh_host_keys),
    ("ssh moduli", ssh_moduli),
)
AFTER_SSHD = (
    ("cron and sshd file modes", file_modes),
    ("process accounting", process_accounting),
    ("sysstat collecting", sysstat_collecting),
    ("compilers root only", compilers_root_only),
    ("idle shell timeout", idle_shell_timeout),
    ("home directory modes", home_directories),
    ("rootkit scan (chkrootkit)", rootkit_scan),
    ("file integrity (AIDE)", file_integrity),
)
