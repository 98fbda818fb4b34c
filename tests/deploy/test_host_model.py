"""One host model: an operator's override reaches every task that reads it, and no fact of a
host (slot names, paths, users, ports, the test range) is defined in two places."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy import host_model
from deploy.inventory import parse_inventory
from deploy.provision import operations, templates
from deploy.release import commands as cmd
from deploy.release.host import ReleaseHost
from deploy.release.reports import logs_commands
from deploy.release.settings import ReleaseSettings
from deploy.shell import join

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = {"env_file": "/etc/secrets/shop.env", "nginx_log_dir": "/var/log/shop-nginx"}
INVENTORY = {
    "stack": "t", "region": "ams3", "vpc_cidr": "10.110.0.0/20", "web_names": ["web-1"],
    "web_public_ips": ["203.0.113.7"], "web_private_ips": ["10.110.0.7"], "ssh_user": "deploy",
    "ssh_key_path": "", "ssh_public_keys": ["ssh-ed25519 AAAA op"], "load_balancer_ip": "",
    "domain": "", "url": "http://203.0.113.7",
    "db_host": "db", "db_port": 25060, "db_name": "app", "db_user": "app",
    "db_uri": "postgresql://app:pw@db:25060/app?sslmode=require", "db_ca_cert": "CA",
    "db_admin_uri": "postgresql://doadmin:pw@db:25060/app?sslmode=require",
    "backup_endpoint": "", "backup_bucket": "", "backup_region": "", "backup_access_key_id": "",
    "backup_secret_access_key": "",
}  # fmt: skip


@pytest.fixture
def model():
    inv = parse_inventory(INVENTORY, "test")
    config = {"dropstack": {"host": OVERRIDES}}
    return inv, host_model.for_host(config, inv, inv.web_hosts[0])


def test_overrides_reach_provisioning(model):
    inv, settings = model
    target = operations.Target("web-1", settings, inv)
    assert OVERRIDES["env_file"] in operations.wanted_paths(target)
    unit = next(f for f in templates.systemd_files(settings) if f.path.endswith("@.service"))
    assert f"EnvironmentFile={OVERRIDES['env_file']}" in unit.content
    site = next(f for f in templates.nginx_files(settings) if "sites-available" in f.path)
    assert f"access_log {OVERRIDES['nginx_log_dir']}/dropstack.access.log" in site.content
    assert f"error_log {OVERRIDES['nginx_log_dir']}/dropstack.error.log" in site.content


def test_overrides_reach_releases_rollback_and_logs(model):
    _, settings = model
    h = ReleaseHost(None, "web-1", ReleaseSettings(), settings)
    # rollback's schema check reads the database revision with the app's environment file
    assert f"EnvironmentFile={OVERRIDES['env_file']}" in join(
        cmd.db_revision_command(h.layout, "blue")
    )
    # fab logs --nginx tails the site's own log files
    nginx = " ".join(join(c) for c in logs_commands(h, True, 10, "", False))
    assert f"{OVERRIDES['nginx_log_dir']}/dropstack.access.log" in nginx
    assert "/var/log/nginx/" not in nginx
    followed = logs_commands(h, True, 10, "", True)
    assert len(followed) == 1 and OVERRIDES["nginx_log_dir"] in join(followed[0])


def test_host_tests_build_the_same_model():
    conftest = (REPO / "tests/host/conftest.py").read_text()
    assert "host_model.for_host(" in conftest


# A fact, and the one file allowed to define it. Other code imports it from there.
FACTS = [
    (r"""\(\s*["']blue["'],\s*["']green["']\s*\)""", "deploy/host_model.py"),
    (r"""["']198\.18\.0\.0/15["']""", "deploy/local/network.py"),
    (r"""["']/var/lib/dropstack/local["']""", "deploy/inventory.py"),
    (r"""DEPLOY_USER\s*=\s*["']""", "infra/cloudinit.py"),
    (r"""["']/srv/\{""", "deploy/host_model.py"),
    (r"""["']/etc/systemd/system["']""", "deploy/host_model.py"),
    (r"""live\.sock["']""", "deploy/host_model.py"),
]


def source_files() -> list[Path]:
    """The code, and the tests' own plumbing; tests themselves assert literal values."""
    code = [p for r in ("deploy", "infra", "bench", "app") for p in (REPO / r).rglob("*.py")]
    plumbing = ("conftest.py", "harness.py", "probes.py")
    return code + [p for p in (REPO / "tests").rglob("*.py") if p.name in plumbing]


@pytest.mark.parametrize(("pattern", "home"), FACTS, ids=[f[1] + ":" + f[0][:20] for f in FACTS])
def test_each_fact_is_defined_once(pattern, home):
    found = sorted(
        str(p.relative_to(REPO)) for p in source_files() if re.search(pattern, p.read_text())
    )
    assert found == [home], f"{pattern} defined in {found}; define it only in {home}"
