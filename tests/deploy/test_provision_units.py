"""Provisioning's unit step when the units change: running slots are restarted under the new
units, except when the app's command changed (another app's contract): then the running slot
keeps the old release's process, which the new command might not start, until `fab deploy`."""

from dataclasses import replace

from deploy import host_model
from deploy.inventory import parse_inventory
from deploy.provision import facts as f
from deploy.provision import operations, templates
from tests.deploy.test_secrets_plan import INVENTORY

FASTAPI = {"entry_point": "app.main:app", "server": "gunicorn+uvicorn", "server_config": ""}


def target(app=None) -> operations.Target:
    inv = parse_inventory(INVENTORY, "test")
    config = {"dropstack": {"app": app or {}}}
    return operations.Target("web-1", host_model.for_host(config, inv, inv.web_hosts[0]), inv)


def installed(t: operations.Target, **changes) -> f.HostFacts:
    """A host with t's units exactly so, slot blue running."""
    files = templates.systemd_files(t.settings)
    states = {file.path: file.state for file in files}
    web = next(file.content for file in files if file.path.endswith("/dropstack@.service"))
    units = {"dropstack@blue.service": {"ActiveState": "active"}}
    return replace(f.HostFacts(files=states, units=units, web_unit=web), **changes)


def restarts(change) -> list[str]:
    return [" ".join(c) for c in change.then if "restart" in " ".join(c)]


def test_a_unit_change_restarts_the_running_slot():
    old = installed(target(), files={})  # every file differs, the command is the same
    (change,) = operations.systemd_units(target(), old)
    assert restarts(change) == [" ".join(operations.root(["systemctl", "restart",
                                                          "dropstack@blue.service"]))]  # fmt: skip


def test_a_changed_app_command_leaves_the_running_slot_to_the_next_deploy():
    sample = installed(target())
    (change,) = operations.systemd_units(target(FASTAPI), sample)
    assert restarts(change) == []
    assert any("until the next fab deploy" in line for line in change.detail)
    assert operations.systemd_units(target(), sample) == []
