"""Files on a host as data: what is wanted, what the host has, and the difference.

``RemoteFile`` is a wanted file. ``file_states_script`` is one batched, read-only probe of many
paths (checksum, mode, owner); ``differing`` keeps the files the host does not have exactly so.
``unified_diff`` shows an operator what would change (``fab provision --check``), with secrets
redacted. Writing them is ``deploy.provision.apply``'s job.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from deploy import shell


@dataclass(frozen=True)
class RemoteFile:
    path: str
    content: str
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    secret: bool = False  # its values never appear in a diff or a log

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()

    @property
    def state(self) -> str:
        """What the probe prints for this file when it is already as wanted."""
        return f"{self.sha256} {int(self.mode, 8):o} {self.owner} {self.group}"


# One line per path: `path<TAB>sha256 mode owner group`, or `path<TAB>absent`.
FILE_STATES_SCRIPT = (
    'for p in "$@"; do if [ -f "$p" ]; then '
    'printf \'%s\\t%s %s\\n\' "$p" "$(sha256sum < "$p" | cut -d\' \' -f1)" '
    '"$(stat -c \'%a %U %G\' "$p")"; else printf \'%s\\tabsent\\n\' "$p"; fi; done'
)


def file_states_command(paths: Iterable[str]) -> list[str]:
    return shell.script(FILE_STATES_SCRIPT, *paths)


def parse_file_states(output: str) -> dict[str, str]:
    states = {}
    for line in output.splitlines():
        path, _, state = line.partition("\t")
        if path:
            states[path] = state.strip()
    return states


def differing(files: Iterable[RemoteFile], states: dict[str, str]) -> list[RemoteFile]:
    """The files whose content, mode or ownership differ from what the host has."""
    return [f for f in files if states.get(f.path) != f.state]


def describe_difference(file: RemoteFile, state: str | None, current: str | None) -> list[str]:
    """What an operator reads for one differing file: a unified diff (values of secret files
    replaced by `<redacted>`), or the mode/owner change when only those differ."""
    if state in (None, "absent"):
        head = [f"+ {file.path} (new, {file.mode} {file.owner}:{file.group})"]
        return head + ([] if file.secret else [f"+{line}" for line in file.content.splitlines()])
    have_sha, _, have_meta = (state or "").partition(" ")
    lines = []
    if have_sha != file.sha256 and file.secret:
        lines += secret_difference(current or "", file.content) or [
            f"~ {file.path}: differs (values redacted)"
        ]
    elif have_sha != file.sha256:
        old, new = current or "", file.content
        diff = list(
            difflib.unified_diff(
                old.splitlines(), new.splitlines(), f"{file.path} (host)", f"{file.path}", n=1,
                lineterm="",
            )
        )  # fmt: skip
        lines += diff or [f"~ {file.path}: differs in white space only"]
    want_meta = f"{int(file.mode, 8):o} {file.owner} {file.group}"
    if have_meta != want_meta:
        lines.append(f"~ {file.path}: mode/owner {have_meta} -> {want_meta}")
    return lines


def secret_difference(old: str, new: str) -> list[str]:
    """Which keys of a KEY=value file differ, never their values."""
    have, want = _pairs(old), _pairs(new)
    lines = [f"- {k}=<redacted>" for k in have if k not in want]
    lines += [f"+ {k}=<redacted>" for k in want if k not in have]
    lines += [f"~ {k}=<redacted> (value differs)" for k in want if k in have and have[k] != want[k]]
    return lines


def _pairs(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            pairs[key] = value
    return pairs


# --- writing (commands only; deploy.provision.apply runs them) ---


def install_command(tmp: str, file: RemoteFile) -> list[str]:
    """Move an uploaded temp file into place atomically, with its mode and owner."""
    staged = file.path + ".dropstack-new"
    return shell.chain(
        ["mkdir", "-p", file.path.rsplit("/", 1)[0] or "/"],
        ["install", "-m", file.mode, "-o", file.owner, "-g", file.group, tmp, staged],
        ["mv", "-f", staged, file.path],
    )


BACKUP_SCRIPT = 'for p in "$@"; do if [ -f "$p" ]; then cp -p "$p" "$p.dropstack-old"; fi; done'
# Put each backup back, or remove a file that did not exist before.
RESTORE_SCRIPT = (
    'for p in "$@"; do if [ -f "$p.dropstack-old" ]; then mv -f "$p.dropstack-old" "$p"; '
    'else rm -f "$p"; fi; done'
)
FORGET_BACKUP_SCRIPT = 'for p in "$@"; do rm -f "$p.dropstack-old"; done'


def backup_command(paths: Iterable[str]) -> list[str]:
    return shell.script(BACKUP_SCRIPT, *paths)


def restore_command(paths: Iterable[str]) -> list[str]:
    return shell.script(RESTORE_SCRIPT, *paths)


def forget_backup_command(paths: Iterable[str]) -> list[str]:
    return shell.script(FORGET_BACKUP_SCRIPT, *paths)


def contents_command(paths: Iterable[str]) -> list[str]:
    """Each file's content, base64 on one line after its path (for diffs; read-only)."""
    return shell.script(
        'for p in "$@"; do printf \'%s\\t\' "$p"; base64 -w0 "$p" 2>/dev/null; echo; done', *paths
    )
