"""Named steps with `changed` / `ok` reporting, per host, and running a plan on many hosts.

A step is a callable returning True when it changed the host. The runner prints one line per step,
prefixed by the host, so parallel output stays readable, and turns a failed remote command into
one line naming the host, the step and the command's own last words.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from invoke.exceptions import Failure, UnexpectedExit

_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print a whole line at once; threads share stdout."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class StepFailed(Exception):
    """A step failed on a host. ``str()`` is the one-line message users see."""

    def __init__(self, host: str, step: str, reason: str):
        super().__init__(f"{host}: {step}: {reason}")
        self.host, self.step, self.reason = host, step, reason


def as_root(c, command: str, **kwargs):
    """Run a shell command line as root. Invoke's ``sudo`` puts sudo before the command without a
    shell, so in ``a && b`` only ``a`` would be privileged; ``sh -c`` gives root the whole line."""
    return c.sudo(f"sh -c {shlex.quote(command)}", **kwargs)


def last_words(text: str, lines: int = 3) -> str:
    """The last non-empty lines of a command's output, joined for a one-line message."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no output"


@dataclass
class HostLog:
    """The steps run on one host, and what each did."""

    host: str
    results: list[tuple[str, str]] = field(default_factory=list)

    def step(self, name: str, action: Callable[[], bool | None]) -> bool:
        started = time.monotonic()
        try:
            changed = bool(action())
        except StepFailed:
            raise
        except (UnexpectedExit, Failure) as exc:
            result = exc.result
            reason = last_words(result.stderr or result.stdout)
            say(f"[{self.host}] {name:<44} FAILED")
            raise StepFailed(self.host, name, reason) from None
        status = "changed" if changed else "ok"
        self.results.append((name, status))
        say(f"[{self.host}] {name:<44} {status:<8} {time.monotonic() - started:5.1f}s")
        return changed

    @property
    def changed(self) -> int:
        return sum(1 for _, status in self.results if status == "changed")

    def summary(self) -> str:
        return f"{self.host}: {len(self.results)} steps, {self.changed} changed"


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
