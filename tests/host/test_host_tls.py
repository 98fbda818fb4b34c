"""HTTPS on a web host that has a domain, from outside, as a browser meets it: the certificate
chains to the CA the inventory names (the local stack's pebble: its root from pebble's
management API), only TLS 1.2/1.3 with Mozilla's intermediate ciphers, HTTP redirects, HSTS,
the certificate loaded per handshake (no stapling), testssl.sh finds nothing MEDIUM or worse,
the headers grade A+ by the Observatory's rules; then certbot's failure when the CA is down,
and a forced renewal under wrk's load that drops no request.

Nothing here resolves the domain: every client is given the host's address and the domain as
SNI and Host (openssl -servername, testssl.sh --ip, wrk's Host header), and the CA explicitly.
The last two tests change things (the certificate is renewed; then the CA is stopped and
started again, which leaves pebble with a new root and without the host's ACME account): they
stay last in the file, in that order.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.inventory import local_state_dir
from deploy.local import acme_setup
from deploy.provision import tls
from deploy.shell import join
from tests.host.conftest import local_ca_root
from tests.release.harness import steady_load
from tests.tls import clients, observatory
from tests.tls.clients import INTERMEDIATE_TLS12, INTERMEDIATE_TLS13, handshake_ok

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


@pytest.fixture
def https(site, settings):
    """The site over HTTPS on this host; a host without a domain (or behind a balancer that
    ends TLS) has no HTTPS of its own to test."""
    if not settings.tls:
        pytest.skip("no domain on this host (fab local.up --domain NAME): no HTTPS to test")
    return site


def s_client(site, *options: str, cafile: str | None = None) -> subprocess.CompletedProcess:
    """One handshake (SNI: the domain), verifying the chain and the name against the CA."""
    return clients.s_client(site.address, 443, site.name, cafile or site.cafile, *options)


def served_serial(site) -> str:
    """The serial number of the certificate 443 serves now (no verification: it may chain to a
    root pebble no longer has)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((site.address, 443), timeout=5)
    with raw, context.wrap_socket(raw, server_hostname=site.name) as conn:
        der = conn.getpeercert(binary_form=True)
    done = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                          input=der, capture_output=True, check=True)  # fmt: skip
    return done.stdout.decode().strip()


# --- the certificate ---


def test_the_chain_verifies_against_the_local_ca(https):
    result = s_client(https)
    assert handshake_ok(result), (
        f"{https.name} on {https.address}:443 does not verify against {https.cafile}: "
        f"{result.stdout[-400:]}{result.stderr[-300:]}"
    )


def test_a_client_trusting_only_the_system_store_refuses_it(https, inventory):
    if not inventory.data.get("acme_directory"):
        pytest.skip("a public CA's certificate is in the system store by design")
    result = s_client(https, cafile=tls.SYSTEM_CA_BUNDLE)
    assert not handshake_ok(result), "a certificate from the local CA verified without it"


def test_the_certificate_is_the_domains_from_certbot(https, host, settings):
    names = host.run(
        f"sudo -n openssl x509 -noout -ext subjectAltName -in "
        f"{shlex.quote(settings.tls_cert_dir)}/cert.pem"
    ).stdout
    assert f"DNS:{settings.domain}" in names, names


