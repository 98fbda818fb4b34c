"""The TLS site on loopback: the certificate pebble issued, the protocols and ciphers, the
redirect, HSTS and the header grade, a renewal under load, and certbot's failures.

Tests run in file order; the one that stops pebble comes last and starts it again.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from deploy.local import acme
from deploy.provision import tls
from tests.loopback import clients_running, run_as_root
from tests.tls import clients, observatory
from tests.tls.clients import INTERMEDIATE_TLS12, INTERMEDIATE_TLS13, handshake_ok
from tests.tls.conftest import DOMAIN, TlsSite


def s_client(site: TlsSite, *options: str) -> subprocess.CompletedProcess[str]:
    """One handshake with openssl s_client (SNI: the domain), trusting pebble's root only."""
    return clients.s_client("127.0.0.1", site.https_port, DOMAIN, root_file(site), *options)


def root_file(site: TlsSite) -> str:
    """pebble's root as a file (a restarted pebble has a new one)."""
    root = site.root / "pebble-root.pem"
    root.write_text(site.ca.root())
    return str(root)


def get(site: TlsSite, path: str, scheme: str = "https", context=None, **headers: str):
    """One request to the site on loopback, with the domain as SNI and Host."""
    headers = {"Host": DOMAIN, **headers}
    if scheme == "https":
        conn = http.client.HTTPSConnection(DOMAIN, site.https_port, timeout=5)
        conn.sock = (context or site.client_context()).wrap_socket(
            socket.create_connection(("127.0.0.1", site.https_port), timeout=5),
            server_hostname=DOMAIN,
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", site.http_port, timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


# --- the certificate ---


def test_the_certificate_chain_verifies_against_pebbles_root(site: TlsSite) -> None:
    result = s_client(site)
    assert handshake_ok(result), result.stdout[-500:]
    # Issued by pebble's intermediate, which the served chain carries up to the root.
    assert "Pebble Intermediate CA" in result.stdout
    assert ("DNS", DOMAIN) in site.served_certificate()["subjectAltName"]
    print(f"certbot certonly against pebble: {site.issue_seconds:.2f}s")


def test_a_client_that_trusts_only_the_machines_bundle_refuses_it(site: TlsSite) -> None:
    # The check above can fail: the same handshake without pebble's root does not verify.
    context = ssl.create_default_context(cafile="/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(ssl.SSLCertVerificationError):
        raw = socket.create_connection(("127.0.0.1", site.https_port), timeout=5)
        with context.wrap_socket(raw, server_hostname=DOMAIN):
            pass


def test_certbot_stored_the_local_ca_for_renewals(site: TlsSite) -> None:
    renewal = Path(site.dirs.config, "renewal", f"{DOMAIN}.conf").read_text()
    assert f"server = {site.ca.ca.directory_url}" in renewal
    assert "acme-v02.api.letsencrypt.org" not in renewal
    assert f"renew_hook = {site.hook()}" in renewal


# --- protocols and ciphers ---


@pytest.mark.parametrize(
    ("option", "offered"),
    [("-tls1", False), ("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)],
)
def test_only_tls12_and_tls13_are_offered(site: TlsSite, option: str, offered: bool) -> None:
    # SECLEVEL=0: this client would offer TLS 1.0/1.1, so a refusal is the server's.
    result = s_client(site, option, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert handshake_ok(result) is offered, result.stderr[-300:]


def test_tls12_ciphers_are_the_intermediate_ones(site: TlsSite) -> None:
    """Every TLS 1.2 cipher this OpenSSL knows, one handshake each: the server accepts only
    Mozilla's list (the ECDSA ones, since certbot's key is ECDSA)."""
    tried, accepted = clients.accepted_tls12_ciphers(
        "127.0.0.1", site.https_port, DOMAIN, root_file(site)
    )
    print(f"TLS 1.2: {tried} ciphers tried, accepted {sorted(accepted)}")
    assert accepted <= INTERMEDIATE_TLS12
    assert accepted == {c for c in INTERMEDIATE_TLS12 if c.startswith("ECDHE-ECDSA-")}


@pytest.mark.parametrize("suite", clients.TLS13_SUITES)
def test_tls13_suites_are_the_intermediate_ones(site: TlsSite, suite: str) -> None:
    result = s_client(site, "-tls1_3", "-ciphersuites", suite)
    assert handshake_ok(result) is (suite in INTERMEDIATE_TLS13)


def test_no_session_tickets_in_tls12(site: TlsSite) -> None:
    result = s_client(site, "-tls1_2")
    assert handshake_ok(result)
    # s_client prints the ticket's lifetime hint when the server issues one.
    assert "TLS session ticket lifetime hint" not in result.stdout


def test_no_ocsp_staple_since_pebble_names_no_responder(site: TlsSite) -> None:
    # Stapling is on and conditional: with a certificate that names no responder (pebble's,
    # Let's Encrypt's since 2025) Nginx sends none and says why once.
    result = s_client(site, "-status")
    assert "OCSP response: no response sent" in result.stdout
    log = (site.root / "log/error.log").read_text()
    assert "no OCSP responder URL in the certificate" in log


def test_testssl_finds_nothing_medium_or_worse(site: TlsSite) -> None:
    """testssl.sh (Debian) on the protocols, ciphers, server defaults and headers, offline:
    --ip pins loopback, --nodns none makes no lookups. Its full run (vulnerabilities, client
    simulations, every cipher) takes about 90 s; these four groups about 20 s."""
    if not shutil.which("testssl"):
        pytest.fail("testssl is not installed; bin/setup installs testssl.sh")
    root = site.root / "pebble-root.pem"
    root.write_text(site.ca.root())
    report = site.root / "testssl.json"
    report.unlink(missing_ok=True)
    started = time.monotonic()
    subprocess.run(
        ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
         "--ip", "127.0.0.1", "--add-ca", str(root), "--jsonfile", str(report),
         "--protocols", "--std", "--server-defaults", "--headers",
         f"{DOMAIN}:{site.https_port}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    findings = json.loads(report.read_text())
    bad = [(f["id"], f["severity"], f["finding"]) for f in findings
           if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]  # fmt: skip
    print(f"testssl: {len(findings)} findings in {time.monotonic() - started:.0f}s")
    # The one finding about pebble rather than the site: its certificates name no revocation
    # endpoint at all (Let's Encrypt's name a CRL). Nothing about the server's configuration.
    assert [b for b in bad if b[0] != "cert_revocation"] == []
    ids = {f["id"] for f in findings}
    assert ids >= {"TLS1", "TLS1_1", "TLS1_2", "TLS1_3"} and any(i.startswith("HSTS") for i in ids)


# --- HTTP: the redirect, the health checks, the challenge path ---


def test_http_redirects_to_https_on_the_domain(site: TlsSite) -> None:
    status, headers, _ = get(site, "/api/tasks?page=2", scheme="http")
    assert status == 301
    assert headers["Location"] == f"https://{DOMAIN}/api/tasks?page=2"


@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
def test_health_checks_answer_over_plain_http(site: TlsSite, path: str) -> None:
    status, headers, body = get(site, path, scheme="http")
    assert status == 200 and json.loads(body) == {"app": True, "path": path}
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_acme_challenges_are_served_over_plain_http(site: TlsSite) -> None:
    challenge = Path(site.settings.acme_webroot, ".well-known/acme-challenge/probe-token")
    challenge.parent.mkdir(parents=True, exist_ok=True)
    challenge.write_text("token.thumbprint")
    try:
        status, _, body = get(site, "/.well-known/acme-challenge/probe-token", scheme="http")
        assert (status, body) == (200, "token.thumbprint")
    finally:
        challenge.unlink()


def test_https_reaches_the_app_with_hsts(site: TlsSite) -> None:
    status, headers, body = get(site, "/api/tasks")
    assert status == 200 and json.loads(body)["app"] is True
    assert headers["Strict-Transport-Security"] == "max-age=63072000"


def test_the_headers_grade_a_plus(site: TlsSite) -> None:
    _, headers, _ = get(site, "/")
    status, redirect, _ = get(site, "/", scheme="http")
    same_host = status == 301 and redirect["Location"].startswith(f"https://{DOMAIN}/")
    result = "redirection-to-https" if same_host else "redirection-missing"
    score = observatory.score(headers, result)
    print(
        f"Observatory (httpobs 0.9.3 rules): {score} {observatory.grade(score)}: "
        f"{observatory.results(headers, result)}"
    )
    assert observatory.grade(score) == "A+"
    # The scorer can fail: the same headers without the CSP grade lower.
    without = {k: v for k, v in headers.items() if k != "Content-Security-Policy"}
    assert observatory.grade(observatory.score(without, result)) != "A+"


# --- renewal ---


def test_a_forced_renewal_under_load_drops_no_request(site: TlsSite) -> None:
    """Keep-alive HTTPS clients send requests while certbot renews against pebble and its deploy
    hook validates and reloads Nginx. A reload lets old workers finish their requests and
    close idle keep-alive connections; a client whose next request meets that close retries it
    on a new connection, as HTTP/1.1 clients do for idempotent requests (RFC 9112 9.3.1)."""
    before = site.served_certificate()["serialNumber"]
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    reconnects = Counter()
    lock = threading.Lock()

    def connect():
        return site.client_context().wrap_socket(
            socket.create_connection(("127.0.0.1", site.https_port), timeout=5),
            server_hostname=DOMAIN,
        )

    def client(stopping: threading.Event) -> None:
        conn = http.client.HTTPSConnection(DOMAIN, site.https_port, timeout=5)
        conn.sock = connect()
        deadline = time.monotonic() + 30  # bounded in time and requests
        for _ in range(20000):
            if stopping.is_set() or time.monotonic() > deadline:
                break
            for attempt in (1, 2):
                try:
                    conn.request("GET", "/api/tasks", headers={"Host": DOMAIN})
                    response = conn.getresponse()
                    response.read()
                    with lock:
                        statuses[response.status] += 1
                    if response.getheader("Connection") == "close":
                        conn.close()
                        conn.sock = connect()
                        with lock:
                            reconnects["closed by the server"] += 1
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                        ssl.SSLEOFError) as exc:  # fmt: skip
                    # The idle connection was closed by an old worker before this request
                    # reached it: nothing was processed, so it is retried once.
                    conn.close()
                    conn.sock = connect()
                    with lock:
                        reconnects[type(exc).__name__] += 1
                    if attempt == 2:
                        with lock:
                            errors.append(repr(exc))
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        errors.append(repr(exc))
                    return
        conn.close()

    with clients_running(client):
        time.sleep(0.3)
        started = time.monotonic()
        result = site.force_renewal()
        renewal_seconds = time.monotonic() - started
        time.sleep(0.3)
    after = site.served_certificate()["serialNumber"]
    print(
        f"forced renewal in {renewal_seconds:.2f}s under load: {dict(statuses)}, "
        f"{len(errors)} failed, reconnects {dict(reconnects)}"
    )
    assert result.returncode == 0, result.stderr
    assert errors == []
    assert set(statuses) == {200} and sum(statuses.values()) > 100
    # The load spanned the reload: the old workers gave up their keep-alive connections.
    assert sum(reconnects.values()) >= 1
    assert after != before  # the reload put the new certificate in service


def test_status_reads_days_to_expiry_from_the_host(site: TlsSite) -> None:
    probe = run_as_root(tls.certificates_probe_command(f"{site.dirs.config}/live"))
    (state,) = tls.parse_certificates(probe.stdout, time.time())
    assert state.name == DOMAIN and state.problem is None
    assert acme.CERTIFICATE_DAYS - 1 <= state.days_left <= acme.CERTIFICATE_DAYS
    # Seen 70 days later, past certbot's 30-day renewal point, the same certificate is flagged.
    (late,) = tls.parse_certificates(probe.stdout, time.time() + 70 * 86400)
    assert late.problem and late.problem.startswith("RENEWAL FAILED")


# --- certbot's failures: one line, and the site keeps serving as it was ---


def assert_still_serving(site: TlsSite, context=None) -> None:
    status, _, _ = get(site, "/readyz", scheme="http")
    assert status == 200
    status, _, _ = get(site, "/api/tasks", context=context)
    assert status == 200


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_domain_pointing_elsewhere_fails_in_one_line(site: TlsSite) -> None:
    other = "elsewhere.dropstack.test"
    site.ca.dns_request(acme.a_record_request(other, "127.0.0.2"))
    result = site.certonly(other)
    line = one_line(result.stderr)
    assert result.returncode == 1
    assert line.startswith(f"certificate for {other} not issued: the CA could not fetch")
    assert "127.0.0.2" in line
    assert not Path(site.dirs.config, "live", other).exists()
    assert_still_serving(site)


def test_a_domain_that_does_not_resolve_fails_in_one_line(site: TlsSite) -> None:
    other = "unknown.dropstack.test"
    line = one_line(site.certonly(other).stderr)
    assert line.startswith(f"certificate for {other} not issued: the domain does not resolve")
    assert_still_serving(site)


def test_a_rate_limit_answer_fails_in_one_line(site: TlsSite) -> None:
    # pebble enforces no rate limits; this is Let's Encrypt's answer as certbot 2.1 prints it,
    # through the very script provisioning runs, with a stand-in for certbot.
    answer = (
        "Saving debug log to /var/log/letsencrypt/letsencrypt.log\n"
        "Requesting a certificate for app.example.com\n"
        "An unexpected error occurred:\n"
        "Error creating new order :: too many certificates (5) already issued for this exact "
        "set of domains in the last 168 hours: app.example.com, retry after 2026-12-03T10:00:00Z"
        ": see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-"
        "hostnames\nAsk for help or search for solutions at https://community.letsencrypt.org.\n"
    )
    fake = ["sh", "-c", 'printf "%s" "$1"; exit 1', "certbot", answer]
    script = tls.certify_script("app.example.com", tls.LETS_ENCRYPT_DIRECTORY, fake)
    result = run_as_root(script, check=False)
    line = one_line(result.stderr)
    assert result.returncode == 1
    assert line.startswith("certificate for app.example.com not issued: the CA refused: rate lim")
    assert "retry after 2026-12-03T10:00:00Z" in line


def test_a_ca_that_is_down_fails_in_one_line(site: TlsSite) -> None:
    """pebble stopped: certbot cannot reach the directory. (Last: pebble is started again.)"""
    # The served certificate chains to this pebble's root; the restarted one makes a new root.
    context = site.client_context()
    site.ca.stop_pebble()
    try:
        result = site.certonly("down.dropstack.test")
    finally:
        site.ca.start_pebble()
    line = one_line(result.stderr)
    assert line.startswith(
        f"certificate for down.dropstack.test not issued: the ACME server "
        f"{site.ca.ca.directory_url} cannot be reached"
    ), line
    assert "Connection refused" in line
    assert_still_serving(site, context)
