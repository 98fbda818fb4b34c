"""CIS-derived checks of a provisioned host, one theme per test (docs/security.md "Host
baseline"). Where the local droplet (a systemd-nspawn container) cannot have a setting a
droplet has, the test says so and checks what provisioning installed instead; it never skips."""

from __future__ import annotations

import shlex

import pytest

from deploy.provision import baseline
from deploy.provision import desired as ds
from deploy.provision import facts as f


@pytest.fixture(scope="module")
def container(host) -> str:
    return host.run("systemd-detect-virt --container").stdout.strip() or "none"


def root_read(host, path: str) -> str:
    result = host.run(f"sudo -n cat {shlex.quote(path)}")
    assert result.rc == 0, f"{path} is missing: `fab provision` installs it"
    return result.stdout


def running_sysctl(host, keys) -> dict[str, str]:
    return f.parse_sysctl(host.run("sysctl " + " ".join(keys) + " 2>/dev/null").stdout)


@pytest.mark.parametrize(
    ("path", "wanted", "in_a_container"),
    [
        # No redirects, no source routing, reverse-path filtering, SYN cookies, martians logged.
        pytest.param(ds.SYSCTL_NETWORK_PATH, ds.SYSCTL_NETWORK, "/proc/sys is read-only",
                     id="network"),
        # kernel.* and fs.*.
        pytest.param(ds.SYSCTL_KERNEL_PATH, ds.SYSCTL_KERNEL, "kernel.* belongs to the machine",
                     id="kernel"),
    ],
)  # fmt: skip
def test_kernel_settings(host, container, path, wanted, in_a_container):
    """The running values on a droplet; the local droplet's containers get /proc/sys read-only
    (systemd-nspawn: the machine's kernel decides), so there the installed file is checked
    instead."""
    installed = {file.path: file.content for file in baseline.sysctl_files()}
    assert root_read(host, path) == installed[path]
    if container != "none":
        print(f"{container} container: {in_a_container}; checked the file only")
        return
    wrong = ds.sysctl_differences(wanted, running_sysctl(host, wanted))
    assert not wrong, f"kernel settings differ from {path}: {wrong}"


def mount_options(host, path: str) -> set[str]:
    out = host.run(f"findmnt -n -o OPTIONS --target {shlex.quote(path)}").stdout.strip()
    return set(out.split(","))


def test_tmp_and_shm_mount_options(host, container):
    """/dev/shm nodev,nosuid,noexec and a tmpfs /tmp nodev,nosuid on a droplet. In a container
    nspawn mounts both (the host's fstab and tmp.mount are not used): there the test requires
    what nspawn gives (nodev,nosuid on /dev/shm) and checks the rendered configuration."""
    shm = mount_options(host, ds.SHM)
    assert {"nodev", "nosuid"} <= shm, f"{ds.SHM} is mounted {sorted(shm)}"
    rendered = ds.edit_fstab_shm("")
    assert all(o in rendered for o in ds.SHM_OPTIONS) and "nosuid,nodev" in ds.TMP_MOUNT
    if container != "none":
        print(f"{container} container: mounts are nspawn's; checked the rendered fstab/tmp.mount")
        return
    assert set(ds.SHM_OPTIONS) <= shm, f"{ds.SHM} is mounted {sorted(shm)}, not noexec"
    assert ds.FSTAB_SHM in root_read(host, "/etc/fstab").splitlines()
    assert root_read(host, ds.TMP_MOUNT_PATH) == ds.TMP_MOUNT
    assert host.run("systemctl is-enabled tmp.mount").stdout.strip() == "enabled"
    if host.run("findmnt -n /tmp").rc == 0:  # tmp.mount takes /tmp over at the next boot
        assert {"nodev", "nosuid"} <= mount_options(host, "/tmp")


def test_core_dumps_restricted(host, container):
    for file in baseline.core_dump_files():
        assert root_read(host, file.path) == file.content
    limit = host.run("sudo -n -i sh -c 'ulimit -H -c'").stdout.strip()
    assert limit == "0", f"a login session may still dump core (hard limit {limit})"
    if container == "none":
        assert running_sysctl(host, ["fs.suid_dumpable"]).get("fs.suid_dumpable") == "0"


