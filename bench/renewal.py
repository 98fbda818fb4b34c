"""Benchmark 5: a forced certificate renewal under HTTPS load (issue 14: "zero failed requests
under load during a renewal").

A one-host local droplet with a domain (`fab local.up --domain app.dropstack.test`, which adds
the stack's own ACME CA, pebble), provisioned (certbot's first certificate over HTTP-01) and
deployed; then the zero-downtime benchmark's steady load (bench/load.py: a keep-alive and a
connection-per-request wrk client, 4 connections each, pausing 25 ms) over HTTPS to the host's
443, while certbot renews on the host exactly as the host test does: `certbot renew
--force-renewal` against the CA stored in its renewal configuration (never `--dry-run`, which
asks Let's Encrypt's staging), running its deploy hook, whatever that hook does.

Nothing resolves the domain on this machine and /etc/hosts is not touched: wrk's URL names the
domain, so its SNI and Host are the domain, and bench/switch_load.lua connects to the host's
address instead of resolving it (bench/wrk.py checks that address is a test host). wrk verifies
no certificate, so the certificate 443 serves is read before and after the renewal over a
handshake of its own (SNI the domain) that verifies the chain against pebble's root, fetched
from pebble's management API trusting only the CA the inventory names: never the environment's
bundles. Recorded: failed requests per client, the renewal's duration, the serial numbers before
and after, and a timeline of the load for bench/charts.py.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from dataclasses import dataclass

from fabric import Config

from bench import timeline
from bench.deploy_times import bring_up
from bench.drive import REPO, BenchFailed, Source, WebHost, fab, inventory, note
from bench.load import CLIENT_KINDS, CONNECTIONS_PER_CLIENT, PAUSE_MS, steady_load
from bench.zero_downtime import switch_result
from deploy import host_model
from deploy.host_model import HostSettings
from deploy.inventory import Inventory
from deploy.local import acme_setup
from deploy.provision import tls
from deploy.shell import as_root, join

DOMAIN = "app.dropstack.test"
AFTER_SECONDS = 2.0  # load on the renewed certificate before the clients stop (plus the settle)
MAX_LOAD_SECONDS = 120  # wrk's -d and request cap: the renewal takes seconds
RENEW_TIMEOUT = 300


@dataclass(frozen=True)
class Served:
    """The certificate 443 served to one handshake: its serial, and whether its chain verified
    against the root given (with why not)."""

    serial: str
    verified: bool
    error: str = ""

    def to_json(self) -> dict:
        return {"serial": self.serial, "verified": self.verified, "error": self.error or None}


def parse_serial(text: str) -> str:
    """``openssl x509 -noout -serial``'s answer (``serial=0A1B...``) as the hex digits."""
    line = text.strip()
    if not line.startswith("serial="):
        raise ValueError(f"openssl x509 -serial: {line[:80]!r} is not 'serial=<hex>'")
    return line.removeprefix("serial=").upper()


def renew_command(settings: HostSettings, ca: tls.Acme) -> str:
    """The forced renewal the host test runs, as root on the host: provisioning's own builder."""
    return join(as_root(tls.force_renewal_command(settings, ca)))


def pebble_root(inv: Inventory) -> str:
    """Pebble's current issuing root (new at each pebble start) from its management API,
    trusting exactly the CA the inventory names for the ACME listener."""
    return acme_setup.inventory_root(inv)


def served(address: str, domain: str, root_pem: str) -> Served:
    """The serial 443 serves to SNI ``domain`` (unverified, so an unexpected chain is still
    read), then one handshake that verifies the chain and the name against ``root_pem``."""
    loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, 443), timeout=5) as raw,
        loose.wrap_socket(raw, server_hostname=domain) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    done = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                          input=der, capture_output=True, check=True)  # fmt: skip
    serial = parse_serial(done.stdout.decode())
    strict = ssl.create_default_context(cadata=root_pem)
    try:
        with (
            socket.create_connection((address, 443), timeout=5) as raw,
            strict.wrap_socket(raw, server_hostname=domain),
        ):
            pass
    except ssl.SSLError as exc:
        return Served(serial, False, f"{type(exc).__name__}: {exc}")
    return Served(serial, True)


def host_settings(inv: Inventory, web) -> HostSettings:
    """The host model provisioning used: the project's Fabric config as `fab` loads it."""
    config = Config(project_location=str(REPO))
    config.load_project()
    config.load_shell_env()
    return host_model.for_host(config, inv, web)


def ready(source: Source) -> dict:
    """A fresh one-host stack with the domain, provisioned and serving a release."""
    result = {"local_up": bring_up(1, domain=DOMAIN)}
    note(f"local.up --domain {DOMAIN}: {result['local_up']['median']} s")
    fab("provision")
    fab("deploy", source=source)
    return result


def run(source: Source) -> dict:
    result = ready(source)
    inv = inventory()
    web = inv.web_hosts[0]
    settings = host_settings(inv, web)
    if not settings.tls:
        raise BenchFailed(f"{web.name} has no certificate of its own (domain {settings.domain!r})")
    ca = tls.acme_from_inventory(inv)
    if not inv.data.get("acme_directory"):
        raise BenchFailed("the inventory names no local ACME CA: not a local stack with a domain")
    root = pebble_root(inv)
    url = f"https://{settings.domain}"
    result["load"] = {
        "url": url,
        "connect": web.public_ip,
        "paths": ["/healthz", "/api/tasks"],
        "clients": {
            k: f"wrk -t{CONNECTIONS_PER_CLIENT} -c{CONNECTIONS_PER_CLIENT}" for k in CLIENT_KINDS
        },
        "pause_ms_per_connection": PAUSE_MS,
        "timeline_bucket_seconds": timeline.BUCKET_SECONDS,
    }
    before = served(web.public_ip, settings.domain, root)
    if not before.verified:
        raise BenchFailed(f"443 before the renewal does not verify against pebble's root: "
                          f"{before.error}")  # fmt: skip
    command = renew_command(settings, ca)
    host = WebHost(inv, web.name)
    note(f"certbot renew --force-renewal on {web.name} under HTTPS load ({url} at {web.public_ip})")
    try:
        with steady_load(url, MAX_LOAD_SECONDS, connect=web.public_ip) as load:
            began = time.time()
            renewed = host.run(command, warn=True, timeout=RENEW_TIMEOUT)
            span = (began, time.time())
            time.sleep(AFTER_SECONDS)
    finally:
        host.close()
    if renewed.failed:
        tail = (renewed.stderr or renewed.stdout).strip()[-300:]
        raise BenchFailed(f"certbot renew --force-renewal exited {renewed.exited}: {tail}")
    after = served(web.public_ip, settings.domain, root)
    result.update(renewal_result(switch_result(load, span, switch=span), before, after))
    note(f"  renewal {result['renewal_seconds']} s: {result['total']}; serial "
         f"{before.serial} -> {after.serial}")  # fmt: skip
    return result


def renewal_result(figures: dict, before: Served, after: Served) -> dict:
    """The renewal's figures (bench/zero_downtime.switch_result's, its ``seconds`` renamed) with
    the certificate served before and after it."""
    figures = dict(figures)
    return {
        "renewal_seconds": figures.pop("seconds"),
        **figures,
        "certificate_before": before.to_json(),
        "certificate_after": after.to_json(),
        "new_certificate_served": after.serial != before.serial,
    }
