"""Suite-wide pytest hooks."""

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A run that collected nothing is a broken test command (a wrong path, a filter that matches
    # nothing), never a pass: fail it loudly instead of letting pytest exit 5 look like "no news".
    if session.testscollected == 0 and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.config.get_terminal_writer().line(
            "dropstack: no tests were collected; check the paths and -m/-k filters", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
