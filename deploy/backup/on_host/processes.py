"""Children piped together: each one's stderr kept (its end), bytes pumped between them."""

from __future__ import annotations

import contextlib
import subprocess
import threading

from .errors import JobError

CHUNK = 1 << 16
STDERR_KEPT = 4000


class Stage:
    """One child process of a pipeline, its stderr collected (the end of it) by a thread."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], **popen) -> None:
        self.name = name
        self.tail = b""
        try:
            self.proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, **popen)
        except FileNotFoundError:
            raise JobError(f"{name}: {argv[0]} is not installed") from None
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        for line in self.proc.stderr:
            self.tail = (self.tail + line)[-STDERR_KEPT:]

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def failure(self) -> str | None:
        """None when it exited 0, else one line: its name, status and last stderr line."""
        code = self.wait()
        if code == 0:
            return None
        lines = self.tail.decode(errors="replace").strip().splitlines()
        return f"{self.name} exited {code}: {lines[-1] if lines else 'no message'}"


def pump(source, sinks, digest=None, close=True) -> dict:
    """Copy ``source`` to every sink (and the digest) until EOF; then close the sinks. A sink
    that breaks ends the copy: the pipeline's other stages then see EOF and fail on their own."""
    size = 0
    result: dict = {"size": 0, "error": None}
    try:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if digest is not None:
                digest.update(chunk)
            for sink in sinks:
                sink.write(chunk)
    except (BrokenPipeError, OSError, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for sink in sinks if close else ():
            with contextlib.suppress(OSError):
                sink.close()
    result["size"] = size
    return result


def in_thread(func, *args) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        box["value"] = func(*args)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def run(name: str, argv: list[str], env: dict[str, str], stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(argv, env=env, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise JobError(f"{name}: {argv[0]} is not installed") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise JobError(f"{name} exited {done.returncode}: {lines[-1] if lines else 'no message'}")
    return done.stdout
