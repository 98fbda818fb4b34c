"""The job's state directory: status.json (the last success and failure) and drill.json."""

from __future__ import annotations

import datetime
import json
import os
import tempfile

from .errors import JobError


def write_json(path: str, value: dict) -> None:
    """Replace a file atomically: a reader sees the old status or the new, never half."""
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")
    os.chmod(temporary, 0o640)
    os.replace(temporary, path)


def read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def state_file(env: dict[str, str], name: str) -> str:
    directory = env.get("BACKUP_STATE_DIR") or env.get("STATE_DIRECTORY", "").split(":")[0]
    if not directory:
        raise JobError("settings: BACKUP_STATE_DIR (or systemd's StateDirectory=) is not set")
    return os.path.join(directory, name)


def record_outcome(env: dict[str, str], now: datetime.datetime, manifest=None, reason=None):
    """status.json keeps the last success and the last failure, each with its time."""
    path = state_file(env, "status.json")
    status = read_json(path)
    when = now.isoformat(timespec="seconds")
    if reason is None:
        status["last_success"] = {"time": when, "id": manifest["id"], "size": manifest["size"]}
    else:
        status["last_failure"] = {"time": when, "reason": reason}
    write_json(path, status)


def record_drill(env: dict[str, str], drill: dict) -> None:
    write_json(state_file(env, "drill.json"), drill)


def status_with_drill(env: dict[str, str]) -> dict:
    """What ``job.py status`` prints: status.json, with drill.json as ``last_drill``."""
    status = read_json(state_file(env, "status.json"))
    status["last_drill"] = read_json(state_file(env, "drill.json")) or None
    return status
