"""Files as data: what is compared, the diffs --check prints, and the commands that move files
into place, run for real against a temporary directory."""

import subprocess

from deploy.provision.files import (
    RemoteFile,
    backup_command,
    describe_difference,
    differing,
    file_states_command,
    parse_file_states,
    restore_command,
)
from deploy.shell import join


def sh(command) -> str:
    done = subprocess.run(["sh", "-c", join(command)], check=True, capture_output=True, text=True)
    return done.stdout


def test_probe_output_is_parsed_per_path():
    out = "/etc/a\tabc 644 root root\n/etc/b\tabsent\n"
    assert parse_file_states(out) == {"/etc/a": "abc 644 root root", "/etc/b": "absent"}


def test_only_differing_files_are_written():
    same = RemoteFile("/etc/same", "x\n")
    other_mode = RemoteFile("/etc/mode", "x\n", mode="0640", group="app")
    new = RemoteFile("/etc/new", "y\n")
    states = {
        "/etc/same": f"{same.sha256} 644 root root",
        "/etc/mode": f"{other_mode.sha256} 644 root app",
        "/etc/new": "absent",
    }
    assert differing([same, other_mode, new], states) == [other_mode, new]


def test_probe_reads_real_files_with_awkward_names(tmp_path):
    odd = tmp_path / "it's a $file; with spaces"
    odd.write_text("x\n")
    missing = tmp_path / "missing"
    states = parse_file_states(sh(file_states_command([str(odd), str(missing)])))
    user = sh(["id", "-un"]).strip()
    group = sh(["id", "-gn"]).strip()
    mode = f"{odd.stat().st_mode & 0o777:o}"
    sha = RemoteFile(str(odd), "x\n").sha256
    assert states[str(odd)] == f"{sha} {mode} {user} {group}"
    assert states[str(missing)] == "absent"


def test_backup_and_restore_put_back_the_old_file_and_remove_a_new_one(tmp_path):
    old, new = tmp_path / "old.conf", tmp_path / "new.conf"
    old.write_text("before\n")
    sh(backup_command([str(old), str(new)]))
    old.write_text("broken\n")
    new.write_text("broken\n")
    sh(restore_command([str(old), str(new)]))
    assert old.read_text() == "before\n" and not new.exists()


def test_diff_shows_lines_and_ownership():
    wanted = RemoteFile("/etc/ssh/sshd_config.d/20-dropstack.conf", "PasswordAuthentication no\n")
    state = "0" * 64 + " 600 root root"
    lines = describe_difference(wanted, state, "PasswordAuthentication yes\n")
    assert "-PasswordAuthentication yes" in lines and "+PasswordAuthentication no" in lines
    assert lines[-1].endswith("mode/owner 600 root root -> 644 root root")


def test_diff_of_a_secret_file_never_shows_values():
    wanted = RemoteFile("/etc/dropstack/app.env", "SECRET_KEY=new-value\nA=1\n", secret=True)
    lines = describe_difference(wanted, "0" * 64 + " 640 root root", "SECRET_KEY=old-value\nA=1\n")
    text = "\n".join(lines)
    assert "new-value" not in text and "old-value" not in text
    assert lines[0] == "~ SECRET_KEY=<redacted> (value differs)"


def test_new_file_is_listed_whole_unless_secret():
    assert describe_difference(RemoteFile("/etc/a", "line\n"), "absent", None) == [
        "+ /etc/a (new, 0644 root:root)",
        "+line",
    ]
    assert describe_difference(RemoteFile("/etc/s", "K=v\n", secret=True), None, None) == [
        "+ /etc/s (new, 0644 root:root)"
    ]
