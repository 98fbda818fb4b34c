"""Running the local stack's ACME CA: pebble and pebble-challtestsrv in their own namespace,
the domain's A record, and the load balancer's certificate (deploy/local/acme.py builds what
they run). ``lifecycle`` calls these during ``up``; ``down`` finds the processes by address.

Pebble keeps no state: a restart forgets every account and makes a new issuing root. So the
two processes always start together, and the DNS records are added again each time.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from deploy.local import acme
from deploy.local.access import port_answers
from deploy.local.load_balancer import certificate_command
from deploy.local.machine import ca_processes, terminate
from deploy.local.network import ACME_ADDRESS, HostPlan, StackPlan, site_address
from deploy.local.state import DOWN_HINT, LocalStackError, StatePaths, run
from deploy.provision.tls import CertbotDirs

Say = Callable[[str], None]
START_SECONDS = 15


def the_ca(paths: StatePaths) -> acme.AcmeCa:
    return acme.local_ca(str(paths.root / "acme"), ACME_ADDRESS)


def start_ca(paths: StatePaths, plan: StackPlan, domain: str, say: Say) -> acme.AcmeCa:
    """(Re)start pebble and challtestsrv and point the domain at the site's address."""
    if not plan.acme:
        raise LocalStackError(f"{domain}: the stack's plan has no CA namespace (a bug: report it)")
    ca = the_ca(paths)
    directory = Path(ca.directory)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    if not Path(ca.listener_cert).exists():
        # Ours, not pebble's: it survives restarts, so acme_ca_cert in the inventory stays true.
        (directory / "listener.ext").write_text(acme.listener_extensions(ca))
        for command in acme.listener_certificate_commands(ca):
            run(command)
    Path(ca.config_path).write_text(acme.pebble_config(ca))
    stop_ca()
    _spawn(plan.acme, acme.challtestsrv_command(ca), directory / "challtestsrv.log", {})
    _wait(ca, ca.dns_management_port, directory / "challtestsrv.log", "pebble-challtestsrv")
    _spawn(plan.acme, acme.pebble_command(ca), directory / "pebble.log", acme.PEBBLE_ENVIRONMENT)
    for port in (ca.acme_port, ca.management_port):
        _wait(ca, port, directory / "pebble.log", "pebble")
    address = site_address(plan)
    dns_request(ca, acme.clear_a_record_request(domain))
    dns_request(ca, acme.a_record_request(domain, address))
    # For browsers and curl: the root certificates pebble issues under, until it restarts.
    root_path(paths).write_text(fetch_root(ca))
    say(f"acme: pebble at {ca.directory_url}; challtestsrv answers {domain} with {address}; "
        f"its root is {root_path(paths)}")  # fmt: skip
    return ca


def root_path(paths: StatePaths) -> Path:
    return paths.root / "acme" / "root.pem"


def fetch_root(ca: acme.AcmeCa, listener_ca_pem: str | None = None) -> str:
    """Pebble's current issuing root from its management API, trusting only the CA of its
    listener: our file, or the PEM an inventory carries (``acme_ca_cert``)."""
    if listener_ca_pem:
        context = ssl.create_default_context(cadata=listener_ca_pem)
    else:
        context = ssl.create_default_context(cafile=ca.listener_ca)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(ca.roots_url, timeout=10) as response:  # our own 198.18.x address
        return response.read().decode()


def inventory_root(inventory) -> str:
    """Pebble's current root for a local stack's inventory (new at every pebble start): its
    ``acme_directory`` names the CA's address, its ``acme_ca_cert`` the listener's CA."""
    directory = urllib.parse.urlsplit(inventory["acme_directory"])
    ca = acme.local_ca("", directory.hostname or "")
    return fetch_root(ca, inventory["acme_ca_cert"])


def ca_running() -> bool:
    return len(ca_processes()) == len(acme.PROCESS_NAMES)


def stop_ca() -> list[int]:
    return terminate(ca_processes())


def dns_request(ca: acme.AcmeCa, path_and_body: tuple[str, bytes]) -> None:
    """One call to challtestsrv's management API (never through an inherited proxy)."""
    path, body = path_and_body
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        # http:// to our own 198.18.x address, built here, never input.
        with opener.open(ca.dns_management_url + path, data=body, timeout=5) as response:
            response.read()
    except OSError as exc:
        raise LocalStackError(f"acme: challtestsrv refused {path}: {exc}; {DOWN_HINT}") from None


def load_balancer_certificate(paths: StatePaths, ca: acme.AcmeCa, domain: str, say: Say) -> Path:
    """The balancer's certificate from the local CA over DNS-01, as DigitalOcean issues its
    load balancer's (lets_encrypt certificates prove the domain through DigitalOcean's DNS).
    certbot runs here, the operator's side, as DigitalOcean's control plane does for it."""
    lb_dir = paths.root / "lb"
    lb_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    dirs = CertbotDirs(
        str(lb_dir / "letsencrypt"), str(lb_dir / "certbot-work"), str(lb_dir / "certbot-logs")
    )
    pem = lb_dir / "certificate.pem"
    command = certificate_command(ca, domain, dirs, str(pem), str(lb_dir / "haproxy.pid"))
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    if done.returncode != 0 or not pem.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LocalStackError(f"lb: {last}; {DOWN_HINT}")
    say(f"lb: certificate for {domain} over DNS-01 in {time.monotonic() - started:.1f} s")
    return pem


def _spawn(namespace: HostPlan, command: list[str], log_path: Path, env: dict) -> None:
    log = log_path.open("ab")
    subprocess.Popen(
        ["ip", "netns", "exec", namespace.netns, *command],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, env={**os.environ, **env},
    )  # fmt: skip
    log.close()


def _wait(ca: acme.AcmeCa, port: int, log: Path, name: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not port_answers(ca.address, port, timeout=0.5):
        if time.monotonic() > deadline:
            last = log.read_text().strip().splitlines()[-1:] or ["no log"]
            raise LocalStackError(f"acme: {name} did not start: {last[0]}; {DOWN_HINT}")
        time.sleep(0.1)
