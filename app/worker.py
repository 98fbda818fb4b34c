"""The background worker: ``python -m app.worker`` (what the worker units run).

An RQ worker on the app's queue, with the app's settings from the environment (REDIS_URL,
DATABASE_URL, ...); a bad setting stops it with one line before it takes a job. On SIGTERM
(systemctl stop, the end of a deploy's switch) it finishes the job in hand and exits.
"""

from __future__ import annotations

import os
import sys

from rq import Worker

from app.config import ConfigError, load_config
from app.jobs import queue

# How often a worker sweeps the registries: a job whose worker was killed is retried after at
# most this long (plus its heartbeat's expiry). RQ's default is ten minutes.
MAINTENANCE_INTERVAL = 30


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
    worker = Worker([q], connection=q.connection, maintenance_interval=MAINTENANCE_INTERVAL)
    # No scheduler process: retries are immediate (app.jobs.RETRIES) and nothing is scheduled.
    worker.work(with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
