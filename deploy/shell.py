"""One way to build shell commands: token lists, quoted and joined here and nowhere else.

A command is a list of tokens. Plain strings are arguments and are always quoted; ``Raw``
tokens are shell syntax (``&&``, ``|``, redirections) and pass through as written. Small pure
functions elsewhere return such lists (Kamal's command classes are the model); the code that
runs them calls ``join`` once, at the edge. Shell programs with loops are fixed scripts
(``script``) whose values travel as positional parameters, so no value is ever pasted into
shell syntax.

Root: ``as_root`` is the only way to become root. Invoke's ``sudo`` prefixes only the first
word, so in ``a && b`` only ``a`` would be privileged; ``sudo -n sh -c`` gives root the whole
command, non-interactively (the deploy user has passwordless sudo; a prompt would hang).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence


class Raw(str):
    """Shell syntax, passed through unquoted. Never build one from a value."""


AND, OR, PIPE, THEN = Raw("&&"), Raw("||"), Raw("|"), Raw(";")
QUIET = Raw(">/dev/null 2>&1")
NO_STDERR = Raw("2>/dev/null")

Command = Sequence[str]


def join(command: Command) -> str:
    """The command line a shell runs: arguments quoted, ``Raw`` syntax as it is."""
    return " ".join(t if isinstance(t, Raw) else shlex.quote(str(t)) for t in command)


def _between(operator: Raw, commands: Iterable[Command]) -> list[str]:
    joined: list[str] = []
    for command in commands:
        if not command:
            continue
        if joined:
            joined.append(operator)
        joined.extend(command)
    return joined


def chain(*commands: Command) -> list[str]:
    """``a && b && c``: each runs only if the one before succeeded."""
    return _between(AND, commands)


def either(*commands: Command) -> list[str]:
    """``a || b``: the next runs only if the one before failed."""
    return _between(OR, commands)


def pipe(*commands: Command) -> list[str]:
    return _between(PIPE, commands)


def sequence(*commands: Command) -> list[str]:
    """``a ; b``: each runs whatever the one before did."""
    return _between(THEN, commands)


def shell(command: Command) -> list[str]:
    """Run a compound command (``&&``, pipes) as one ``sh -c`` argument."""
    return ["sh", "-c", join(command)]


def script(text: str, *args: object, name: str = "dropstack") -> list[str]:
    """A fixed shell program with its values as ``$1``, ``$2``...: the program is a constant,
    the values are arguments, so nothing needs escaping inside it."""
    return ["sh", "-c", text, name, *(str(a) for a in args)]


def as_root(command: Command) -> list[str]:
    """The whole command as root, without a password prompt."""
    return ["sudo", "-n", *shell(command)]
