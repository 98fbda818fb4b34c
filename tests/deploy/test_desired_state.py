"""The provisioned host's desired state, as pure data."""

import pytest

from deploy.provision import desired as ds

UFW_OK = """\
Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), deny (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW IN    Anywhere
80/tcp                     ALLOW IN    Anywhere
443/tcp                    ALLOW IN    Anywhere
22/tcp (v6)                ALLOW IN    Anywhere (v6)
80/tcp (v6)                ALLOW IN    Anywhere (v6)
443/tcp (v6)               ALLOW IN    Anywhere (v6)
"""


@pytest.mark.parametrize(
    ("case", "status", "expected"),
    [
        ("as wanted", UFW_OK, True),
        ("inactive", "Status: inactive\n", False),
        ("default allow", UFW_OK.replace("deny (incoming)", "allow (incoming)"), False),
        ("extra port", UFW_OK + "8000/tcp                   ALLOW IN    Anywhere\n", False),
        ("extra source", UFW_OK + "5432                       ALLOW IN    10.0.0.0/8\n", False),
        (
            "ssh rate-limited",
            UFW_OK.replace(
                "22/tcp                     ALLOW IN", "22/tcp                     LIMIT IN"
            ),
            False,
        ),
        ("missing v6", UFW_OK.split("22/tcp (v6)")[0], False),
    ],
)
def test_ufw_status_is_compared_rule_by_rule(case, status, expected):
    assert ds.ufw_is_as_wanted(status) is expected, case


def test_ufw_commands_deny_inbound_then_enable():
    commands = [" ".join(c) for c in ds.ufw_commands()]
    assert commands[0] == "ufw --force reset"
    assert "ufw default deny incoming" in commands
    assert commands[-1] == "ufw --force enable"
    assert {c.split()[-1] for c in commands if c.startswith(("ufw allow", "ufw limit"))} == {
        "22/tcp",
        "80/tcp",
        "443/tcp",
    }


@pytest.mark.parametrize(
    ("os_release", "error_fragment"),
    [
        ('ID=debian\nVERSION_ID="12"\n', None),
        ('ID=ubuntu\nVERSION_ID="24.04"\n', None),
        ('ID=debian\nVERSION_ID="11"\n', "debian 11 is not supported"),
        ('ID=fedora\nVERSION_ID="40"\n', "fedora 40 is not supported"),
        ("", "? ? is not supported"),
    ],
)
def test_check_distro(os_release, error_fragment):
    error = ds.check_distro(os_release)
    if error_fragment is None:
        assert error is None
    else:
        assert error_fragment in error and "\n" not in error


def test_packages_add_certbot_only_with_tls():
    assert "certbot" not in ds.packages_for(tls=False)
    assert "certbot" in ds.packages_for(tls=True)
    assert {"nginx", "python3-venv", "ufw", "fail2ban", "unattended-upgrades"} <= set(
        ds.packages_for(tls=False)
    )


def test_fail2ban_never_bans_the_operator():
    jail = ds.os_files("deploy", "198.18.0.1")["fail2ban"].content
    assert "ignoreip = 127.0.0.1/8 ::1 198.18.0.1\n" in jail
    assert "ignoreip = 127.0.0.1/8 ::1\n" in ds.os_files("deploy")["fail2ban"].content


def test_sshd_hardening_refuses_root_and_passwords():
    sshd = ds.os_files("deploy")["sshd"]
    lines = set(sshd.content.splitlines())
    assert {"PermitRootLogin no", "PasswordAuthentication no", "AllowUsers deploy"} <= lines
    assert any(line.startswith("MaxAuthTries ") for line in lines)
    kex = next(line for line in lines if line.startswith("KexAlgorithms "))
    assert "diffie-hellman-group14-sha1" not in kex and "sha1" not in kex


@pytest.mark.parametrize(
    ("settings", "expected_line"),
    [
        ({"A": "plain"}, "A=plain"),
        (
            {"URL": "postgresql://u:p@h:1/d?sslmode=require&x=y"},
            "URL=postgresql://u:p@h:1/d?sslmode=require&x=y",
        ),
        ({"K": 'has space "and" quote'}, 'K="has space \\"and\\" quote"'),
    ],
)
def test_env_file_round_trips(settings, expected_line):
    text = ds.env_file_content(settings)
    assert expected_line in text.splitlines()
    assert ds.parse_env_file(text) == settings


def test_env_file_rejects_bad_names():
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        ds.env_file_content({"lower": "x"})


def test_database_url_is_upgraded_to_verify_the_server():
    url = ds.app_database_url(
        "postgresql://app:pw@10.1.0.5:25060/app?sslmode=require&connect_timeout=5", "/etc/ca.crt"
    )
    assert url == (
        "postgresql://app:pw@10.1.0.5:25060/app?connect_timeout=5"
        "&sslmode=verify-full&sslrootcert=/etc/ca.crt"
    )


def test_fail2ban_settings_are_in_jail_local():
    # lynis (DEB-0880) and fail2ban's own docs: jail.conf stays the package's, jail.local wins.
    assert ds.os_files("deploy")["fail2ban"].path == "/etc/fail2ban/jail.local"
    assert ds.FAIL2BAN_JAIL_PATH not in ds.RETIRED_FAIL2BAN_JAILS


def test_sshd_settings_name_each_keyword_once():
    # sshd takes the first value of a keyword: a second line is dead text that can mislead.
    keywords = [line.split()[0] for line in ds.sshd_settings("deploy").splitlines()
                if line and not line.startswith("#")]  # fmt: skip
    repeated = {k for k in keywords if keywords.count(k) > 1 and k != "HostKey"}
    assert not repeated


def test_lynis_packages_a_droplet_should_have():
    wanted = {"acct", "sysstat", "chkrootkit", "aide", "needrestart"}
    assert wanted <= set(ds.packages_for(tls=False))
    # aide-common's daily check scans everything with every hash, and apt-listbugs asks
    # bugs.debian.org during each apt run: neither is installed (recommends are not either).
    assert not {"aide-common", "apt-listbugs", "rkhunter"} & set(ds.packages_for(tls=True))