def test_audit_logging_of_privilege_use(host, container):
    """The rules for sudo, su, passwd and the identity files; loaded by a running auditd on a
    droplet. The kernel's audit subsystem belongs to the machine, so a container has the file
    and the package, and no auditd."""
    assert host.package("auditd").is_installed
    assert root_read(host, ds.AUDIT_RULES_PATH) == ds.AUDIT_RULES
    if container != "none":
        print(f"{container} container: auditd cannot run; checked the installed rules")
        return
    assert host.service("auditd").is_running
    loaded = host.run("sudo -n auditctl -l").stdout
    for watched in ("/usr/bin/sudo", "/usr/bin/su", "/etc/shadow", "/usr/bin/passwd"):
        assert watched in loaded, f"auditd has no rule for {watched}: `sudo augenrules --load`"


def test_login_banner(host):
    for path in ("/etc/issue", ds.BANNER_PATH):
        assert host.file(path).content_string == ds.LOGIN_BANNER
    effective = host.run("sudo -n sshd -T").stdout.splitlines()
    assert f"banner {ds.BANNER_PATH}" in effective


def test_password_and_lockout_policy(host):
    """No account that exists has a usable password older than the policy allows (there are
    none on a dropstack host: SSH takes keys only); login.defs and pwquality set the policy for
    any password set later; sshd and fail2ban bound failed logins."""
    login_defs = host.file(ds.LOGIN_DEFS_PATH).content_string
    assert ds.edit_login_defs(login_defs) == login_defs, "login.defs differs from the policy"
    shadow = f.parse_shadow_ages(
        host.run(f"sudo -n sh -c {shlex.quote(f.PASSWORDS_SCRIPT)}").stdout
    )
    assert shadow, "could not read /etc/shadow"
    maximum, minimum, warn = (str(d) for d in ds.PASSWORD_POLICY_DAYS)
    loose = [
        u
        for u, (has, mx, mn, wn) in shadow.items()
        if has and (mx, mn, wn) != (maximum, minimum, warn)
    ]
    assert not loose, f"accounts with a password outside the ageing policy: {loose}"
    assert host.package("libpam-pwquality").is_installed
    assert "pam_pwquality.so" in host.file("/etc/pam.d/common-password").content_string
    sshd = dict(
        line.split(" ", 1)
        for line in host.run("sudo -n sshd -T").stdout.splitlines()
        if " " in line
    )
    assert int(sshd["maxauthtries"]) <= 3 and sshd["passwordauthentication"] == "no"
    assert "sshd" in host.run("sudo -n fail2ban-client status").stdout


@pytest.mark.parametrize(
    "path", [*ds.CRON_MODES, *ds.SSHD_CONFIG_MODES, ds.os_files("deploy")["sshd"].path]
)
def test_file_permissions_of_cron_and_sshd_files(host, path):
    wanted = {**ds.CRON_MODES, **ds.SSHD_CONFIG_MODES}.get(path, "600")
    with host.sudo():  # /etc/ssh/sshd_config.d is 0700: only root may look inside
        file = host.file(path)
        exists, user, group, mode = file.exists, None, None, None
        if exists:
            user, group, mode = file.user, file.group, file.mode
    if not exists and path in ds.CRON_MODES:
        assert not host.package("cron").is_installed, f"cron is installed but {path} is missing"
        print(f"cron is not installed: {path} does not exist, nothing can run from it")
        return
    assert exists, f"{path} is missing"
    assert (user, group) == ("root", "root")
    assert f"{mode:o}" == wanted, f"{path} is mode {mode:o}, must be {wanted}"


# --- what lynis found missing after the first baseline (docs/security.md "Host baseline") ---


