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


def test_facts_read_the_database_only_when_asked_and_keep_what_was_read(monkeypatch):
    """After a changed step provisioning gathers the host's facts again, but the database's
    privileges (an SSH tunnel and a login) only after the step that grants them."""
    from deploy.provision import apply

    reads = []
    monkeypatch.setattr(apply, "run", lambda c, command: type("R", (), {"stdout": ""})())
    monkeypatch.setattr(apply.f, "parse_gathered", lambda output, facts: {})
    monkeypatch.setattr(apply.database, "read_privileges", lambda c, inv: reads.append(1) or (1, 1))
    first = apply.gather(None, [], inv=object())
    again = apply.gather(None, [], None, first.db_privileges)
    assert (first.db_privileges, again.db_privileges, len(reads)) == ((1, 1), (1, 1), 1)
    assert apply.gather(None, []).db_privileges is None
