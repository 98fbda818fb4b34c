"""The host firewall: ufw's policy, the rules the kernel really enforces, and what a TCP connect
from outside (this machine, to the host's public address) gets.

The outside probes see the cloud firewall and ufw together, which is what the internet sees.
Behind a cloud firewall that already rejects a port (DigitalOcean's, or the local droplet's
nftables table), a hole in ufw alone does not show from outside: the ufw and kernel-rule tests
are what catch it.
"""

from __future__ import annotations

import re
import time

import pytest

from deploy.provision import desired as ds
from tests.host.probes import ACCEPTED, tcp_outcome

ALLOWED_TCP_PORTS = {int(port.split("/")[0]) for _, port in ds.UFW_RULES}
# Ports an app host commonly exposes by mistake: Gunicorn/dev servers, databases, caches.
PROBED_PORTS = [8000, 5432, 25060, 3306, 6379, 8080]
LISTENER_SECONDS = 60
# Where ufw's own before.rules accept DHCP, mDNS and UPnP replies; user rules live elsewhere.
STOCK_UDP_CHAINS = ("ufw-before-input", "ufw6-before-input")


def test_ufw_policy(host):
    status = host.run("sudo -n ufw status verbose").stdout
    assert ds.ufw_is_as_wanted(status), (
        "ufw must be active, deny incoming by default and allow exactly 22, 80 and 443/tcp "
        f"(IPv4 and IPv6); it says:\n{status.strip()}"
    )


def unexpected_accepts(rules: str) -> list[str]:
    """ACCEPT rules on the input path that let in more than loopback, replies, ICMP, ufw's stock
    UDP (DHCP, mDNS, UPnP) and TCP to the allowed ports."""
    allowed_dport = re.compile(rf"--dport ({'|'.join(map(str, sorted(ALLOWED_TCP_PORTS)))})( |$)")
    found = []
    for rule in rules.splitlines():
        if not (rule.startswith("-A ") and rule.endswith("-j ACCEPT")):
            continue
        chain = rule.split()[1]
        if chain != "INPUT" and "input" not in chain:
            continue
        harmless = (
            "-i lo " in rule
            or "RELATED,ESTABLISHED" in rule
            or re.search(r"-p (icmp|ipv6-icmp) ", rule)
            or ("-p udp " in rule and chain in STOCK_UDP_CHAINS)
            or ("-p tcp " in rule and allowed_dport.search(rule))
        )
        if not harmless:
            found.append(rule)
    return found


@pytest.mark.parametrize("command", ["iptables", "ip6tables"])
def test_kernel_input_rules(host, command):
    """What netfilter enforces, whatever `ufw status` believes: input policy DROP and no ACCEPT
    beyond ufw's stock ones and 22/80/443 (catches rules added by hand with iptables)."""
    rules = host.run(f"sudo -n {command} -S").stdout
    assert "-P INPUT DROP" in rules, (
        f"{command}: the INPUT policy is not DROP; everything not explicitly allowed gets in"
    )
    extra = unexpected_accepts(rules)
    assert not extra, f"{command} accepts more than 22/80/443/tcp inbound:\n" + "\n".join(extra)


@pytest.mark.parametrize("port", [22, 80, 443])
def test_public_port_answers_from_outside(web_host, settings, port):
    if port == 443 and not settings.tls:
        pytest.skip("no TLS (no domain): nothing listens on 443")
    outcome = tcp_outcome(web_host.public_ip, port)
    assert outcome == ACCEPTED, f"{web_host.public_ip}:{port} from outside: {outcome}"


@pytest.fixture
def listener(host, request):
    """A throwaway HTTP server on the host (as the deploy user, ports above 1024), so a closed
    port proves a firewall, not just that nothing listens. It exits by itself within a minute
    if the test dies; it is killed by its pid when the test ends."""
    port = request.param
    if not host.run(f"ss -ltnH 'sport = :{port}'").stdout.strip():
        pid = host.run(
            f"timeout {LISTENER_SECONDS} python3 -m http.server {port} --bind 0.0.0.0 "
            ">/dev/null 2>&1 </dev/null & echo $!"
        ).stdout.strip()
        request.addfinalizer(lambda: host.run(f"kill {pid}"))
        deadline = time.monotonic() + 10
        while not host.run(f"ss -ltnH 'sport = :{port}'").stdout.strip():
            assert time.monotonic() < deadline, f"could not start a listener on port {port}"
            time.sleep(0.2)
    return port


@pytest.mark.parametrize("listener", PROBED_PORTS, indirect=True, ids=str)
def test_port_blocked_from_outside_with_listener(web_host, listener):
    ssh = tcp_outcome(web_host.public_ip, 22)
    assert ssh == ACCEPTED, f"probe is blind: port 22 at {web_host.public_ip} gets {ssh}"
    outcome = tcp_outcome(web_host.public_ip, listener)
    assert outcome != ACCEPTED, (
        f"port {listener} on {web_host.public_ip} accepts connections from outside while "
        "something listens on it; only 22, 80 and 443 may answer: check `ufw status` and "
        "the cloud firewall"
    )
