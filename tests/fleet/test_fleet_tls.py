"""TLS at the load balancer, as DigitalOcean's ends it with the certificate it issues (infra/
web.py: HTTPS 443 -> HTTP 80 on the droplets, redirect_http_to_https, the health check on
HTTP /readyz): the certificate chains to the local CA, TLS 1.2/1.3 only, HTTP redirects, the
droplets' HSTS reaches clients, the headers grade A+, and the droplets hold no certificate.

Clients are given the balancer's address and the domain as SNI and Host, and the local CA's
root explicitly; nothing resolves the domain.
"""

from __future__ import annotations

import http.client
import subprocess

import pytest

from infra.load_balancer_policy import HEALTH_CHECK, forwarding_rules
from tests.tls import observatory


@pytest.fixture
def https(lb):
    if not lb.domain:
        pytest.skip("no domain on this stack (fab local.up --domain NAME): no TLS at the balancer")
    return lb


def s_client(lb, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"{lb.address}:443", "-servername", lb.domain,
         "-verify_hostname", lb.domain, "-CAfile", lb.cafile, "-verify_return_error", *options],
        input="", capture_output=True, text=True, timeout=15,
    )  # fmt: skip


def handshake_ok(result: subprocess.CompletedProcess) -> bool:
    out = result.stdout
    return result.returncode == 0 and "Cipher is (NONE)" not in out and "Cipher is " in out


def get(lb, path: str, scheme: str = "https"):
    if scheme == "https":
        probe = lb.probe()
        conn = probe._connection()
    else:
        conn = http.client.HTTPConnection(lb.address, 80, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": lb.domain, "Connection": "close"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_the_balancers_certificate_verifies_against_the_local_ca(https):
    result = s_client(https)
    assert handshake_ok(result) and "Verify return code: 0 (ok)" in result.stdout, (
        result.stdout[-400:] + result.stderr[-300:]
    )


@pytest.mark.parametrize(
    ("option", "offered"),
    [("-tls1", False), ("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)],
)
def test_the_balancer_offers_only_tls12_and_tls13(https, option, offered):
    result = s_client(https, option, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert handshake_ok(result) is offered


def test_a_weak_tls12_cipher_is_refused(https):
    result = s_client(https, "-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0")
    assert not handshake_ok(result)


def test_http_on_the_balancer_redirects_to_https(https):
    """DigitalOcean's redirect_http_to_https: every plain-HTTP request, /readyz included (its
    health checks go from the balancer to the droplets, not through its listener)."""
    for path in ("/api/tasks?page=2", "/readyz"):
        status, headers, _ = get(https, path, scheme="http")
        assert status == 301 and headers["location"] == f"https://{https.domain}{path}"


def test_https_through_the_balancer_reaches_the_app_with_hsts(https):
    status, headers, body = get(https, "/api/tasks")
    assert status == 200 and b"tasks" in body
    assert headers["strict-transport-security"] == "max-age=63072000"


def test_the_headers_through_the_balancer_grade_a_plus(https):
    _, headers, _ = get(https, "/")
    status, redirect, _ = get(https, "/", scheme="http")
    same_host = status == 301 and redirect["location"].startswith(f"https://{https.domain}/")
    result = "redirection-to-https" if same_host else "redirection-missing"
    score = observatory.score(headers, result)
    print(f"Observatory (httpobs 0.9.3 rules) through the balancer: {score} "
          f"{observatory.grade(score)}")  # fmt: skip
    assert observatory.grade(score) == "A+"


def test_the_droplets_hold_no_certificate_and_get_checked_over_http(https, inventory, conn):
    """TLS ends at the balancer: the droplets serve port 80 to it (the target of its HTTPS
    rule) and answer its health check over HTTP; certbot is not even installed."""
    rule = next(r for r in forwarding_rules(with_domain=True) if r.terminates_tls)
    assert (rule.entry_protocol, rule.target_protocol, rule.target_port) == ("https", "http", 80)
    for web in inventory.web_hosts:
        c = conn(web.name)
        assert c.run("sudo -n test -e /etc/letsencrypt/live", hide=True, warn=True).failed
        assert c.run("ss -Hltn 'sport = :443'", hide=True).stdout.strip() == ""
        checks = c.run(
            f"sudo -n grep -c 'GET {HEALTH_CHECK.path} HTTP/1.1\" 200' "
            "/var/log/nginx/dropstack.access.log",
            hide=True, warn=True,
        ).stdout.strip()  # fmt: skip
        assert int(checks or 0) > 0, f"{web.name} got no HTTP health check answered 200"
