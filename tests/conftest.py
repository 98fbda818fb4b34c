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


# The unit stage's longest modules (bin/test, --dist loadfile): xdist hands whole modules to
# its workers in collection order, so a long module collected last runs alone at the end while
# the other workers wait. Collected first, they overlap with the many short ones. Measured
# with --junitxml (2026-12-06): 35, 29, 22 and 18 s of the stage's ~250 s of test time.
LONGEST_FIRST = (
    "tests/tls/test_tls_site.py",
    "tests/backup/test_backup_pipeline.py",
    "tests/app/test_worker_jobs.py",
    "tests/security/test_scan.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))
