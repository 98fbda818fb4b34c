"""The commands a release runs on a host, compared as strings (test_release_scripts.py runs the
ones that carry logic)."""

from deploy.release import commands as cmd
from deploy.release.layout import Layout

LAYOUT = Layout()


def test_root_commands_run_whole_under_sudo():
    # Invoke's sudo() would prefix only the first word of `a && b`.
    assert cmd.as_root("a && b") == "sudo -n sh -c 'a && b'"


def test_slot_link_and_env_are_replaced_atomically():
    line = cmd.point_slot_command(LAYOUT, "green", "20261121150405-0123456")
    assert (
        "ln -sfn /srv/dropstack/releases/20261121150405-0123456 /srv/dropstack/slots/green.tmp"
        in line
    )
    assert "mv -T /srv/dropstack/slots/green.tmp /srv/dropstack/slots/green" in line
    assert "DROPSTACK_RELEASE=%s" in line and "/srv/dropstack/slots/green.env" in line


def test_current_switch_is_ln_then_mv_t():
    assert cmd.switch_current_command(LAYOUT, "R") == cmd.as_root(
        "ln -sfn /srv/dropstack/releases/R /srv/dropstack/current.tmp && "
        "mv -T /srv/dropstack/current.tmp /srv/dropstack/current && "
        "touch /srv/dropstack/releases/R/.dropstack-served"
    )


def test_migrations_and_slots_go_through_systemd():
    assert cmd.migrate_command(LAYOUT, "green") == cmd.as_root(
        "systemctl start dropstack-migrate@green.service"
    )
    assert "systemctl restart dropstack@green.service" in cmd.start_slot_command(LAYOUT, "green")
    assert cmd.stop_slot_command(LAYOUT, "blue") == cmd.as_root(
        "systemctl stop dropstack@blue.service"
    )


def test_venv_is_built_offline_from_the_uploaded_wheels_and_marked_complete_last():
    line = cmd.build_venv_command(
        LAYOUT, "abc", "/srv/dropstack/releases/.incoming-R/wheelhouse.tar"
    )
    assert "python3 -m venv /srv/dropstack/venvs/abc" in line
    assert "--no-index" in line and "--find-links /srv/dropstack/venvs/abc.wheels" in line
    assert line.endswith("touch /srv/dropstack/venvs/abc/.complete")
    assert cmd.venv_ready_command(LAYOUT, "abc") == "test -f /srv/dropstack/venvs/abc/.complete"


def test_journal_lines_are_bounded_and_since_the_attempt():
    assert cmd.journal_command("dropstack@green.service", 30, 1700000000) == cmd.as_root(
        "journalctl -u dropstack@green.service -n 30 --since @1700000000 --no-pager -o short-iso"
    )


def test_db_revision_is_read_with_the_env_file_not_argv():
    line = cmd.db_revision_command(LAYOUT, "blue", "/etc/dropstack/app.env", "app")
    assert "-p EnvironmentFile=/etc/dropstack/app.env" in line and "-p User=app" in line
    assert "DATABASE_URL" not in line
    assert line.endswith("-m app.manage current'")


def test_traffic_moves_by_replacing_the_live_link_without_an_nginx_reload():
    line = cmd.route_command(LAYOUT, "green")
    assert line == cmd.as_root(
        "ln -sfn /run/dropstack/green.sock /srv/dropstack/live.sock.tmp && "
        "mv -T /srv/dropstack/live.sock.tmp /srv/dropstack/live.sock"
    )
    assert "nginx" not in line


def test_drain_counts_connections_to_the_old_slots_socket_for_a_bounded_time():
    line = cmd.drain_wait_command(LAYOUT, "blue", 15)
    assert "ss -xH state connected src /run/dropstack/blue.sock | wc -l" in line
    assert "end=$(( $(date +%s) + 15 ))" in line and "sleep 15;" in line