def unit_state(host, unit: str) -> dict[str, str]:
    out = host.run(
        f"systemctl show -p UnitFileState -p ActiveState -p ConditionResult -p Result {unit}"
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_process_accounting(host, container):
    """acct records every process on a droplet. A container cannot switch accounting on (the
    acct() call needs CAP_SYS_PACCT, which the machine keeps): there the unit is enabled and
    skipped by its condition, not failed."""
    assert host.package("acct").is_installed
    assert root_read(host, ds.ACCT_DROPIN_PATH) == ds.ACCT_DROPIN
    state = unit_state(host, "acct.service")
    assert state["UnitFileState"] == "enabled", state
    if container != "none":
        assert state["ConditionResult"] == "no" and state["ActiveState"] != "failed", state
        print(f"{container} container: process accounting is the machine's; acct is skipped")
        return
    assert state["ActiveState"] == "active", state
    size = host.run("sudo -n stat -c %s /var/log/account/pacct").stdout.strip()
    assert size.isdigit() and int(size) > 0, "process accounting writes nothing"


def test_sysstat_collects(host):
    """Enabled where its scripts and lynis read it, its timers running, and today's data file
    written (sysstat.service records the boot; the collect timer adds a sample every 10 min)."""
    assert 'ENABLED="true"' in host.file(ds.SYSSTAT_DEFAULT_PATH).content_string.splitlines()
    for unit in ds.SYSSTAT_UNITS:
        state = unit_state(host, unit)
        assert (state["UnitFileState"], state["ActiveState"]) == ("enabled", "active"), unit
    today = host.run("date +%d").stdout.strip()
    assert host.file(f"/var/log/sysstat/sa{today}").exists, "sysstat has no data file for today"


def test_file_integrity_check_runs(host):
    """AIDE's configuration, database and daily timer; the check itself is run here, in its
    sandboxed unit, and must end in a report (exit 0 to 7), not an error."""
    assert host.package("aide").is_installed and not host.package("aide-common").is_installed
    assert root_read(host, ds.AIDE_CONF_PATH) == ds.AIDE_CONF
    assert host.run(f"sudo -n test -s {ds.AIDE_DB}").rc == 0, "no AIDE database"
    timer = unit_state(host, f"{ds.AIDE_CHECK_UNIT}.timer")
    assert (timer["UnitFileState"], timer["ActiveState"]) == ("enabled", "active"), timer
    run = host.run(f"sudo -n systemctl start {ds.AIDE_CHECK_UNIT}.service")
    state = unit_state(host, f"{ds.AIDE_CHECK_UNIT}.service")
    assert run.rc == 0 and state["Result"] == "success", (
        f"{run.stderr[-300:]} {state}; journalctl -u {ds.AIDE_CHECK_UNIT}"
    )


def test_rootkit_scanner(host):
    """chkrootkit daily, its findings in the journal (the drop-in replaces Debian's mailing
    script: a droplet has no MTA); the unit's effective command is the quiet scan."""
    assert host.package("chkrootkit").is_installed
    assert root_read(host, ds.CHKROOTKIT_DROPIN_PATH) == ds.CHKROOTKIT_DROPIN
    timer = unit_state(host, ds.CHKROOTKIT_TIMER)
    assert (timer["UnitFileState"], timer["ActiveState"]) == ("enabled", "active"), timer
    exec_start = host.run("systemctl show -p ExecStart chkrootkit.service").stdout
    assert "/usr/sbin/chkrootkit ; argv[]=/usr/sbin/chkrootkit -q" in exec_start
    assert "chkrootkit-daily" not in exec_start


def test_needrestart_lists_and_compilers_are_root_only(host):
    """needrestart never restarts a service by itself; the assembler binutils brings along
    with it may be run by root only (a statoverride keeps the mode across upgrades)."""
    assert host.package("needrestart").is_installed
    assert root_read(host, ds.NEEDRESTART_CONF_PATH) == ds.NEEDRESTART_CONF
    found = host.run(f"sh -c {shlex.quote(f.RESOLVED_MODES_SCRIPT)} sh {' '.join(ds.COMPILERS)}")
    for path, state in f.parse_dirs(found.stdout).items():
        assert state == f"{ds.COMPILER_MODE} root root", f"{path} is {state}"
        override = host.run(f"dpkg-statoverride --list {shlex.quote(path)}").stdout.split()
        assert override[:3] == ["root", "root", ds.COMPILER_MODE], f"no statoverride: {path}"


def test_idle_shells_end(host):
    """A login shell gets TMOUT, and cannot unset it."""
    login = host.run("bash -l -c 'echo $TMOUT'")
    assert login.stdout.strip() == str(ds.TMOUT_SECONDS)
    assert host.run("bash -l -c 'TMOUT=0'").rc != 0, "a login can lift TMOUT"


def test_home_directories_closed_to_others(host):
    """Every account with a login shell: its home has no group write and nothing for others."""
    passwd = host.run("getent passwd").stdout.splitlines()
    accounts = [line.split(":") for line in passwd]
    system = ("root", "sync", "halt", "shutdown")  # their "shells" are programs, as lynis counts
    homes = [
        a[5] for a in accounts if not a[6].endswith(("nologin", "false")) and a[0] not in system
    ]
    assert homes, "no login account at all: the deploy user is missing"
    for home in homes:
        mode = host.run(f"stat -c %a {shlex.quote(home)}").stdout.strip()
        if mode:
            assert not int(mode, 8) & 0o027, f"{home} is mode {mode}"


def test_fail2ban_settings_in_jail_local(host):
    assert host.file(ds.FAIL2BAN_JAIL_PATH).exists
    for path in ds.RETIRED_FAIL2BAN_JAILS:
        assert not host.file(path).exists, f"{path} is still there beside jail.local"
    assert "backend = systemd" in host.file(ds.FAIL2BAN_JAIL_PATH).content_string
