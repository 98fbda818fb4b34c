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
