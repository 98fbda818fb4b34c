"""The host suite's target: every web host of an inventory, as testinfra hosts.

The target is read exactly as `fab provision` and `fab deploy` read it (``resolve_inventory``):
``--stack NAME`` (a Pulumi stack's outputs), else ``--inventory PATH``, else $DROPSTACK_INVENTORY,
else the local droplet. Every test that takes ``host`` runs once per web host (ids: host names).
An unreadable inventory is an ERROR on every test with the inventory's one-line message: a
suite that skips because it found no hosts would look green in CI.
"""

from __future__ import annotations

import ipaddress
import shlex
import time
from collections import Counter
from pathlib import Path

import paramiko
import pytest
import testinfra
from fabric import Config

from deploy import host_model
from deploy.host_model import SLOTS, HostSettings
from deploy.inventory import Inventory, InventoryError, WebHost
from deploy.local import acme_setup
from deploy.local.network import TEST_RANGE
from deploy.provision.facts import nameservers
from deploy.provision.tls import SYSTEM_CA_BUNDLE
from deploy.release.settings import ReleaseSettings
from deploy.release.state import HostState, parse_state, probe_command
from deploy.shell import join
from deploy.targets import resolve_inventory
from tests.host.probes import Site, SshTarget

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The local droplet's hosts live in the network-testing range; nothing else may get our traffic.
LOCAL_TEST_NET = ipaddress.ip_network(TEST_RANGE)
INVENTORY_KEY = pytest.StashKey[Inventory | InventoryError]()
OUTCOMES = ("passed", "failed", "error", "skipped")
# Longer than a deploy's slowest step (building a venv) takes on the local droplet.
DEPLOY_WAIT_SECONDS = 180


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dropstack host tests")
    group.addoption(
        "--stack",
        default="",
        help="Pulumi stack whose outputs name the hosts (wins over --inventory)",
    )
    group.addoption(
        "--inventory",
        default="",
        help="inventory JSON file (default: $DROPSTACK_INVENTORY, else the local droplet's)",
    )


def _inventory(config: pytest.Config) -> Inventory | InventoryError:
    """The target's inventory, read once per run, or the error saying why it cannot be read."""
    if INVENTORY_KEY not in config.stash:
        try:
            inv = resolve_inventory(config.getoption("stack"), config.getoption("inventory"))
            _check_local_addresses(inv)
            config.stash[INVENTORY_KEY] = inv
        except InventoryError as exc:
            config.stash[INVENTORY_KEY] = exc
    return config.stash[INVENTORY_KEY]


def _check_local_addresses(inv: Inventory) -> None:
    if inv["stack"] != "local":
        return
    for web in inv.web_hosts:
        if ipaddress.ip_address(web.public_ip) not in LOCAL_TEST_NET:
            raise InventoryError(
                f"{inv.source}: local host {web.name} has {web.public_ip}, outside {LOCAL_TEST_NET}"
            )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "web_host" not in metafunc.fixturenames:
        return
    inv = _inventory(metafunc.config)
    if isinstance(inv, InventoryError):
        # One placeholder run per test; the inventory fixture turns it into the error.
        metafunc.parametrize(
            "web_host", [None], ids=["no-inventory"], scope="session", indirect=True
        )
        return
    hosts = inv.web_hosts
    metafunc.parametrize(
        "web_host", hosts, ids=[h.name for h in hosts], scope="session", indirect=True
    )