@pytest.mark.parametrize(
    ("option", "offered"),
    [("-tls1", False), ("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)],
)
def test_only_tls12_and_tls13_are_offered(https, option, offered):
    # SECLEVEL=0: this client would offer TLS 1.0/1.1, so a refusal is the server's.
    result = s_client(https, option, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert handshake_ok(result) is offered, result.stdout[-300:] + result.stderr[-300:]


def test_tls12_ciphers_are_the_intermediate_ones(https):
    """Every TLS 1.2 cipher this OpenSSL knows, one handshake each: the host accepts only
    Mozilla's intermediate list (its ECDSA suites: certbot's key is ECDSA)."""
    tried, accepted = clients.accepted_tls12_ciphers(https.address, 443, https.name, https.cafile)
    print(f"TLS 1.2: {tried} ciphers tried, accepted {sorted(accepted)}")
    assert accepted <= INTERMEDIATE_TLS12
    assert accepted == {c for c in INTERMEDIATE_TLS12 if c.startswith("ECDHE-ECDSA-")}


@pytest.mark.parametrize("suite", clients.TLS13_SUITES)
def test_tls13_suites_are_the_intermediate_ones(https, suite):
    result = s_client(https, "-tls1_3", "-ciphersuites", suite)
    assert handshake_ok(result) is (suite in INTERMEDIATE_TLS13)


def test_the_certificate_is_loaded_per_handshake_without_stapling(https, host, settings):
    """The site names its certificate file through a variable (renewals need no reload), so
    Nginx 1.22 cannot staple: stapling is off, and no response is sent. The file is the one
    certbot's deploy hook installs, readable by the workers and checked by the hook."""
    config = host.run("sudo -n nginx -T").stdout
    directives = [line.split("#", 1)[0] for line in config.splitlines()]  # comments may say why
    assert not [d for d in directives if "ssl_stapling" in d], "stapling is configured"
    assert f"ssl_certificate ${settings.nginx_id}_tls_certificate;" in config
    assert f"default {settings.tls_certificate_file};" in config
    result = s_client(https, "-status")
    assert handshake_ok(result)
    assert "OCSP response: no response sent" in result.stdout
    mode = host.run(f"sudo -n stat -c '%a %U %G' {shlex.quote(settings.tls_certificate_file)}")
    assert mode.stdout.split() == ["640", "root", settings.web_group]
    check = host.run(f"sudo -n {join(tls.check_certificate_command(settings))}")
    assert check.rc == 0, check.stderr


def test_testssl_finds_nothing_medium_or_worse(https, tmp_path):
    """testssl.sh (Debian 3.0.8) on protocols, ciphers, server defaults and headers: --ip pins
    the host's address, --nodns none makes no lookups, --add-ca gives it the local CA."""
    if not shutil.which("testssl"):
        pytest.fail("testssl is not installed; bin/setup installs testssl.sh")
    report = tmp_path / "testssl.json"
    started = time.monotonic()
    subprocess.run(
        ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
         "--ip", https.address, "--add-ca", https.cafile, "--jsonfile", str(report),
         "--protocols", "--std", "--server-defaults", "--headers", f"{https.name}:443"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    findings = json.loads(report.read_text())
    bad = [(f["id"], f["severity"], f["finding"]) for f in findings
           if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]  # fmt: skip
    print(f"testssl: {len(findings)} findings in {time.monotonic() - started:.0f}s; "
          f"MEDIUM or worse: {bad}")  # fmt: skip
    # The one finding about pebble, not the host: its certificates name no revocation endpoint
    # (no CRL, no OCSP; Let's Encrypt's name a CRL). Nothing about the host's configuration.
    assert [b for b in bad if b[0] != "cert_revocation"] == []
    ids = {f["id"] for f in findings}
    assert ids >= {"TLS1", "TLS1_1", "TLS1_2", "TLS1_3"} and any(i.startswith("HSTS") for i in ids)


# --- HTTP: the redirect, the health checks; HSTS and the header grade ---


def test_http_redirects_to_https_on_the_domain(https):
    response = https.get_http("/any/page?page=2")
    assert response.status == 301
    assert response.headers["Location"] == f"https://{https.name}/any/page?page=2"


@pytest.mark.parametrize("kind", ["readiness_path", "liveness_path"])
def test_health_checks_answer_over_plain_http(https, settings, kind):
    """A load balancer checks over HTTP and must get the app's answer, not a redirect (the
    contract's health paths)."""
    path = getattr(settings.app, kind)
    response = https.get_http(path)
    assert response.status == 200, f"http {path}: {response.status}"


def test_https_reaches_the_app_with_hsts(https, settings):
    response = https.get(settings.app.readiness_path)
    assert response.status == 200, f"https {settings.app.readiness_path}: {response.status}"
    assert response.headers["Strict-Transport-Security"] == f"max-age={settings.hsts_max_age}"


def test_the_headers_grade_a_plus(https):
    headers = dict(https.get("/").headers.items())
    redirect = https.get_http("/")
    location = redirect.headers.get("Location", "")
    result = (
        "redirection-to-https"
        if redirect.status in (301, 302, 307, 308) and location.startswith(f"https://{https.name}/")
        else "redirection-missing"
    )
    score = observatory.score(headers, result)
    print(f"Observatory (httpobs 0.9.3 rules): {score} {observatory.grade(score)}: "
          f"{observatory.results(headers, result)}")  # fmt: skip
    assert observatory.grade(score) == "A+"


# --- the CA down, then a renewal under load (these change state: last) ---


def up_again() -> subprocess.CompletedProcess:
    """`fab local.up` with the running stack's own shape: it starts what stopped."""
    record = json.loads((local_state_dir() / "stack.json").read_text())
    shape = ["--web-count", str(record["web_count"]), "--db-pool", str(record.get("db_pool", 0))]
    shape += ["--load-balancer"] if record.get("load_balancer") else []
    shape += ["--domain", record["domain"]] if record.get("domain") else []
    done = subprocess.run([FAB, "local.up", *shape], cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    print(done.stdout + done.stderr)
    return done


def nginx_processes(host) -> set[str]:
    """Nginx's master and workers: a reload would start new workers."""
    command = "sudo -n sh -c 'pid=$(cat /run/nginx.pid); echo $pid; pgrep -P $pid'"
    return set(host.run(command).stdout.split())


def test_a_forced_renewal_under_load_fails_no_request(https, host, settings, inventory, tmp_path):
    """wrk on 443 (one run opening a connection per request, one keeping connections alive)
    while certbot renews against the stored CA (a forced renewal, never --dry-run, which asks
    Let's Encrypt's staging) and its deploy hook installs the certificate where Nginx's workers
    read it at each handshake. No reload: nothing may fail, kept-alive or not, and the same
    Nginx processes serve the new certificate."""
    before, processes = served_serial(https), nginx_processes(host)
    renew = tls.force_renewal_command(settings, tls.acme_from_inventory(inventory))
    with steady_load(https.address, seconds=60, connections=8, domain=https.name) as load:
        started = time.monotonic()
        result = host.run(f"sudo -n {join(renew)}")
        seconds = time.monotonic() - started
        time.sleep(2)  # requests with the new certificate
    assert result.rc == 0, result.stderr
    failed = {
        kind: r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
        for kind, r in load.results.items()
    }
    total = {kind: r["requests"] for kind, r in load.results.items()}
    print(f"forced renewal in {seconds:.1f} s under load: failed {failed} of {total}")
    after = served_serial(https)
    assert after != before, "443 still serves the old certificate: the deploy hook did not run"
    assert nginx_processes(host) <= processes, "Nginx was reloaded: the renewal must not"
    root = tmp_path / "root.pem"
    root.write_text(local_ca_root(inventory) if inventory.data.get("acme_directory") else "")
    assert handshake_ok(s_client(https, cafile=str(root) if root.read_text() else None))
    assert all(total[k] > 100 for k in total), total
    # Neither a connection per request nor kept-alive connections: nothing may fail at all,
    # and wrk retries nothing.
    assert failed == {"close": 0, "keepalive": 0}, load.results


def reissue_from_the_restarted_ca(host, settings, inventory):
    """Leave the host as the suites after this one expect it: serving a certificate that chains
    to the CA's current root. A restarted pebble has a new root and has forgotten every
    account (Let's Encrypt does neither), so the host's account is dropped and the certificate
    issued again in place (a new account, the same key), its deploy hook installing it."""
    host.run("sudo -n rm -rf /etc/letsencrypt/accounts")
    command = tls.certonly_command(settings, tls.acme_from_inventory(inventory))
    return host.run(f"sudo -n {join([*command, '--force-renewal'])}")


def test_a_ca_that_is_down_fails_in_one_line_and_the_site_keeps_serving(
    https, host, settings, inventory, tmp_path
):
    """certbot's first issuance (provisioning's own command, into scratch directories so the
    host's certificate is untouched) with pebble stopped: one line naming the domain and the
    cause; 443 keeps serving. `fab local.up` then starts pebble and challtestsrv again, and
    the same command succeeds: a fresh account, and an HTTP-01 validation that needs the
    domain's A record, which `up` added again."""
    if inventory["stack"] != "local":
        pytest.skip("stops the local stack's CA; a real stack's CA is Let's Encrypt")
    scratch = "/tmp/dropstack-ca-down"
    dirs = tls.CertbotDirs(f"{scratch}/config", f"{scratch}/work", f"{scratch}/logs")
    command = tls.certonly_command(settings, tls.acme_from_inventory(inventory), dirs, hook="true")
    assert acme_setup.stop_ca(), "the local CA was not running"
    try:
        result = host.run(f"sudo -n {join(command)}")
        serving = https.get(settings.app.liveness_path).status
    finally:
        host.run(f"sudo -n rm -rf {scratch}")
        restarted = up_again()
    try:
        again = host.run(f"sudo -n {join(command)}")
    finally:
        host.run(f"sudo -n rm -rf {scratch}")
        reissued = reissue_from_the_restarted_ca(host, settings, inventory)
    current_root = tmp_path / "root.pem"
    current_root.write_text(local_ca_root(inventory))
    lines = result.stderr.strip().splitlines()
    print(f"certbot with the CA down: {lines}")
    assert result.rc != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"certificate for {settings.domain} not issued: the ACME server ")
    assert "cannot be reached (is the CA down?)" in lines[0]
    assert serving == 200
    assert restarted.returncode == 0 and acme_setup.ca_running(), restarted.stderr
    assert "starting both again" in restarted.stdout
    assert again.rc == 0, again.stderr
    assert reissued.rc == 0, reissued.stderr
    assert handshake_ok(s_client(https, cafile=str(current_root))), (
        "443 does not chain to the restarted CA's root"
    )
