"""Named steps with `changed` / `ok` reporting, per host, and running a plan on many hosts.

A step is a callable returning True when it changed the host. The runner prints one line per step,
prefixed by the host, so parallel output stays readable, and turns a failed remote command into
one line naming the host, the step and the command's own last words. Every outcome is also
appended as a JSON line (host, step, status, seconds) to the step log, for scripts and the
benchmarks: ``$DROPSTACK_STEP_LOG``, default ``.dropstack/steps.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from invoke.exceptions import Failure, UnexpectedExit

_print_lock = threading.Lock()
# One id per `fab` process: the step log's lines of one run share it.
RUN_ID = uuid.uuid4().hex[:12]
DEFAULT_STEP_LOG = ".dropstack/steps.jsonl"


def say(line: str) -> None:
    """Print a whole line at once; threads share stdout. A reader that went away (``fab status
    | head -3``) ends the output quietly instead of with a traceback."""
    with _print_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            quiet_stdout()


def exit_quietly_on_closed_pipe() -> None:
    """``fab status | head -3``: when the reader closes the pipe, end without a traceback, as
    Unix tools do (exit 141, 128 + SIGPIPE), wherever the write happened (our lines, Invoke's own
    --list). SIGPIPE itself stays ignored: SSH sockets must see EPIPE as an error, not a kill."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, BrokenPipeError):
            quiet_stdout()
            os._exit(141)
        previous(kind, value, traceback)

    sys.excepthook = hook


def quiet_stdout() -> None:
    """Point stdout at /dev/null after its reader closed the pipe, so later writes, and the
    interpreter's flush at exit, do not raise."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def step_log_path() -> Path:
    return Path(os.environ.get("DROPSTACK_STEP_LOG") or DEFAULT_STEP_LOG)


def record(task: str, host: str, step: str, status: str, seconds: float, **extra) -> None:
    """Append one step outcome to the step log (JSON lines). A log that cannot be written
    never fails the run: it is a record, not a step."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "run": RUN_ID,
        "task": task,
        "host": host,
        "step": step,
        "status": status,
        "seconds": round(seconds, 3),
        **extra,
    }
    path = step_log_path()
    with _print_lock:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as log:
                log.write(json.dumps(entry, sort_keys=True) + "\n")
        except OSError:
            pass


def read_step_log(path: Path, run: str | None = None) -> list[dict]:
    """The step log's entries (of one run, if given), oldest first."""
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if run is None or e.get("run") == run]


@dataclass(frozen=True)
class Unchanged:
    """What a step returns when it had nothing to do for a reason worth showing: printed as
    ``ok`` with the reason under it, and recorded in the step log with it."""

    reason: str


class StepFailed(Exception):
    """A step failed on a host. ``str()`` is the one-line message users see."""

    def __init__(self, host: str, step: str, reason: str):
        super().__init__(f"{host}: {step}: {reason}")
        self.host, self.step, self.reason = host, step, reason


def last_words(text: str, lines: int = 3) -> str:
    """The last non-empty lines of a command's output, joined for a one-line message."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no output"


@dataclass
class HostLog:
    """The steps run on one host, and what each did."""

    host: str
    task: str = "provision"
    results: list[tuple[str, str]] = field(default_factory=list)

    def step(self, name: str, action: Callable[[], bool | None]) -> bool:
        started = time.monotonic()
        try:
            outcome = action()
        except StepFailed as exc:
            self.failed(name, started, exc.reason, printed=True)
            raise
        except (UnexpectedExit, Failure) as exc:
            result = exc.result
            reason = last_words(result.stderr or result.stdout)
            self.failed(name, started, reason)
            raise StepFailed(self.host, name, reason) from None
        if isinstance(outcome, Unchanged):
            self.finish(name, "ok", started, [outcome.reason], reason=outcome.reason)
            return False
        changed = bool(outcome)
        self.finish(name, "changed" if changed else "ok", started)
        return changed

    def finish(
        self, name: str, status: str, started: float, details: Sequence[str] = (), **extra: str
    ) -> None:
        seconds = time.monotonic() - started
        self.results.append((name, status))
        say(f"[{self.host}] {name:<44} {status:<8} {seconds:5.1f}s")
        for line in details:
            say(f"[{self.host}]   | {line}")
        record(self.task, self.host, name, status, seconds, **extra)

    def failed(self, name: str, started: float, reason: str, printed: bool = False) -> None:
        if not printed:
            say(f"[{self.host}] {name:<44} FAILED")
        self.results.append((name, "failed"))
        record(self.task, self.host, name, "failed", time.monotonic() - started, reason=reason)

    @property
    def changed(self) -> int:
        return sum(1 for _, status in self.results if status in ("changed", "would change"))

    def summary(self) -> str:
        verb = "would change" if any(s == "would change" for _, s in self.results) else "changed"
        if self.task.endswith("--check") and verb == "changed":
            verb = "would change"
        return f"{self.host}: {len(self.results)} steps, {self.changed} {verb}"


def run_on_hosts(
    names: Sequence[str], work: Callable[[str], object], *, parallel: bool
) -> dict[str, object]:
    """Run ``work(name)`` for every host; results or exceptions keyed by host name.

    In parallel every host runs to its own end; serially (rolling) the first failure stops the
    run, and the hosts after it are left untouched (absent from the result).
    """
    outcomes: dict[str, object] = {}
    if parallel and len(names) > 1:
        with ThreadPoolExecutor(max_workers=min(len(names), 10)) as pool:
            futures = {name: pool.submit(work, name) for name in names}
            for name, future in futures.items():
                try:
                    outcomes[name] = future.result()
                except Exception as exc:  # reported per host by the caller
                    outcomes[name] = exc
        return outcomes
    for name in names:
        try:
            outcomes[name] = work(name)
        except Exception as exc:
            outcomes[name] = exc
            break
    return outcomes
