"""The pure parts: the inventory's CA keys, the certbot command lines, certificate states."""

from __future__ import annotations

import calendar
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from deploy.host_model import HostSettings
from deploy.inventory import Inventory
from deploy.provision import facts as f
from deploy.provision import operations, site_steps, tls
from deploy.provision.templates import render
from tests.deploy.test_templates import make_certificate
from tests.loopback import world_readable_tempdir

S = HostSettings(vpc_cidr="10.110.0.0/20", domain="app.example.com")
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def inv(**values) -> Inventory:
    return Inventory("test", values)


def test_an_inventory_without_the_keys_means_lets_encrypt_and_system_trust() -> None:
    acme = tls.acme_from_inventory(inv())
    assert acme == tls.Acme(tls.LETS_ENCRYPT_DIRECTORY, "") and acme.is_lets_encrypt
    assert tls.ca_bundle_path(S, acme) == tls.SYSTEM_CA_BUNDLE


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"acme_directory": "http://198.18.0.9:14000/dir"}, "acme_directory: 'http://"),
        ({"acme_directory": "https://a b"}, "acme_directory:"),
        ({"acme_ca_cert": "not a pem"}, "acme_ca_cert: not a PEM certificate"),
    ],
)
def test_bad_ca_values_are_one_line_errors_naming_the_key(values: dict, message: str) -> None:
    with pytest.raises(tls.AcmeError) as error:
        tls.acme_from_inventory(inv(**values))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_certbot_always_gets_the_server_and_its_ca_bundle_explicitly() -> None:
    acme = tls.Acme("https://198.18.0.9:14000/dir", PEM)
    command = tls.certonly_command(S, acme)
    assert command[:2] == ["sh", "-c"] and command[3:5] == ["certify", "app.example.com"]
    certbot = command[command.index("env") :]
    assert certbot[1] == "REQUESTS_CA_BUNDLE=/etc/dropstack/acme-ca.pem"
    assert certbot[certbot.index("--server") + 1] == "https://198.18.0.9:14000/dir"
    assert certbot[certbot.index("-w") + 1] == "/var/www/letsencrypt"
    # The hook installs the certificate for Nginx and reloads nothing; renewals keep the key.
    assert certbot[certbot.index("--deploy-hook") + 1] == "/etc/dropstack/certbot-deploy-hook"
    assert "--reuse-key" in certbot
    # Let's Encrypt by default, named explicitly, with the system's trust store.
    default = tls.certonly_command(S, tls.Acme())
    assert tls.LETS_ENCRYPT_DIRECTORY in default
    assert f"REQUESTS_CA_BUNDLE={tls.SYSTEM_CA_BUNDLE}" in default


def test_the_timer_renews_with_the_same_ca_bundle() -> None:
    files = {f.path: f for f in tls.acme_files(S, tls.Acme("https://ca/dir", PEM))}
    assert files["/etc/dropstack/acme-ca.pem"].content == PEM
    assert (
        "Environment=REQUESTS_CA_BUNDLE=/etc/dropstack/acme-ca.pem"
        in files[tls.CERTBOT_DROP_IN].content
    )
    assert list(f.path for f in tls.acme_files(S, tls.Acme())) == [
        tls.CERTBOT_DROP_IN, "/etc/dropstack/certbot-deploy-hook"
    ]  # fmt: skip


def test_forced_renewal_never_uses_dry_run() -> None:
    command = tls.force_renewal_command(S, tls.Acme("https://ca/dir", PEM))
    assert "--force-renewal" in command and "--dry-run" not in command
    assert "--no-random-sleep-on-renew" in command


def line(name: str, start: str, end: str) -> str:
    return f"{name}\tnotBefore={start}\tnotAfter={end}\t"


NOW = calendar.timegm(time.strptime("2026-12-02 00:00:00", "%Y-%m-%d %H:%M:%S"))


