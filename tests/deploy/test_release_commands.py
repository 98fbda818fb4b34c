"""The commands a release runs on a host, as token lists (test_release_scripts.py runs the ones
that carry logic against a real temporary tree)."""

from deploy.host_model import HostSettings
from deploy.release import commands as cmd
from deploy.shell import join

LAYOUT = HostSettings().paths


def root_script(command: list[str]) -> str:
    """The script a root command runs: everything after `sudo -n sh -c`."""
    assert command[:4] == ["sudo", "-n", "sh", "-c"], command
    return command[4]


def test_slot_link_and_env_are_replaced_atomically():
    script = root_script(cmd.point_slot_command(LAYOUT, "green", "20261121150405-0123456"))
    assert (
        "ln -sfn /srv/dropstack/releases/20261121150405-0123456 /srv/dropstack/slots/green.tmp"
        in script
    )
    assert "mv -T /srv/dropstack/slots/green.tmp /srv/dropstack/slots/green" in script
    assert "DROPSTACK_RELEASE=20261121150405-0123456" in script
    assert "mv -f /srv/dropstack/slots/green.env.tmp /srv/dropstack/slots/green.env" in script


def test_current_switch_is_ln_then_mv_t():
    assert root_script(cmd.switch_current_command(LAYOUT, "R")) == (
        "ln -sfn /srv/dropstack/releases/R /srv/dropstack/current.tmp && "
        "mv -T /srv/dropstack/current.tmp /srv/dropstack/current && "
        "touch /srv/dropstack/releases/R/.dropstack-served && "
        "rm -f /srv/dropstack/releases/R/.dropstack-rolled-back"
    )


def test_a_rollback_marks_the_release_it_leaves():
    assert root_script(cmd.switch_current_command(LAYOUT, "R", left="S")).endswith(
        "rm -f /srv/dropstack/releases/R/.dropstack-rolled-back && "
        "touch /srv/dropstack/releases/S/.dropstack-rolled-back"
    )
    # A restart of the live release (a secret rotation) leaves nothing.
    assert "touch /srv/dropstack/releases/S/.dropstack-rolled-back" not in root_script(
        cmd.switch_current_command(LAYOUT, "S", left="S")
    )


def test_migrations_and_slots_go_through_systemd():
    assert root_script(cmd.migrate_command(LAYOUT, "green")) == (
        "systemctl start dropstack-migrate@green.service"
    )
    assert "systemctl restart dropstack@green.service" in root_script(
        cmd.start_slot_command(LAYOUT, "green")
    )
    assert root_script(cmd.stop_slot_command(LAYOUT, "blue")) == (
        "systemctl stop dropstack@blue.service"
    )


def test_venv_is_built_offline_from_the_uploaded_wheels_and_marked_complete_last():
    command = cmd.build_venv_command(LAYOUT, "abc", "/srv/x/.incoming-R/wheelhouse.tar")
    script, args = command[2], command[4:]
    assert args == ["/srv/dropstack/venvs/abc", "/srv/x/.incoming-R/wheelhouse.tar"]
    assert "--no-index" in script and '--find-links "$wheels"' in script
    assert script.rstrip().endswith('touch "$venv/.complete"')
    assert cmd.venv_ready_command(LAYOUT, "abc") == [
        "test", "-f", "/srv/dropstack/venvs/abc/.complete"
    ]  # fmt: skip


def test_journal_lines_are_bounded_and_since_the_attempt():
    script = root_script(cmd.journal_command(["dropstack@green.service"], 30, "@1700000000"))
    assert script == (
        "journalctl --no-pager -o short-iso -n 30 -u dropstack@green.service --since @1700000000"
    )


def test_logs_quote_unit_patterns_and_since():
    script = root_script(
        cmd.journal_command(["dropstack@blue", "dropstack-migrate@*"], 50, "10 min ago", True)
    )
    assert script == (
        "journalctl --no-pager -o short-iso -n 50 -u dropstack@blue -u 'dropstack-migrate@*' "
        "--since '10 min ago' -f"
    )


def test_db_revision_is_read_with_the_env_file_not_argv():
    layout = HostSettings(env_file="/etc/elsewhere/secrets.env", app_user="svc").paths
    script = root_script(cmd.db_revision_command(layout, "blue"))
    assert "-p EnvironmentFile=/etc/elsewhere/secrets.env" in script and "-p User=svc" in script
    assert "DATABASE_URL" not in script
    assert script.endswith("-m app.manage current")


def test_traffic_moves_by_replacing_the_live_link_without_an_nginx_reload():
    script = root_script(cmd.route_command(LAYOUT, "green"))
    assert script == (
        "ln -sfn /run/dropstack/green.sock /srv/dropstack/live.sock.tmp && "
        "mv -T /srv/dropstack/live.sock.tmp /srv/dropstack/live.sock"
    )
    assert "nginx" not in script


def test_drain_counts_connections_to_the_old_slots_socket_for_a_bounded_time():
    command = cmd.drain_wait_command(LAYOUT, "blue", 15)
    assert command[-3:] == ["/run/dropstack/blue.sock", "15", cmd.DRAIN_POLL_SECONDS]
    assert 'ss -xH state connected src "$1" | wc -l' in command[2]
    # Polled well inside Nginx's keepalive_time (300 ms), which bounds a drain under load.
    assert float(cmd.DRAIN_POLL_SECONDS) <= 0.1


def test_no_value_reaches_the_shell_unquoted():
    line = join(cmd.mark_failed_command(LAYOUT, "R", {"reason": "it's `broken` $(now)"}))
    assert '\'{"reason": "it\'"\'"\'s `broken` $(now)"}\'' in line
