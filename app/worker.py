"""The background worker: ``python -m app.worker`` (what the worker units run).

An RQ worker on the app's queue, with the app's settings from the environment (REDIS_URL,
DATABASE_URL, ...); a bad setting stops it with one line before it takes a job. On SIGTERM
(systemctl stop, the end of a deploy's switch) it finishes the job in hand and exits.
"""

from __future__ import annotations

import os
import sys
import time

from rq import Worker
from rq.exceptions import StopRequested
from rq.worker import WorkerStatus

from app.config import ConfigError, load_config
from app.jobs import queue

# How often a worker sweeps the registries: a job whose worker was killed is retried after at
# most this long (plus its heartbeat's expiry). RQ's default is ten minutes.
MAINTENANCE_INTERVAL = 30
# How long one wait for a job blocks: the longest an idle worker takes to see a SIGTERM.
DEQUEUE_SECONDS = 0.5


class StoppableWorker(Worker):
    """RQ's worker, but a SIGTERM never cuts a job's hand-over short.

    RQ's worker, told to stop while idle, raises out of whatever it is doing, including the
    wait for a job (BLMOVE, which moves the job into the queue's intermediate list) after Redis
    has already handed it a job but before the worker registered it as started. That job then
    sits in the intermediate list until a maintenance sweep has seen it twice a minute apart
    (one to two minutes late): every deploy stops a slot's workers, so under a steady stream of
    jobs, some job was late. Here a stop while idle only sets the flag RQ checks between jobs,
    and the wait for a job is short (DEQUEUE_SECONDS), so an idle worker still exits within
    that, and a job it was handed meanwhile is run first, as a busy worker's is."""

    def _shutdown(self) -> None:  # the second half of RQ's SIGTERM handler
        if self.get_state() == WorkerStatus.BUSY:
            return super()._shutdown()  # finish the job in hand, then stop
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if timeout is None:  # burst mode: one look at the queue, no wait to cut short
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        idle_since = time.monotonic()
        while not self._stop_requested:
            # max_idle_time=DEQUEUE_SECONDS: RQ's loop gives up after one empty wait instead
            # of waiting again, so that the flag is read between waits.
            wait = DEQUEUE_SECONDS
            result = super().dequeue_job_and_maintain_ttl(wait, max_idle_time=wait)
            if result is not None:
                return result
            if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                return None
        raise StopRequested()  # between waits: nothing taken, so leave as RQ would


def main() -> int:
    try:
        config = load_config(os.environ)
    except ConfigError as error:
        print(f"worker: configuration error: {error}", file=sys.stderr)
        return 2
    if not config["REDIS_URL"]:
        print("worker: configuration error: REDIS_URL is not set", file=sys.stderr)
        return 2
    q = queue(config["REDIS_URL"])
    worker = StoppableWorker(
        [q], connection=q.connection, maintenance_interval=MAINTENANCE_INTERVAL
    )
    # No scheduler process: retries are immediate (app.jobs.RETRIES) and nothing is scheduled.
    worker.work(with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
