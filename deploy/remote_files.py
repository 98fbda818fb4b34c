"""Files on a host, changed only when they differ, and validated before they are activated.

``plan_files`` compares wanted files with one batched probe of the host; ``install_files`` writes
the differing ones atomically (upload to a private temp file, ``install`` next to the target, then
``mv``) and, given a validator, runs it on the new files and puts the old ones back if it fails, so
a config the validator rejects is never left in place for a reload to pick up.
"""

from __future__ import annotations

import hashlib
import io
import shlex
from dataclasses import dataclass

from fabric import Connection
from invoke.exceptions import UnexpectedExit

from deploy.steps import as_root, last_words


@dataclass(frozen=True)
class RemoteFile:
    path: str
    content: str
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()

    @property
    def state(self) -> str:
        """What the probe prints for this file when it is already as wanted."""
        return f"{self.sha256} {int(self.mode, 8):o} {self.owner} {self.group}"


class ValidationFailed(Exception):
    """The validator rejected new files; they were rolled back. The message is its output."""


def probe_command(paths: list[str]) -> str:
    """One shell command printing `path<TAB>sha256 mode owner group` (or `absent`) per path."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return (
        f'for p in {quoted}; do if [ -f "$p" ]; then '
        'printf \'%s\\t%s %s\\n\' "$p" "$(sha256sum < "$p" | cut -d\' \' -f1)" '
        '"$(stat -c \'%a %U %G\' "$p")"; else printf \'%s\\tabsent\\n\' "$p"; fi; done'
    )


def parse_probe(output: str) -> dict[str, str]:
    states = {}
    for line in output.splitlines():
        path, _, state = line.partition("\t")
        if path:
            states[path] = state.strip()
    return states


def files_to_write(files: list[RemoteFile], states: dict[str, str]) -> list[RemoteFile]:
    """The files whose content, mode or ownership differ from what the host has."""
    return [f for f in files if states.get(f.path) != f.state]


def install_command(tmp: str, file: RemoteFile) -> str:
    """Move an uploaded temp file into place atomically, with its mode and owner."""
    target = shlex.quote(file.path)
    staged = shlex.quote(file.path + ".dropstack-new")
    return (
        f"mkdir -p {shlex.quote(file.path.rsplit('/', 1)[0] or '/')} && "
        f"install -m {file.mode} -o {file.owner} -g {file.group} {shlex.quote(tmp)} {staged} && "
        f"mv -f {staged} {target}"
    )


def backup_command(path: str) -> str:
    q = shlex.quote(path)
    return f"if [ -f {q} ]; then cp -p {q} {q}.dropstack-old; fi"


def restore_command(path: str) -> str:
    """Put the backup back, or remove a file that did not exist before."""
    q = shlex.quote(path)
    return f"if [ -f {q}.dropstack-old ]; then mv -f {q}.dropstack-old {q}; else rm -f {q}; fi"


def plan_files(c: Connection, files: list[RemoteFile]) -> list[RemoteFile]:
    if not files:
        return []
    probe = as_root(c, probe_command([f.path for f in files]), hide=True)
    return files_to_write(files, parse_probe(probe.stdout))


def upload(c: Connection, file: RemoteFile) -> None:
    """Write one file in place. Its content travels over SFTP, never on a command line."""
    tmp = c.run("umask 077 && mktemp", hide=True).stdout.strip()
    try:
        c.put(io.BytesIO(file.content.encode()), tmp)
        as_root(c, install_command(tmp, file), hide=True)
    finally:
        c.run(f"rm -f {shlex.quote(tmp)}", hide=True, warn=True)


def install_files(c: Connection, files: list[RemoteFile], validate: str | None = None) -> list[str]:
    """Write the files that differ; with ``validate``, keep them only if it passes.

    Returns the paths written. Raises ValidationFailed with the validator's own message.
    """
    changed = plan_files(c, files)
    if not changed:
        return []
    if validate:
        for f in changed:
            as_root(c, backup_command(f.path), hide=True)
    for f in changed:
        upload(c, f)
    if validate:
        try:
            as_root(c, validate, hide=True)
        except UnexpectedExit as exc:
            for f in changed:
                as_root(c, restore_command(f.path), hide=True)
            raise ValidationFailed(last_words(exc.result.stderr or exc.result.stdout)) from None
        for f in changed:
            as_root(c, f"rm -f {shlex.quote(f.path + '.dropstack-old')}", hide=True)
    return [f.path for f in changed]
