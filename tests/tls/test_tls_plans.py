"""The pure parts: the inventory's CA keys, the certbot command lines, certificate states."""

from __future__ import annotations

import calendar
import time

import pytest

from deploy.host_model import HostSettings
from deploy.inventory import Inventory
from deploy.provision import tls
from deploy.provision.templates import render

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
    assert certbot[certbot.index("--deploy-hook") + 1] == "nginx -t && systemctl reload nginx"
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
    assert list(f.path for f in tls.acme_files(S, tls.Acme())) == [tls.CERTBOT_DROP_IN]


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
