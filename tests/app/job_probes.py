"""Jobs for tests/app/test_worker_jobs.py only: the real archive job behind a delay, so a test
can kill a worker while it is mid-job. Importable by the worker processes (cwd is the repo)."""

import time

from app.jobs import archive_task


def slow_archive(task_id: int, seconds: float) -> int | None:
    time.sleep(seconds)
    return archive_task(task_id)
