"""Background jobs (RQ on Redis) and the queue the API puts them on.

Delivery is at least once: RQ marks a job finished only after it returned, so a worker killed
mid-job leaves it in the started registry, from where it is retried (``Retry``) once its
worker's heartbeat has expired. Each job is therefore idempotent, keyed in the database: a
rerun after a commit finds its row, changes nothing, and is counted (``task_archives.runs``),
so duplicates are detectable rather than silent.
"""

from __future__ import annotations

import os

from redis import Redis
from rq import Queue, Retry
from sqlalchemy import create_engine, text

from app.config import ConfigError, load_config, sqlalchemy_url

QUEUE_NAME = "dropstack"
# Seconds a job may run; past it RQ kills the work horse and retries. Kept small: archiving a
# task is one statement.
JOB_TIMEOUT = 60
# Retried at once, no interval: an interval hands the job to RQ's scheduler, whose lock a
# killed worker keeps until it expires, delaying every retry behind it.
RETRIES = Retry(max=5)

ARCHIVE = text(
    """
    INSERT INTO task_archives (task_id) SELECT id FROM tasks WHERE id = :task_id
    ON CONFLICT (task_id) DO UPDATE SET runs = task_archives.runs + 1
    RETURNING runs
    """
)

_engines: dict[str, object] = {}


def redis_connection(url: str) -> Redis:
    return Redis.from_url(url)


def queue(url: str) -> Queue:
    return Queue(QUEUE_NAME, connection=redis_connection(url), default_timeout=JOB_TIMEOUT)


def archive_job_id(task_id: int) -> str:
    """One job id per task: queueing the same archive twice names the same job."""
    return f"archive-task-{int(task_id)}"


def enqueue_archive(url: str, task_id: int):
    """Queue the archive of a task; the job runs in a worker, not in the request."""
    return queue(url).enqueue(
        archive_task, task_id, job_id=archive_job_id(task_id), retry=RETRIES,
        result_ttl=3600, failure_ttl=7 * 86400,
    )  # fmt: skip


def _engine():
    """The worker process's engine, built once from the same settings as the web app."""
    config = load_config(os.environ)
    url = config["DATABASE_URL"]
    if url not in _engines:
        _engines[url] = create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=1)
    return _engines[url]


def archive_task(task_id: int) -> int | None:
    """Archive the task: one transaction, so a kill before the commit leaves nothing behind.
    Returns how often the job ran for it (1 the first time), None if the task is gone."""
    try:
        engine = _engine()
    except ConfigError as error:
        raise RuntimeError(f"worker settings: {error}") from None
    with engine.begin() as connection:
        return connection.execute(ARCHIVE, {"task_id": int(task_id)}).scalar()
