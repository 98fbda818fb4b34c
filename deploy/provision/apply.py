"""Apply: run the changes the operations planned, over one Fabric connection.

The only code in provisioning that changes a host. Files travel over SFTP (never on a command
line), land atomically, and, when the change has a validator, stay only if it passes: the old
files are put back otherwise, so a config the validator rejects is never left for a reload.
"""

from __future__ import annotations

import base64
import io
from dataclasses import replace

from fabric import Connection

from deploy import shell
from deploy.inventory import Inventory
from deploy.provision import database
from deploy.provision import facts as f
from deploy.provision.files import (
    RemoteFile,
    backup_command,
    contents_command,
    forget_backup_command,
    install_command,
    restore_command,
)
from deploy.provision.operations import Change
from deploy.steps import last_words


class ValidationFailed(Exception):
    """The validator rejected new files; they were rolled back. The message is its output."""


def run(c: Connection, command, warn: bool = False):
    """Every provisioning command goes through here: joined once, no stdin, output kept."""
    return c.run(shell.join(command), hide=True, warn=warn, in_stream=False)


def gather(
    c: Connection,
    facts: list[f.Fact],
    inv: Inventory | None = None,
    previous: f.HostFacts | None = None,
) -> f.HostFacts:
    """The host's facts in one round trip; given the inventory (the first host), also the app
    user's privileges in the database, read through the cluster admin. Given ``previous``,
    what is not read again (facts left out, the privileges) keeps its earlier value."""  # fmt: skip
    output = run(c, f.gather_command(facts)).stdout
    values = f.parse_gathered(output, facts)
    if inv is not None:
        values["db_privileges"] = database.read_privileges(c, inv)
    if previous is not None:
        return replace(previous, **values)
    return f.HostFacts.from_gathered(values)


def current_contents(c: Connection, paths: list[str]) -> dict[str, str]:
    """The host's copies of files (for --check's diffs), read in one command."""
    if not paths:
        return {}
    output = run(c, shell.as_root(contents_command(paths))).stdout
    contents = {}
    for line in output.splitlines():
        path, _, encoded = line.partition("\t")
        if path:
            contents[path] = base64.b64decode(encoded).decode(errors="replace")
    return contents


def upload(c: Connection, file: RemoteFile) -> None:
    """Write one file in place. Its content travels over SFTP, never on a command line."""
    tmp = run(c, shell.chain(["umask", "077"], ["mktemp"])).stdout.strip()
    try:
        c.put(io.BytesIO(file.content.encode()), tmp)
        run(c, shell.as_root(install_command(tmp, file)))
    finally:
        run(c, ["rm", "-f", tmp], warn=True)


def apply_change(c: Connection, change: Change, inv: Inventory) -> None:
    if change.grant_schema:
        database.grant(c, inv)
    for command in change.commands:
        run(c, command)
    paths = [file.path for file in change.files]
    if change.validate and paths:
        run(c, shell.as_root(backup_command(paths)))
    for file in change.files:
        upload(c, file)
    if change.validate:
        result = run(c, change.validate, warn=True)
        if result.failed:
            if paths:
                run(c, shell.as_root(restore_command(paths)))
            words = last_words(result.stderr or result.stdout)
            kept = ", old config kept" if paths else ""
            raise ValidationFailed(f"{change.validate_name} failed{kept}: {words}")
        if paths:
            run(c, shell.as_root(forget_backup_command(paths)))
    for command in change.then:
        run(c, command)


def apply_changes(c: Connection, changes: list[Change], inv: Inventory) -> bool:
    for change in changes:
        apply_change(c, change, inv)
    return bool(changes)