@pytest.mark.parametrize(
    ("start", "end", "days", "problem"),
    [
        ("Nov 30 00:00:00 2026 GMT", "Feb 28 00:00:00 2027 GMT", 88, None),
        # 90-day certificate with 29.5 days left: within certbot's window, the timer will act.
        ("Sep  3 12:00:00 2026 GMT", "Jan  1 12:00:00 2027 GMT", 30, None),
        ("Aug 20 00:00:00 2026 GMT", "Dec 12 00:00:00 2026 GMT", 10, "RENEWAL FAILED"),
        ("Aug  1 00:00:00 2026 GMT", "Nov 30 00:00:00 2026 GMT", -2, "EXPIRED"),
        # A 6-day certificate on its first day is not "overdue".
        ("Dec  1 00:00:00 2026 GMT", "Dec  7 00:00:00 2026 GMT", 5, None),
    ],
)
def test_certificate_states(start: str, end: str, days: int, problem: str | None) -> None:
    (state,) = tls.parse_certificates(line("app.example.com", start, end), NOW)
    assert state.days_left == days
    assert (state.problem or "").startswith(problem or "") and bool(state.problem) == bool(problem)
    assert state.line().startswith(f"certificate app.example.com: {days} days left")


def test_an_unreadable_certificate_is_a_problem() -> None:
    (state,) = tls.parse_certificates("broken.example.com\tgarbage\n", NOW)
    assert state.problem == "unreadable: no validity dates"


def test_tls_conf_is_mozilla_intermediate_5_7() -> None:
    conf = render("tls.conf.j2", S)
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "ssl_session_tickets off;" in conf and "ffdhe2048.pem" in conf
    assert "ssl_ecdh_curve X25519:prime256v1:secp384r1;" in conf
    ciphers = next(x for x in conf.splitlines() if x.startswith("ssl_ciphers "))
    from tests.tls.clients import INTERMEDIATE_TLS12

    assert ciphers.removeprefix("ssl_ciphers ").rstrip(";").split(":") == [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
    ]  # fmt: skip
    assert set(ciphers.removeprefix("ssl_ciphers ").rstrip(";").split(":")) == INTERMEDIATE_TLS12


# --- the site names its certificate through a variable; the deploy hook installs it ---


def test_the_site_loads_its_certificate_per_handshake_without_stapling() -> None:
    site = render("site.conf.j2", S)
    assert 'map "" $dropstack_tls_certificate {' in site
    assert "default /etc/nginx/tls/app.example.com.pem;" in site
    assert "ssl_certificate $dropstack_tls_certificate;" in site
    assert "ssl_certificate_key $dropstack_tls_certificate;" in site
    # Nginx staples only certificates loaded at start: no stapling to pretend about.
    assert "ssl_stapling" not in site and "resolver" not in site
    directives = [x for x in render("tls.conf.j2", S).splitlines() if not x.startswith("#")]
    assert not any("stapling" in x for x in directives)


def test_renewals_keep_the_key_and_run_the_hook() -> None:
    old = "[renewalparams]\nrenew_hook = nginx -t && systemctl reload nginx\n"
    assert tls.renewal_differences(S, old) == [
        "renew_hook = /etc/dropstack/certbot-deploy-hook", "reuse_key = True"
    ]  # fmt: skip
    new = "renew_hook = /etc/dropstack/certbot-deploy-hook\nreuse_key = True\n"
    assert tls.renewal_differences(S, new) == []


def test_the_renewal_settings_command_rewrites_certbots_file(tmp_path: Path) -> None:
    conf = tmp_path / "app.example.com.conf"
    conf.write_text(
        "version = 2.1.0\n[renewalparams]\nauthenticator = webroot\n"
        "renew_hook = nginx -t && systemctl reload nginx\nserver = https://ca/dir\n"
    )
    conf.chmod(0o644)
    for _ in range(2):  # idempotent
        subprocess.run(tls.renewal_settings_command(S, str(conf)), check=True)
    text = conf.read_text()
    assert tls.renewal_differences(S, text) == []
    assert text.count("renew_hook") == 1 and text.count("reuse_key") == 1
    assert "server = https://ca/dir" in text and text.index("reuse_key") > text.index("[renewal")
    assert oct(conf.stat().st_mode & 0o777) == "0o644"


def run_hook(hook: Path, *args: str, lineage: Path | None = None):
    env = {**os.environ, **({"RENEWED_LINEAGE": str(lineage)} if lineage else {})}
    return subprocess.run([str(hook), *args], env=env, capture_output=True, text=True)


