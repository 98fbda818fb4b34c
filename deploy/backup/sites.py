"""Where job.py runs: on a web host over SSH, or on this machine (the tests, the benchmark).

Both run the same argv (``BackupLayout.job_command``) and stream bytes both ways without
decoding them: Invoke's ``run`` decodes stdin and stdout as text, which would corrupt a dump,
so the host side uses the Fabric connection's paramiko transport directly (one exec channel per
command). The command line is built with deploy.shell and runs as root (``shell.as_root``): the
job reads the root-only backup.env.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from deploy import shell

CHUNK = 1 << 16


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: bytes
    stderr: str

    def last_error(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else f"exited {self.code}"


class Site(Protocol):
    name: str

    def stream(
        self, argv: Sequence[str], stdin: BinaryIO | None = None, stdout: BinaryIO | None = None
    ) -> Completed:
        """Run ``argv``, feeding it ``stdin`` and copying its output to ``stdout`` (or into
        ``Completed.stdout`` when None); returns when it has exited."""


def copy(source: BinaryIO, write, close=None) -> str | None:
    """Copy until EOF; the error that stopped it, if one did."""
    try:
        while chunk := source.read(CHUNK):
            write(chunk)
    except (OSError, ValueError, EOFError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        if close is not None:
            with contextlib.suppress(OSError):
                close()
    return None


def run(site: Site, argv: Sequence[str], input: bytes = b"") -> Completed:
    """A short command with its stdin given as bytes."""
    import io

    return site.stream(argv, io.BytesIO(input))


class LocalSite:
    """job.py as a subprocess of this one."""

    name = "local"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env

    def stream(self, argv, stdin=None, stdout=None) -> Completed:
        proc = subprocess.Popen(
            list(argv),
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        errors: list[bytes] = []
        readers = [threading.Thread(target=lambda: errors.append(proc.stderr.read()))]
        if stdin is not None:
            readers.append(threading.Thread(target=copy, args=(stdin, proc.stdin.write,
                                                               proc.stdin.close)))  # fmt: skip
        else:
            proc.stdin.close()
        for thread in readers:
            thread.daemon = True
            thread.start()
        captured = bytearray()
        if copy(proc.stdout, stdout.write if stdout is not None else captured.extend):
            proc.stdout.close()  # the next stage is gone: let this one fail on its next write
        code = proc.wait()
        for thread in readers:
            thread.join(10)
        return Completed(code, bytes(captured), b"".join(errors).decode(errors="replace"))


class HostSite:
    """job.py on a web host, as root, over an open Fabric connection."""

    def __init__(self, connection, name: str) -> None:
        self.connection = connection
        self.name = name

    def stream(self, argv, stdin=None, stdout=None) -> Completed:
        transport = self.connection.client.get_transport()
        channel = transport.open_session()
        channel.exec_command(shell.join(shell.as_root(list(argv))))
        errors = bytearray()

        def read_errors() -> None:
            while data := channel.recv_stderr(CHUNK):
                errors.extend(data)

        threads = [threading.Thread(target=read_errors, daemon=True)]
        if stdin is not None:
            threads.append(
                threading.Thread(
                    target=copy, args=(stdin, channel.sendall, channel.shutdown_write), daemon=True
                )
            )
        else:
            channel.shutdown_write()
        for thread in threads:
            thread.start()
        captured = bytearray()
        write = stdout.write if stdout is not None else captured.extend
        try:
            while data := channel.recv(CHUNK):
                write(data)
        except OSError:
            # The next stage is gone (it failed, and says why): stop the remote command.
            channel.close()
            return Completed(-1, bytes(captured), errors.decode(errors="replace"))
        code = channel.recv_exit_status()
        for thread in threads:
            thread.join(10)
        channel.close()
        return Completed(code, bytes(captured), errors.decode(errors="replace"))
