"""The one command idiom: token lists, quoted and joined in one place, one way to be root."""

import subprocess

import pytest

from deploy import shell


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["echo", "a b"], "echo 'a b'"),
        (["echo", "$HOME", "`id`"], "echo '$HOME' '`id`'"),
        (shell.chain(["true"], ["echo", "x;y"]), "true && echo 'x;y'"),
        (shell.either(["false"], ["true"]), "false || true"),
        (shell.pipe(["printf", "%s\\n", "a"], ["wc", "-l"]), "printf '%s\\n' a | wc -l"),
        (shell.sequence([], ["true"], []), "true"),
    ],
)
def test_join_quotes_values_and_keeps_syntax(command, expected):
    assert shell.join(command) == expected


def test_as_root_wraps_the_whole_compound_command():
    command = shell.as_root(shell.chain(["id", "-u"], ["touch", "/x y"]))
    assert command[:4] == ["sudo", "-n", "sh", "-c"]
    assert command[4] == "id -u && touch '/x y'"


def test_script_values_are_arguments_not_code(tmp_path):
    hostile = "$(touch pwned); `touch pwned2`; 'quote\""
    out = subprocess.run(
        ["sh", "-c", shell.join(shell.script('printf "%s|%s" "$1" "$2"', hostile, "b"))],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out == f"{hostile}|b"
    assert not list(tmp_path.iterdir())
