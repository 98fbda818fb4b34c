"""Provisioning survives the rare loss of its SSH connection (runner.reconnecting): it opens
the connection again and runs the (idempotent) action once more; nothing else is retried."""

import pytest

from deploy.provision.runner import reconnecting


class Transport:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


class FakeConnection:
    host = "web-1"

    def __init__(self, active: bool) -> None:
        self.transport = Transport(active)
        self.opened = 0

    def close(self) -> None:
        self.transport = None

    def open(self) -> None:
        self.opened += 1
        self.transport = Transport(True)


def flaky(failures: list[Exception]):
    calls = []

    def action():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return action, calls


def test_a_dead_connection_is_opened_again_and_the_action_runs_once_more():
    c = FakeConnection(active=False)
    action, calls = flaky([OSError("Socket is closed")])
    assert reconnecting(c, action) == "done"
    assert c.opened == 1 and len(calls) == 2


def test_a_failure_on_a_live_connection_is_raised_as_it_is():
    c = FakeConnection(active=True)
    action, calls = flaky([OSError("connection refused by the database")])
    with pytest.raises(OSError, match="refused"):
        reconnecting(c, action)
    assert c.opened == 0 and len(calls) == 1


def test_a_second_loss_is_raised():
    c = FakeConnection(active=False)
    action, _ = flaky([EOFError(), EOFError()])
    with pytest.raises(EOFError):
        reconnecting(c, action)


def test_facts_read_again_keep_what_was_not_read_again(monkeypatch):
    """After a changed step provisioning gathers the host's facts again, but not the database's
    privileges (an SSH tunnel and a login) unless the step granted them, nor facts only a step
    already run reads: those keep the values read before."""
    from deploy.provision import apply
    from deploy.provision import facts as f

    reads, printed = [], {}
    monkeypatch.setattr(apply, "run", lambda c, command: type("R", (), {"stdout": ""})())
    monkeypatch.setattr(apply.f, "parse_gathered", lambda output, facts: dict(printed))
    monkeypatch.setattr(apply.database, "read_privileges", lambda c, inv: reads.append(1) or (1, 1))
    printed.update(security_updates=("openssl",), ufw="active")
    first = apply.gather(None, [], inv=object())
    printed.clear()
    printed.update(ufw="inactive")
    again = apply.gather(None, [], None, first)
    kept = (again.db_privileges, again.security_updates, again.ufw)
    assert kept == ((1, 1), ("openssl",), "inactive")
    assert len(reads) == 1
    assert apply.gather(None, []).db_privileges is None
    assert f.security_updates().read_by == "security updates"


def test_a_fact_read_before_its_step_names_a_step_that_exists():
    """A fact with ``read_by`` is read right before that step only: a name matching no step
    would leave the step planning from an empty fact."""
    from deploy.host_model import HostSettings
    from deploy.provision import facts as f
    from deploy.provision import operations

    names = {name for name, _ in operations.steps_for(HostSettings(), True)}
    for fact in (f.security_updates(), f.ufw_status()):
        assert fact.read_by in names, fact.key
