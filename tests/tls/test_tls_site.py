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
from tests.release.harness import steady_load
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
    assert "reuse_key = True" in renewal
    assert tls.renewal_differences(site.settings, renewal) == []


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


def test_no_ocsp_staple(site: TlsSite) -> None:
    # Stapling is off: Nginx 1.22 staples only certificates it loads at start, and the site's
    # is loaded at each handshake (docs/tls.md). pebble's certificates name no responder anyway,
    # nor have Let's Encrypt's since 2025.
    result = s_client(site, "-status")
    assert handshake_ok(result)
    assert "OCSP response: no response sent" in result.stdout
    config = Path(site.settings.nginx_dir, "sites-available", site.settings.app_name).read_text()
    assert "ssl_stapling" not in config


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


def nginx_processes(site: TlsSite) -> set[int]:
    """The master and its workers: a reload would start new workers."""
    pids = {site.nginx.pid}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() == str(site.nginx.pid):
            pids.add(int(status.parent.name))
    return pids


def installed_key(site: TlsSite) -> str:
    """The key in Nginx's file: what follows the certificates (fullchain.pem, then the key)."""
    return Path(site.settings.tls_certificate_file).read_text().rpartition("END CERTIFICATE")[2]


def test_a_forced_renewal_under_load_drops_no_request(site: TlsSite) -> None:
    """HTTPS clients send requests while certbot renews against pebble and its deploy hook
    installs the new certificate where Nginx's workers read it at each handshake. No reload:
    not one request may fail, and no client retries anything. Kept-alive clients (Python's
    and wrk's) must never see their connection closed; clients opening a connection per
    request (Python's and wrk's, a full handshake each) must all complete theirs, with the old
    certificate or the new one, while the file is replaced."""
    before, key = site.served_certificate()["serialNumber"], installed_key(site)
    processes = nginx_processes(site)
    counts: Counter[str] = Counter()
    failures: list[str] = []
    serials: set[str] = set()
    lock = threading.Lock()

    def connect() -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(DOMAIN, site.https_port, timeout=5)
        conn.sock = site.client_context().wrap_socket(
            socket.create_connection(("127.0.0.1", site.https_port), timeout=5),
            server_hostname=DOMAIN,
        )
        return conn

    def client(kind: str, stopping: threading.Event) -> None:
        deadline = time.monotonic() + 30  # bounded in time and requests
        conn = None
        for _ in range(20000):
            if stopping.is_set() or time.monotonic() > deadline:
                break
            try:
                conn = conn or connect()
                conn.request("GET", "/api/tasks", headers={"Host": DOMAIN})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures.append(f"{kind}: {exc!r}")
                conn = None  # count it, go on: every failure is reported, none retried
                continue
            with lock:
                counts[f"{kind} {response.status}"] += 1
                if kind == "per-request":  # which certificate this request's handshake got
                    serials.add(conn.sock.getpeercert()["serialNumber"])
            # Nginx ends a kept-alive connection after keepalive_requests (1000) with a
            # "Connection: close" answer, as it always does: counted, not a failure.
            if kind == "per-request" or response.getheader("Connection") == "close":
                conn.close()
                conn = None
                if kind == "keep-alive":
                    with lock:
                        counts["keep-alive Connection: close"] += 1
        if conn:
            conn.close()

    kinds = iter(["keep-alive"] * 4 + ["per-request"] * 2)

    def any_client(stopping: threading.Event) -> None:
        with lock:
            kind = next(kinds)
        client(kind, stopping)

    with (
        steady_load("127.0.0.1", 60, connections=8, domain=DOMAIN, port=site.https_port) as load,
        clients_running(any_client, count=6),
    ):
        time.sleep(0.5)
        started, before_renewal = time.monotonic(), Counter(counts)
        result = site.force_renewal()
        renewal_seconds, after_renewal = time.monotonic() - started, Counter(counts)
        time.sleep(0.5)
    after = site.served_certificate()["serialNumber"]
    wrk = {kind: {k: r[k] for k in ("requests", "non2xx", "connect", "read", "write", "timeout")}
           for kind, r in load.results.items()}  # fmt: skip
    print(f"forced renewal in {renewal_seconds:.2f}s under load: python {dict(counts)}, "
          f"{len(failures)} failed {failures[:5]}; wrk {wrk}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert failures == []
    assert {k.split()[-1] for k in counts if not k.endswith("close")} == {"200"}
    # The clients ran through the renewal, not beside it (no rate is asserted: a busy machine
    # is slower, not wrong): both kinds answered during it and after it, and the per-request
    # clients' handshakes got the old certificate and then the new one.
    for kind in ("keep-alive 200", "per-request 200"):
        assert before_renewal[kind] < after_renewal[kind] < counts[kind], (kind, counts)
    assert serials == {before, after}, serials
    for r in wrk.values():
        assert r["requests"] > 100, wrk
        assert r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"] == 0, wrk
    assert after != before  # new handshakes get the renewed certificate...
    # ...with no reload: no new worker (one from the HTTPS switch may have finished exiting).
    now = nginx_processes(site)
    assert site.nginx.pid in now and now <= processes
    assert installed_key(site) == key  # certbot kept the key (reuse_key)


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
