"""The fleet suite's target: a running local stack with several web hosts behind the load
balancer (bin/test brings one up: `fab local.up --web-count 3 --db-pool 5`, provisioned and
deployed). Every test here is a host test."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.targets import connect, resolve_inventory
from infra.load_balancer_policy import HEALTH_CHECK
from tests.fleet.probe import Probe
from tests.host.conftest import local_ca_root
from tests.host_marks import mark_folder_as_host
from tests.release.conftest import source  # noqa: F401  (the release tests' source fixture)


def pytest_collection_modifyitems(items):
    mark_folder_as_host(items, Path(__file__).parent)


@pytest.fixture(scope="session")
def inventory():
    inv = resolve_inventory()
    if not inv["load_balancer_ip"] or len(inv.web_hosts) < 2:
        pytest.fail(
            "the fleet suite needs a stack with a load balancer and 2+ web hosts: "
            "`fab local.up --web-count 3`, `fab provision`, `fab deploy`",
            pytrace=False,
        )
    return inv


@dataclass(frozen=True)
class Entry:
    """The site's front door: the load balancer's address, and with a domain HTTPS there (the
    domain as SNI and Host, the local CA's root as the only trust anchor)."""

    address: str
    domain: str | None = None
    cafile: str | None = None

    def probe(self, **options) -> Probe:
        return Probe(self.address, domain=self.domain, cafile=self.cafile, **options)

    def url(self, path: str) -> str:
        return f"https://{self.domain}{path}" if self.domain else f"http://{self.address}{path}"

    def curl(self) -> list[str]:
        """curl reaching ``url`` without DNS: --resolve pins the domain to the balancer."""
        if not self.domain:
            return ["curl"]
        return ["curl", "--resolve", f"{self.domain}:443:{self.address}", "--cacert", self.cafile]


@pytest.fixture(scope="session")
def lb(inventory, tmp_path_factory) -> Entry:
    """The load balancer, once it sends traffic. Right after a first deploy it does not yet:
    like DigitalOcean's, it takes a droplet in after healthy_threshold good checks, one every
    check_interval_seconds (50 s), and up to one more interval to start counting."""
    address = inventory["load_balancer_ip"]
    cafile = None
    if inventory["domain"] and inventory.data.get("acme_directory"):
        path = tmp_path_factory.mktemp("lb-ca") / "pebble-root.pem"
        path.write_text(local_ca_root(inventory))
        cafile = str(path)
    entry = Entry(address, inventory["domain"], cafile)
    wait = HEALTH_CHECK.check_interval_seconds * (HEALTH_CHECK.healthy_threshold + 2)
    with entry.probe(interval=0.5, limit_seconds=wait + 10) as probe:
        deadline = time.monotonic() + wait
        while not probe.ok_since(3) and time.monotonic() < deadline:
            time.sleep(1)
    if not probe.ok_since(3):
        pytest.fail(f"the load balancer at {address} served no host within {wait} s", pytrace=False)
    return entry


@pytest.fixture
def conn(inventory):
    """Open connections per test: a host that reboots or loses power drops them."""
    opened = {}

    def get(name: str):
        if name not in opened:
            web = next(h for h in inventory.web_hosts if h.name == name)
            opened[name] = connect(inventory, web)
        return opened[name]

    yield get
    for c in opened.values():
        c.close()
