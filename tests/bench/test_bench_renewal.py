"""bench.renewal: the renewal command (provisioning's own builder, as root), the serial read
back, the section's result, and its rows in the table. The figures are made up."""

import shlex

import pytest

from bench.renewal import DOMAIN, Served, parse_serial, renew_command, renewal_result
from bench.report import document, table_rows
from deploy.host_model import HostSettings
from deploy.provision import tls


def test_the_renewal_is_the_forced_one_against_the_stored_ca_as_root():
    settings = HostSettings(domain=DOMAIN)
    ca = tls.Acme("https://198.18.0.3/dir", "-----BEGIN CERTIFICATE-----\nx\n")
    words = shlex.split(renew_command(settings, ca))
    assert words[:2] == ["sudo", "-n"]
    program = " ".join(words)
    assert "certbot renew --non-interactive --force-renewal --no-random-sleep-on-renew" in program
    assert f"--cert-name {DOMAIN}" in program
    assert f"REQUESTS_CA_BUNDLE={settings.config_dir}/acme-ca.pem" in program
    assert "--dry-run" not in program  # that would ask Let's Encrypt's staging CA


@pytest.mark.parametrize(
    ("text", "serial"),
    [("serial=0A1b2C\n", "0A1B2C"), ("serial=7F", "7F")],
)
def test_the_serial_is_read_from_openssl(text, serial):
    assert parse_serial(text) == serial


def test_anything_else_is_not_a_serial():
    with pytest.raises(ValueError, match="serial"):
        parse_serial("unable to load certificate")


def client(requests, failed, socket_errors=0):
    return {"requests": requests, "failed": failed, "socket_errors": socket_errors,
            "latency_ms": {"p50": 4.0, "p99": 31.0}}  # fmt: skip


FIGURES = {
    "seconds": 4.3,
    "switch_seconds": None,
    "total": {"requests": 2600, "failed": 7, "non2xx": 0, "socket_errors": 7},
    "during": {"requests": 1100, "failed": 7, "no_response": 7, "p99_ms": 48.0},
    "clients": {"keepalive": client(1300, 7, 7), "close": client(1300, 0)},
    "timeline": {"t": []},
}


def test_the_result_holds_the_figures_and_both_certificates():
    result = renewal_result(FIGURES, Served("0A", True), Served("0B", True))
    assert result["renewal_seconds"] == 4.3 and "seconds" not in result
    assert result["certificate_before"] == {"serial": "0A", "verified": True, "error": None}
    assert result["new_certificate_served"] is True
    assert result["clients"] == FIGURES["clients"]
    same = renewal_result(FIGURES, Served("0A", True), Served("0A", False, "SSLError: x"))
    assert same["new_certificate_served"] is False
    assert same["certificate_after"]["error"] == "SSLError: x"


def test_renewal_rows_give_failures_per_client_duration_and_serials():
    result = renewal_result(FIGURES, Served("0A", True), Served("0B", True))
    rows = table_rows(document("t", {}, "r", {"renewal": result}))
    by_measure = {m: v for section, m, v in rows if section == "renewal"}
    assert by_measure["forced renewal under load: failed / sent"] == (
        "7 / 2600 (keep-alive 7/1300 (7 socket errors), conn/request 0/1300)"
    )
    assert by_measure["certbot renew --force-renewal took"] == "4.3 s"
    assert by_measure["while certbot ran: failed / sent, p99"] == "7 / 1100, p99 48 ms"
    assert by_measure["certificate served after"] == (
        "serial 0B, chain verifies against the local CA's root"
    )
    assert "new certificate served" not in by_measure


def test_a_renewal_that_left_the_old_certificate_says_so():
    result = renewal_result(FIGURES, Served("0A", True), Served("0A", True))
    rows = table_rows(document("t", {}, "r", {"renewal": result}))
    assert ("renewal", "new certificate served", "NO: 443 still serves the old one") in rows
