"""Image recipes: what goes into a droplet image, and a cache key that follows every input."""

import dataclasses
import os

import pytest

from deploy.local.image import (
    DB_IMAGE,
    WEB_IMAGE,
    cache_root,
    image_dir,
    image_key,
    mmdebstrap_command,
)
from deploy.local.image_cache import customise, write_into_root


def test_key_is_stable_and_short():
    assert image_key(WEB_IMAGE) == image_key(dataclasses.replace(WEB_IMAGE))
    assert len(image_key(WEB_IMAGE)) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"suite": "trixie"},
        {"sources": ("deb http://deb.debian.org/debian bookworm main",)},
        {"packages": (*WEB_IMAGE.packages, "vim")},
        {"files": (*WEB_IMAGE.files, ("/etc/motd", "hello\n"))},
        {"removed": ()},
        {"role": "other"},
    ],
    ids=["suite", "mirror", "packages", "customisation-files", "customisation-removals", "role"],
)
def test_key_changes_with_every_input(change):
    assert image_key(dataclasses.replace(WEB_IMAGE, **change)) != image_key(WEB_IMAGE)


def test_key_follows_the_build_format(monkeypatch):
    before = image_key(WEB_IMAGE)
    monkeypatch.setattr("deploy.local.image.BUILD_FORMAT", 999)
    assert image_key(WEB_IMAGE) != before


def test_web_image_is_a_bare_droplet():
    packages = set(WEB_IMAGE.packages)
    assert {"systemd", "openssh-server", "cloud-init", "sudo", "python3"} <= packages
    # Provisioning installs these with apt, exactly as on a droplet.
    assert not packages & {"nginx", "postgresql-15", "ufw", "python3-venv", "postgresql-client"}
    assert not any(p.startswith("linux-image") for p in packages)  # containers have no kernel


def test_db_image_adds_postgresql_to_the_droplet():
    # PgBouncer stands in for DigitalOcean's connection pools (fab local.up --db-pool N).
    assert set(DB_IMAGE.packages) - set(WEB_IMAGE.packages) == {
        "postgresql-15", "openssl", "pgbouncer"
    }  # fmt: skip
    assert image_key(DB_IMAGE) != image_key(WEB_IMAGE)


def test_cloud_init_uses_nocloud_only_and_leaves_networking_alone():
    files = dict(WEB_IMAGE.files)
    assert files["/etc/cloud/cloud.cfg.d/95-dropstack-nocloud.cfg"] == (
        "datasource_list: [NoCloud, None]\n"
    )
    assert files["/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg"] == (
        "network: {config: disabled}\n"
    )
    assert "/etc/ssh/ssh_host_*" in WEB_IMAGE.removed


def test_cache_lives_under_xdg_cache_home():
    assert cache_root({}) == cache_root({"XDG_CACHE_HOME": ""})
    assert str(cache_root({})) == "/root/.cache/dropstack/images"
    assert str(cache_root({"XDG_CACHE_HOME": "/srv/c"})) == "/srv/c/dropstack/images"
    assert image_dir(cache_root({}), WEB_IMAGE).name == f"web-{image_key(WEB_IMAGE)}"


def test_mmdebstrap_builds_minbase_with_the_packages(tmp_path):
    command = mmdebstrap_command(WEB_IMAGE, tmp_path / "root")
    assert command[:2] == ["mmdebstrap", "--variant=minbase"]
    assert f"--include={','.join(WEB_IMAGE.packages)}" in command
    assert command[-5:] == ["bookworm", str(tmp_path / "root"), *WEB_IMAGE.sources]


def test_customise_removes_host_keys_and_writes_the_files(tmp_path):
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (tmp_path / "etc/ssh/sshd_config").write_text("keep")
    (tmp_path / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
    customise(tmp_path, WEB_IMAGE)
    assert not (tmp_path / "etc/ssh/ssh_host_ed25519_key").exists()
    assert (tmp_path / "etc/ssh/sshd_config").read_text() == "keep"
    assert not (tmp_path / "etc/resolv.conf").exists()
    assert (tmp_path / "etc/default/locale").read_text() == "LANG=C.UTF-8\n"
    assert (tmp_path / "etc/machine-id").read_text() == ""


def test_writing_into_a_root_replaces_a_symlink_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("this machine's file")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink(outside, root / "etc/resolv.conf")
    write_into_root(root, "/etc/resolv.conf", "nameserver 198.18.0.1\n")
    assert outside.read_text() == "this machine's file"
    assert (root / "etc/resolv.conf").read_text() == "nameserver 198.18.0.1\n"