@pytest.hookimpl(tryfirst=True)  # before -m filtering, so `-m host` / `-m "not host"` see it
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(HERE):
            continue
        item.add_marker(pytest.mark.host)
        web = getattr(item, "callspec", None) and item.callspec.params.get("web_host")
        if isinstance(web, WebHost):
            # Lands in the JUnit XML as a property and feeds the per-host summary.
            item.user_properties.append(("host", web.name))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line per host: `web-1: 42 passed, 0 failed` (errors and skips when there are any)."""
    counts: dict[str, Counter] = {}
    for outcome in OUTCOMES:
        for report in terminalreporter.stats.get(outcome, []):
            name = dict(getattr(report, "user_properties", ())).get("host")
            if name:
                counts.setdefault(name, Counter())[outcome] += 1
    if not counts:
        return
    terminalreporter.section("dropstack hosts")
    for name, count in counts.items():
        parts = [f"{count['passed']} passed", f"{count['failed']} failed"]
        parts += [f"{count[o]} {o}" for o in ("error", "skipped") if count[o]]
        terminalreporter.line(f"{name}: {', '.join(parts)}")


# --- the target ---


@pytest.fixture(scope="session")
def inventory(request: pytest.FixtureRequest) -> Inventory:
    inv = _inventory(request.config)
    if isinstance(inv, InventoryError):
        pytest.fail(str(inv), pytrace=False)
    return inv


@pytest.fixture(scope="session")
def web_host(request: pytest.FixtureRequest, inventory: Inventory) -> WebHost:
    """One web host of the inventory (the tests are parametrized over all of them)."""
    return request.param


@pytest.fixture(scope="session")
def fabric_config() -> dict:
    """The `dropstack` section of the project's Fabric config (fabric.yaml + FABRIC_* env vars),
    as `fab` itself loads it, so tests expect what provisioning and deploys were told."""
    config = Config(project_location=str(REPO))
    config.load_project()
    config.load_shell_env()
    return _plain(config.get("dropstack") or {})


def _plain(value):
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="session")
def ssh_target(inventory: Inventory, web_host: WebHost) -> SshTarget:
    """The host's sshd as the deploy sees it; the local droplet's known_hosts (beside its
    inventory) is enforced, so a test never talks to an impostor."""
    known_hosts = Path(inventory.source).parent / "known_hosts"
    return SshTarget(
        web_host.public_ip,
        inventory["ssh_key_path"] or None,
        known_hosts if known_hosts.is_file() else None,
    )


@pytest.fixture(scope="session")
def host(inventory: Inventory, web_host: WebHost, ssh_target: SshTarget):
    """testinfra's host over paramiko, as the inventory's deploy user."""
    user = inventory["ssh_user"]
    target = testinfra.get_host(
        f"paramiko://{user}@{web_host.public_ip}", ssh_identity_file=ssh_target.key_path
    )
    try:
        client = ssh_target.connect(user)
    except (OSError, paramiko.SSHException) as exc:
        pytest.fail(
            f"{web_host.name} ({web_host.public_ip}): cannot SSH in as {user}: {exc}",
            pytrace=False,
        )
    # testinfra's paramiko backend never reads known_hosts; hand it a client that did.
    target.backend.__dict__["client"] = client
    return target


@pytest.fixture(scope="session")
def settings(host, inventory: Inventory, web_host: WebHost, fabric_config: dict) -> HostSettings:
    """The one host model provisioning and releases read (same function, same inputs)."""
    resolv_conf = host.file("/etc/resolv.conf").content_string
    config = {"dropstack": fabric_config}
    return host_model.for_host(config, inventory, web_host, nameservers(resolv_conf))


@pytest.fixture(scope="session")
def release_settings(fabric_config: dict) -> ReleaseSettings:
    """`dropstack.release` settings (keep, timeouts) as `fab deploy` reads them."""
    return ReleaseSettings.from_config(fabric_config)


@pytest.fixture(scope="session")
def site_ca(inventory: Inventory, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CA bundle the site's certificate must chain to, as a file: on the local stack,
    pebble's current issuing root from its management API (new at every pebble start: read
    it again after a restart with ``local_ca_root``); elsewhere the system trust store."""
    if inventory["stack"] != "local" or not inventory.data.get("acme_directory"):
        return SYSTEM_CA_BUNDLE
    path = tmp_path_factory.mktemp("site-ca") / "pebble-root.pem"
    path.write_text(local_ca_root(inventory))
    return str(path)


def local_ca_root(inventory: Inventory) -> str:
    """Pebble's issuing root, fetched over its management API (trusting the listener CA the
    inventory names, never the environment's bundles)."""
    return acme_setup.inventory_root(inventory)


@pytest.fixture(scope="session")
def site(web_host: WebHost, settings: HostSettings, site_ca: str) -> Site:
    return Site(web_host.public_ip, settings.domain or web_host.public_ip, settings.tls, site_ca)


@pytest.fixture
def live_slot(host, settings: HostSettings) -> str:
    """The slot Nginx routes to now (the live.sock link), read fresh: every deploy switches it."""
    path = settings.paths.live_socket
    target = host.run(f"readlink {shlex.quote(path)}").stdout.strip()
    slot = next((s for s in SLOTS if settings.paths.socket(s) == target), None)
    if slot is None:
        pytest.fail(f"{path} names no blue/green slot's socket; run `fab deploy`", pytrace=False)
    return slot


@pytest.fixture
def release_state(host, settings: HostSettings) -> HostState:
    """The host's releases, slots and lock (deploy/release/state.py), read once no deploy or
    rollback holds the lock: a deploy in progress is a moment, not a state, so it is waited
    for rather than reported as a half-switched host."""
    layout = settings.paths
    deadline = time.monotonic() + DEPLOY_WAIT_SECONDS
    while True:
        state = parse_state(host.run(join(probe_command(layout))).stdout, layout)
        if not state.locked:
            return state
        if time.monotonic() > deadline:
            holder = state.lock.describe() if state.lock else "an unreadable holder"
            pytest.fail(
                f"{layout.lock} held for over {DEPLOY_WAIT_SECONDS}s by {holder}; a dead "
                "deploy's lock blocks every deploy: `fab unlock --hosts NAME`",
                pytrace=False,
            )
        time.sleep(2)


@pytest.fixture
def current_release(release_state: HostState, settings: HostSettings) -> str:
    """The release `current` points at; a host without one has had no deploy yet."""
    if not release_state.current:
        pytest.fail(
            f"{settings.paths.current} does not exist: no release deployed (fab deploy)",
            pytrace=False,
        )
    return release_state.current
