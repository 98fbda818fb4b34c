"""Release naming, paths and settings."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from deploy.host_model import HostSettings, other_slot
from deploy.release.settings import (
    ReleaseError,
    ReleaseSettings,
    free_release_name,
    is_release_name,
    release_name,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("built_at", "dirty", "expected"),
    [
        (datetime(2026, 11, 21, 15, 4, 5, tzinfo=UTC), False, "20261121150405-0123456"),
        (datetime(2026, 11, 21, 15, 4, 5, tzinfo=UTC), True, "20261121150405-0123456-dirty"),
        # Names are UTC whatever the machine's zone, so they sort across deployers.
        (
            datetime(2026, 11, 21, 16, 4, 5, tzinfo=timezone(timedelta(hours=1))),
            False,
            "20261121150405-0123456",
        ),
    ],
)
def test_release_name_is_utc_stamp_and_short_sha(built_at, dirty, expected):
    assert release_name(built_at, SHA, dirty) == expected
    assert is_release_name(expected)


@pytest.mark.parametrize(
    "name", [".incoming-20261121150405-0123456", "current", "2026-0123456", "20261121150405-XYZ"]
)
def test_other_directory_names_are_not_releases(name):
    assert not is_release_name(name)


def test_names_sort_by_build_time():
    older = release_name(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "f" * 40)
    newer = release_name(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC), "0" * 40)
    assert sorted([newer, older]) == [older, newer]


@pytest.mark.parametrize(
    ("name", "taken", "expected"),
    [
        ("20261121150405-0123456", set(), "20261121150405-0123456"),
        ("20261121150405-0123456", {"20261121150404-0123456"}, "20261121150405-0123456"),
        # Another deploy of this commit in this second is on a host: a second later.
        ("20261121150405-0123456", {"20261121150405-0123456"}, "20261121150406-0123456"),
        # ... past every name taken, over a minute and a day's end; -dirty kept.
        (
            "20261121235959-0123456-dirty",
            {"20261121235959-0123456-dirty", "20261122000000-0123456-dirty"},
            "20261122000001-0123456-dirty",
        ),
        # A different commit's name in that second is no collision.
        ("20261121150405-0123456", {"20261121150405-abcdef0"}, "20261121150405-0123456"),
    ],
)
def test_a_name_a_host_has_moves_on_a_second(name, taken, expected):
    free = free_release_name(name, taken)
    assert free == expected and free not in taken and is_release_name(free)
    assert sorted([*taken, free])[-1] == free or free == name  # still sorts after the taken one


def test_layout_paths_follow_the_provisioned_host():
    layout = HostSettings().paths
    assert layout.release("R") == "/srv/dropstack/releases/R"
    assert layout.slot("green") == "/srv/dropstack/slots/green"
    assert layout.slot_env("green") == "/srv/dropstack/slots/green.env"
    assert layout.socket("blue") == "/run/dropstack/blue.sock"
    assert layout.unit("blue") == "dropstack@blue.service"
    assert layout.migrate_unit("green") == "dropstack-migrate@green.service"
    assert layout.live_socket == "/srv/dropstack/live.sock"
    assert layout.lock == "/srv/dropstack/deploy.lock"
    assert layout.audit_log == "/srv/dropstack/audit.log"
    assert layout.env_file == "/etc/dropstack/app.env"


def test_layout_follows_app_name_and_root():
    layout = HostSettings(app_name="shop", app_root="/opt/shop").paths
    assert layout.current == "/opt/shop/current"
    assert layout.socket("green") == "/run/shop/green.sock"
    assert layout.env_file == "/etc/shop/app.env"


def test_other_slot():
    assert other_slot("blue") == "green"
    assert other_slot("green") == "blue"


def test_settings_come_from_the_dropstack_config_section():
    settings = ReleaseSettings.from_config(
        {
            "host": {"app_name": "shop", "gunicorn_workers": 2},
            "release": {"keep": 3},
            "app": {"archive_paths": ["app", "bin"]},
        }
    )
    assert settings.keep == 3
    assert settings.archive_paths == ("app", "bin")
    assert ReleaseSettings.from_config(None) == ReleaseSettings()


@pytest.mark.parametrize(
    ("release", "message"),
    [
        ({"kep": 3}, "dropstack.release.kep: not a setting"),
        ({"keep": 1}, "keep: must be at least 2"),
    ],
)
def test_bad_release_settings_are_one_line_errors(release, message):
    with pytest.raises(ReleaseError, match=message):
        ReleaseSettings.from_config({"release": release})
