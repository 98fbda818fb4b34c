"""The database tunnel (deploy/provision/database.tunnel) keeps the error that matters: a
client hanging up abruptly is no failure of its own, anything else in the tunnel is."""

import contextlib

import psycopg
import pytest
from invoke.exceptions import ThreadException
from invoke.util import ExceptionWrapper

from deploy.provision.database import tunnel


class FakeConnection:
    """forward_local as Fabric's behaves: its thread's exceptions raised at exit."""

    def __init__(self, thread_error: BaseException | None) -> None:
        self.thread_error = thread_error

    @contextlib.contextmanager
    def forward_local(self, *args, **kwargs):
        try:
            yield
        finally:
            if self.thread_error is not None:
                wrapped = ExceptionWrapper({}, type(self.thread_error), self.thread_error, None)
                raise ThreadException([wrapped])


def test_a_refused_login_is_what_the_caller_sees_not_the_hang_up():
    c = FakeConnection(ConnectionResetError(104, "Connection reset by peer"))
    refused = pytest.raises(psycopg.OperationalError, match="password authentication failed")
    with refused, tunnel(c, 1, "db", 25060):
        raise psycopg.OperationalError('password authentication failed for user "app"')


def test_a_session_that_went_well_is_not_failed_by_a_hang_up():
    with tunnel(FakeConnection(BrokenPipeError()), 1, "db", 25060):
        pass


def test_other_tunnel_trouble_is_raised():
    with pytest.raises(ThreadException), tunnel(FakeConnection(ValueError("bad")), 1, "db", 1):
        pass