def test_the_deploy_hook_installs_and_checks_the_file_nginx_reads() -> None:
    """As root (runuser), like certbot on a host: the file is fullchain + key, 0640
    root:www-data in a 0750 directory, readable by the worker user; --check refuses a missing
    file, one the workers cannot read, and a key that is not the certificate's."""
    if os.geteuid() != 0:
        pytest.fail("runs as root, as CI does (runuser to the Nginx worker user)")
    with world_readable_tempdir("dropstack-hook-") as root:
        s = replace(S, config_dir=str(root / "etc"), nginx_dir=str(root / "nginx"))
        Path(s.config_dir).mkdir()
        file = tls.deploy_hook_file(s)
        hook = Path(file.path)
        hook.write_text(file.content)
        hook.chmod(0o755)
        live, other = root / "live", root / "other"
        make_certificate(live, "app.example.com")
        make_certificate(other, "app.example.com")
        pem = Path(s.tls_certificate_file)

        missing = run_hook(hook, "--check")
        assert missing.returncode != 0 and "no certificate in date" in missing.stderr

        assert run_hook(hook, lineage=live).returncode == 0
        assert (
            pem.read_text()
            == (live / "fullchain.pem").read_text() + (live / "privkey.pem").read_text()
        )
        assert (oct(pem.stat().st_mode & 0o777), pem.stat().st_uid) == ("0o640", 0)
        assert pem.group() == "www-data" and pem.parent.group() == "www-data"
        assert oct(pem.parent.stat().st_mode & 0o777) == "0o750"
        assert run_hook(hook, "--check").returncode == 0
        inode = pem.stat().st_ino
        assert run_hook(hook, lineage=live).returncode == 0
        assert pem.stat().st_ino == inode  # unchanged: not rewritten
        assert [p.name for p in pem.parent.iterdir()] == [pem.name]  # no temporary left

        pem.chmod(0o600)
        unreadable = run_hook(hook, "--check")
        assert unreadable.returncode != 0 and "www-data can read" in unreadable.stderr
        pem.chmod(0o640)

        # certbot's live files from two lineages: a key that is not the certificate's.
        (root / "mixed").mkdir()
        (root / "mixed/fullchain.pem").write_text((live / "fullchain.pem").read_text())
        (root / "mixed/privkey.pem").write_text((other / "privkey.pem").read_text())
        mixed = run_hook(hook, lineage=root / "mixed")
        assert mixed.returncode != 0 and "does not match" in mixed.stderr
        assert run_hook(hook, "--check").returncode == 0  # the installed file was kept
        assert [p.name for p in pem.parent.iterdir()] == [pem.name]


# --- provisioning: the renewal settings and the file, planned from facts ---


def tls_target():
    return operations.Target("web-1", S, inv())


def test_a_host_from_before_the_hook_gets_the_settings_and_the_file() -> None:
    t = tls_target()
    old = "[renewalparams]\nrenew_hook = nginx -t && systemctl reload nginx\n"
    facts = f.HostFacts(present=frozenset({f"{S.tls_cert_dir}/fullchain.pem"}),
                        certbot_renewal=old)  # fmt: skip
    settings, file = site_steps.tls_renewal(t, facts)
    assert settings.detail == (
        "~ /etc/letsencrypt/renewal/app.example.com.conf: "
        "renew_hook = /etc/dropstack/certbot-deploy-hook",
        "~ /etc/letsencrypt/renewal/app.example.com.conf: reuse_key = True",
    )
    assert file.detail == (
        "+ /etc/nginx/tls/app.example.com.pem (certbot's certificate and key, 0640 root:www-data)",
    )
    assert "RENEWED_LINEAGE=/etc/letsencrypt/live/app.example.com" in " ".join(file.commands[0])
    # Done: nothing to do. No certificate yet: the certificate step comes first.
    done = f.HostFacts(
        present=frozenset({f"{S.tls_cert_dir}/fullchain.pem", S.tls_certificate_file}),
        certbot_renewal="renew_hook = /etc/dropstack/certbot-deploy-hook\nreuse_key = True\n",
    )
    assert site_steps.tls_renewal(t, done) == []
    assert site_steps.tls_renewal(t, f.HostFacts()) == []


def test_the_https_site_is_checked_with_the_hooks_check_too() -> None:
    (change,) = site_steps.nginx_changes(tls_target(), f.HostFacts(), S, "nginx site")
    assert change.validate_name == "nginx -t and the certificate check"
    assert "/etc/dropstack/certbot-deploy-hook --check" in " ".join(change.validate)
    http_only = replace(S, tls_certificate_ready=False)
    (change,) = site_steps.nginx_changes(tls_target(), f.HostFacts(), http_only, "nginx site")
    assert change.validate_name == "nginx -t"
