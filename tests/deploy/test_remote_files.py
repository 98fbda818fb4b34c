"""Idempotent file installation: what is compared, and the commands that move files into place."""

from deploy.remote_files import (
    RemoteFile,
    files_to_write,
    install_command,
    parse_probe,
    probe_command,
    restore_command,
)


def test_probe_output_is_parsed_per_path():
    out = "/etc/a\tabc 644 root root\n/etc/b\tabsent\n"
    assert parse_probe(out) == {"/etc/a": "abc 644 root root", "/etc/b": "absent"}


def test_only_differing_files_are_written():
    same = RemoteFile("/etc/same", "x\n")
    other_mode = RemoteFile("/etc/mode", "x\n", mode="0640", group="app")
    new = RemoteFile("/etc/new", "y\n")
    states = {
        "/etc/same": f"{same.sha256} 644 root root",
        "/etc/mode": f"{other_mode.sha256} 644 root app",
        "/etc/new": "absent",
    }
    assert files_to_write([same, other_mode, new], states) == [other_mode, new]


def test_install_is_atomic_rename_with_mode_and_owner():
    cmd = install_command(
        "/tmp/tmp.X", RemoteFile("/etc/dropstack/app.env", "s", "0640", "root", "app")
    )
    assert "install -m 0640 -o root -g app /tmp/tmp.X /etc/dropstack/app.env.dropstack-new" in cmd
    assert cmd.endswith("mv -f /etc/dropstack/app.env.dropstack-new /etc/dropstack/app.env")


def test_restore_puts_back_the_old_file_or_removes_a_new_one():
    cmd = restore_command("/etc/nginx/sites-available/dropstack")
    assert "mv -f /etc/nginx/sites-available/dropstack.dropstack-old" in cmd
    assert "rm -f /etc/nginx/sites-available/dropstack" in cmd


def test_probe_command_quotes_paths():
    assert "'/etc/with space'" in probe_command(["/etc/with space"])
