"""Who can get in: the app user is powerless, SSH takes keys for the deploy user only (sshd's
effective configuration AND real login attempts from this machine), fail2ban watches sshd."""

from __future__ import annotations

import secrets

import pytest

from tests.host.probes import ACCEPTED, NOT_OFFERED

NO_LOGIN_SHELLS = ("/usr/sbin/nologin", "/bin/false", "/usr/bin/false")
PRIVILEGED_GROUPS = {"sudo", "adm", "wheel", "root", "systemd-journal", "docker", "lxd"}


def test_app_user_has_no_login_shell(host, settings):
    user = host.user(settings.app_user)
    assert user.exists, f"user {settings.app_user} is missing; `fab provision` creates it"
    assert user.shell in NO_LOGIN_SHELLS, (
        f"{settings.app_user} has shell {user.shell}; a service account must have "
        "/usr/sbin/nologin so a leaked credential gives no shell"
    )


def test_app_user_in_no_privileged_group(host, settings):
    groups = set(host.user(settings.app_user).groups)
    extra = sorted(groups & PRIVILEGED_GROUPS)
    assert not extra, (
        f"{settings.app_user} is in {', '.join(extra)}: the app's code would get admin rights "
        "or read every log; remove it with `gpasswd -d`"
    )


def test_app_user_cannot_sudo(host, settings):
    out = host.run(f"sudo -n sudo -l -U {settings.app_user}").stdout
    assert "is not allowed to run sudo" in out, (
        f"sudo grants {settings.app_user} something:\n{out.strip()}"
    )


SSHD_SETTINGS = [
    ("permitrootlogin", "no", "root must not log in over SSH"),
    ("passwordauthentication", "no", "passwords can be guessed; keys only"),
    ("kbdinteractiveauthentication", "no", "keyboard-interactive is password login again"),
    ("permitemptypasswords", "no", "an account without a password would be open"),
    ("pubkeyauthentication", "yes", "keys are the only way in"),
    ("authenticationmethods", "publickey", "nothing but a key may authenticate"),
    ("x11forwarding", "no", "no forwarding on a server"),
    ("allowagentforwarding", "no", "a hijacked session must not reach the operator's agent"),
    ("permittunnel", "no", "no tunnels into the VPC"),
]


@pytest.fixture(scope="module")
def sshd_effective(host) -> dict[str, str]:
    """`sshd -T`: what sshd really uses after every config file and drop-in is read."""
    result = host.run("sudo -n sshd -T")
    assert result.rc == 0, f"`sshd -T` failed, sshd's config is broken: {result.stderr.strip()}"
    return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)


@pytest.mark.parametrize(
    ("key", "wanted", "why"), SSHD_SETTINGS, ids=[key for key, _, _ in SSHD_SETTINGS]
)
def test_sshd_setting(sshd_effective, key, wanted, why):
    value = sshd_effective.get(key, "(unset)")
    assert value == wanted, (
        f"sshd runs with {key} {value}, must be {wanted}: {why} "
        "(a drop-in in /etc/ssh/sshd_config.d/ sorting before 20-dropstack.conf wins)"
    )


def test_sshd_max_auth_tries(sshd_effective):
    tries = int(sshd_effective.get("maxauthtries", "6"))
    assert tries <= 3, f"sshd allows {tries} authentication attempts per connection; at most 3"


def test_sshd_allows_only_the_deploy_user(sshd_effective, inventory):
    allowed = sshd_effective.get("allowusers", "(everyone)")
    assert allowed == inventory["ssh_user"], (
        f"sshd AllowUsers is {allowed}; only the deploy user {inventory['ssh_user']} may log in"
    )


def test_root_login_refused(ssh_target):
    """A real attempt from this machine: root with the deploy key (which on a DigitalOcean
    droplet is also in root's authorized_keys) must be refused."""
    outcome = ssh_target.login_outcome("root")
    assert outcome != ACCEPTED, (
        f"root logged in over SSH at {ssh_target.address} with the deploy key; "
        "PermitRootLogin must be no"
    )


def test_password_login_not_offered(ssh_target, inventory):
    """A real password attempt as the deploy user: sshd must not even offer password
    authentication (a wrong password merely rejected would mean the door is there to guess at).
    It is one failed login in fail2ban's count; provisioning puts the operator's address in
    ignoreip."""
    password = secrets.token_urlsafe(16)
    outcome = ssh_target.login_outcome(inventory["ssh_user"], password=password)
    assert outcome.startswith(NOT_OFFERED), (
        f"sshd at {ssh_target.address} takes password logins for {inventory['ssh_user']} "
        f"({outcome}); PasswordAuthentication must be no and AuthenticationMethods publickey"
    )


def test_fail2ban_sshd_jail_active(host):
    result = host.run("sudo -n fail2ban-client status sshd")
    assert result.rc == 0 and "Status for the jail: sshd" in result.stdout, (
        "fail2ban's sshd jail is not running, SSH password/key guessing is never banned: "
        f"{(result.stderr or result.stdout).strip()}"
    )
