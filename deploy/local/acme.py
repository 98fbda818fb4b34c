"""A local ACME CA for the local stack, as data: Let's Encrypt's test CA ``pebble`` and its test
DNS server ``pebble-challtestsrv`` (both in Debian 12's ``pebble`` package).

Pure builders only: the files to write, the commands to run and the management requests to
send; the local stack's lifecycle runs them (in a network namespace of its own, at a 198.18.x
address), and tests/tls runs the very same ones on loopback. Certbot on a web host then uses
``directory_url`` as its ``--server`` and ``listener_ca`` as its CA bundle (the inventory's
``acme_directory`` and ``acme_ca_cert``), and nothing else differs from Let's Encrypt.

Pebble keeps no state: every start makes a new issuing root (fetch it again from
``roots_url``) and forgets every account and certificate, so ``local.up`` restarts both
processes together and re-adds the DNS records. The listener certificate (what certbot
verifies when it talks to pebble) is ours and survives restarts.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from deploy import shell

# Full speed and no simulated faults: pebble otherwise sleeps up to 15 s before validating and
# rejects 5% of good nonces (certbot retries badNonce, but the tests would be slow and flaky).
CERTIFICATE_DAYS = 90
PEBBLE_ENVIRONMENT = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}


@dataclass(frozen=True)
class AcmeCa:
    """Where the local CA listens and keeps its files.

    ``address``: the CA's own address (127.0.0.1 in tests; a 198.18.x address in its namespace
    on the local stack). ``http_port``: where pebble fetches HTTP-01 challenges on the domain's
    address (80 on a web host; the test Nginx's port in tests). ``dns_port``: challtestsrv's
    DNS, which pebble is pointed at with ``-dnsserver``.
    """

    directory: str
    address: str = "127.0.0.1"
    acme_port: int = 14000
    management_port: int = 15000
    dns_port: int = 8053
    dns_management_port: int = 8055
    http_port: int = 80

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.address)  # ValueError names the bad value
        for name in ("acme_port", "management_port", "dns_port", "dns_management_port",
                     "http_port"):  # fmt: skip
            port = getattr(self, name)
            if not (isinstance(port, int) and 0 < port < 65536):
                raise ValueError(f"{name}: {port!r} is not a TCP/UDP port (1..65535)")

    # --- files ---
    @property
    def config_path(self) -> str:
        return f"{self.directory}/pebble-config.json"

    @property
    def listener_ca(self) -> str:
        """The CA that signed pebble's listener certificate: certbot's REQUESTS_CA_BUNDLE."""
        return f"{self.directory}/listener-ca.pem"

    @property
    def listener_ca_key(self) -> str:
        return f"{self.directory}/listener-ca.key"

    @property
    def listener_cert(self) -> str:
        return f"{self.directory}/listener.pem"

    @property
    def listener_key(self) -> str:
        return f"{self.directory}/listener.key"

    # --- addresses ---
    @property
    def directory_url(self) -> str:
        """The ACME directory: the inventory's ``acme_directory``, certbot's ``--server``."""
        return f"https://{self.address}:{self.acme_port}/dir"

    @property
    def roots_url(self) -> str:
        """Pebble's current issuing root (new on every start), for clients of the site."""
        return f"https://{self.address}:{self.management_port}/roots/0"

    @property
    def dns_management_url(self) -> str:
        return f"http://{self.address}:{self.dns_management_port}"


def pebble_config(ca: AcmeCa) -> str:
    """pebble's JSON configuration. No OCSP responder URL: pebble has no responder, so issued
    certificates name none and Nginx's stapling stays idle (as with Let's Encrypt since 2025)."""
    config = {
        "pebble": {
            "listenAddress": f"{ca.address}:{ca.acme_port}",
            "managementListenAddress": f"{ca.address}:{ca.management_port}",
            "certificate": ca.listener_cert,
            "privateKey": ca.listener_key,
            "httpPort": ca.http_port,
            # TLS-ALPN-01 is never offered by certbot --webroot; the port is required anyway.
            "tlsPort": 5001,
            "ocspResponderURL": "",
            # Let's Encrypt's 90 days, not pebble's default five years: renewal timing, and
            # scanners' validity checks, see what a real certificate gets.
            "certificateValidityPeriod": CERTIFICATE_DAYS * 86400,
            "externalAccountBindingRequired": False,
        }
    }
    return json.dumps(config, indent=2) + "\n"


def listener_certificate_commands(ca: AcmeCa) -> list[list[str]]:
    """openssl commands making a small CA and, signed by it, pebble's listener certificate for
    its address (what Debian's package lacks). Run once; the files survive pebble restarts."""
    d = ca.directory
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    return [
        ["openssl", "req", "-x509", *ec, "-days", "3650", "-subj", "/CN=dropstack local ACME CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", ca.listener_ca_key, "-out", ca.listener_ca],
        ["openssl", "req", "-new", *ec, "-subj", f"/CN={ca.address}",
         "-keyout", ca.listener_key, "-out", f"{d}/listener.csr"],
        ["openssl", "x509", "-req", "-in", f"{d}/listener.csr", "-CA", ca.listener_ca,
         "-CAkey", ca.listener_ca_key, "-CAcreateserial", "-days", "3650",
         "-extfile", f"{d}/listener.ext", "-out", ca.listener_cert],
    ]  # fmt: skip


def listener_extensions(ca: AcmeCa) -> str:
    """The extensions file (``listener.ext``) the last listener command reads."""
    return (
        f"subjectAltName=IP:{ca.address},DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )


def pebble_command(ca: AcmeCa) -> list[str]:
    """Run with PEBBLE_ENVIRONMENT. Resolves every name through challtestsrv, never the
    machine's resolver, so a domain is "ours" only if challtestsrv says so."""
    return ["pebble", "-config", ca.config_path, "-dnsserver", f"{ca.address}:{ca.dns_port}"]


def challtestsrv_command(ca: AcmeCa) -> list[str]:
    """DNS only: pebble validates HTTP-01 against the real Nginx, not challtestsrv's HTTP server,
    so those listeners are switched off. No default answers: a name without a record does not
    resolve (NXDOMAIN-like), as an unconfigured domain would not."""
    return [
        "pebble-challtestsrv",
        "-dns01", f"{ca.address}:{ca.dns_port}",
        "-management", f"{ca.address}:{ca.dns_management_port}",
        "-http01", "", "-https01", "", "-tlsalpn01", "",
        "-defaultIPv4", "", "-defaultIPv6", "",
    ]  # fmt: skip


def a_record_request(domain: str, address: str) -> tuple[str, bytes]:
    """(path, JSON body) to POST to challtestsrv's management URL: the domain's A record."""
    ipaddress.IPv4Address(address)
    return "/add-a", json.dumps({"host": f"{domain}.", "addresses": [address]}).encode()


def clear_a_record_request(domain: str) -> tuple[str, bytes]:
    return "/clear-a", json.dumps({"host": f"{domain}."}).encode()


# --- the local stack's CA ---

# Ports on the CA's own address (deploy/local/network.py ACME_ADDRESS). The ACME API is on 443,
# as Let's Encrypt's is, so the web hosts reach it through the cloud firewall's ordinary
# "https (apt, certbot)" outbound rule; the management APIs answer this machine only.
LOCAL_ACME_PORT = 443
LOCAL_MANAGEMENT_PORT = 15000
LOCAL_DNS_PORT = 53
LOCAL_DNS_MANAGEMENT_PORT = 8055
PROCESS_NAMES = ("pebble", "pebble-challtestsrv")


def local_ca(directory: str, address: str) -> AcmeCa:
    """The local stack's CA at ``address`` in its namespace, files in ``directory``."""
    return AcmeCa(
        directory, address=address, acme_port=LOCAL_ACME_PORT,
        management_port=LOCAL_MANAGEMENT_PORT, dns_port=LOCAL_DNS_PORT,
        dns_management_port=LOCAL_DNS_MANAGEMENT_PORT, http_port=80,
    )  # fmt: skip


def is_ca_process_of(cmdline: list[str], address: str) -> bool:
    """pebble or challtestsrv of the CA at ``address`` (found again by the address they use)."""
    if not cmdline or cmdline[0].rsplit("/", 1)[-1] not in PROCESS_NAMES:
        return False
    return any(arg.startswith(f"{address}:") for arg in cmdline)


def txt_record_request(domain: str, value: str) -> tuple[str, bytes]:
    """(path, JSON body) setting the DNS-01 challenge's TXT record on challtestsrv."""
    body = {"host": f"_acme-challenge.{domain}.", "value": value}
    return "/set-txt", json.dumps(body).encode()


def clear_txt_record_request(domain: str) -> tuple[str, bytes]:
    return "/clear-txt", json.dumps({"host": f"_acme-challenge.{domain}."}).encode()


def dns_hook_command(ca: AcmeCa, action: str) -> list[str]:
    """certbot's --manual-auth-hook ("set") or --manual-cleanup-hook ("clear") for DNS-01: the
    TXT record through challtestsrv's management API, as DigitalOcean's own DNS sets it for
    the certificate its load balancer gets. certbot gives the hook CERTBOT_DOMAIN and
    CERTBOT_VALIDATION in the environment."""
    if action not in ("set", "clear"):
        raise ValueError(f"dns hook action: {action!r} is not set or clear")
    if action == "set":
        body = 'printf \'{"host":"_acme-challenge.%s.","value":"%s"}\' "$CERTBOT_DOMAIN" '
        body += '"$CERTBOT_VALIDATION"'
    else:
        body = 'printf \'{"host":"_acme-challenge.%s."}\' "$CERTBOT_DOMAIN"'
    script = body + " | curl -sS -f --noproxy '*' -m 10 -X POST --data-binary @- \"$1\""
    return shell.script(script, f"{ca.dns_management_url}/{action}-txt", name="dns-01-hook")
