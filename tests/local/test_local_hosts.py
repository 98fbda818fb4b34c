"""Seed files, nspawn and SSH command lines for a local host."""

from pathlib import Path

import yaml

from deploy.local.hosts import (
    is_nspawn_of,
    known_hosts_line,
    meta_data,
    nspawn_command,
    overlay_mount_command,
    seed_files,
    ssh_command,
    upstream_nameservers,
)
from deploy.local.network import plan_stack
from infra.cloudinit import render_user_data

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx0nN2vGk2s1xK3c6q8F9gk7TtW3nPq3o0q0a0a0a0a test"
WEB1 = plan_stack(1).web[0]
DB = plan_stack(1).db


def test_user_data_is_exactly_what_a_droplet_gets():
    files = seed_files(WEB1, public_key=KEY, stack_id="abcd", nameservers=["10.0.0.2"])
    expected = render_user_data(hostname="web-1", deploy_user="deploy", ssh_public_keys=[KEY])
    assert files["/var/lib/cloud/seed/nocloud/user-data"] == expected


def test_meta_data_names_the_instance_and_host():
    data = yaml.safe_load(meta_data(WEB1, "ds-abcd-web-1"))
    assert data == {"instance-id": "ds-abcd-web-1", "local-hostname": "web-1"}


def test_each_up_is_a_new_instance():
    first = seed_files(WEB1, public_key=KEY, stack_id="aaaa", nameservers=["10.0.0.2"])
    second = seed_files(WEB1, public_key=KEY, stack_id="bbbb", nameservers=["10.0.0.2"])
    key = "/var/lib/cloud/seed/nocloud/meta-data"
    assert yaml.safe_load(first[key])["instance-id"] != yaml.safe_load(second[key])["instance-id"]


def test_resolv_conf_lists_the_nameservers():
    files = seed_files(DB, public_key=KEY, stack_id="x", nameservers=["10.0.0.2", "10.0.0.3"])
    assert files["/etc/resolv.conf"] == "nameserver 10.0.0.2\nnameserver 10.0.0.3\n"


def test_nameservers_plain():
    assert upstream_nameservers("search x\nnameserver 10.255.255.53\n") == ["10.255.255.53"]


def test_loopback_stub_falls_back_to_its_upstreams():
    stub = "nameserver 127.0.0.53\noptions edns0\n"
    uplink = "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
    assert upstream_nameservers(stub, uplink) == ["192.0.2.53"]
    assert upstream_nameservers(stub, "") == []


def test_nspawn_boots_in_the_hosts_namespace_without_registering():
    command = nspawn_command(WEB1, Path("/state/hosts/web-1/root"))
    assert command[0] == "systemd-nspawn"
    for flag in (
        "--boot",
        "--register=no",
        "--keep-unit",
        "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
        "--network-namespace-path=/run/netns/ds-web-1",
        "--directory=/state/hosts/web-1/root",
        "--machine=web-1",
        "--resolv-conf=off",
    ):
        assert flag in command


def test_nspawn_processes_are_recognised_by_their_namespace():
    argv = nspawn_command(WEB1, Path("/r"))
    assert is_nspawn_of(["/usr/bin/systemd-nspawn", *argv[1:]], WEB1)
    assert not is_nspawn_of(argv, plan_stack(2).web[1])
    assert not is_nspawn_of(["vim", "--network-namespace-path=/run/netns/ds-web-1"], WEB1)
    assert not is_nspawn_of([], WEB1)


def test_known_hosts_uses_the_address_this_machine_dials():
    host_key = "ssh-ed25519 AAAAkey root@web-1\n"
    assert known_hosts_line(WEB1, host_key) == "198.18.0.11 ssh-ed25519 AAAAkey\n"
    assert known_hosts_line(DB, host_key) == "198.18.1.100 ssh-ed25519 AAAAkey\n"


def test_ssh_checks_the_host_key_and_uses_only_the_stack_key():
    argv = ssh_command(WEB1, key_path=Path("/s/id"), known_hosts=Path("/s/kh"), command="id")
    assert argv[0] == "ssh"
    assert "StrictHostKeyChecking=yes" in argv
    assert "UserKnownHostsFile=/s/kh" in argv
    assert argv[-2:] == ["deploy@198.18.0.11", "id"]


def test_each_host_root_is_an_overlay_on_the_shared_image():
    command = overlay_mount_command(Path("/cache/web-abc"), Path("/state/hosts/web-1"))
    assert command == [
        "mount", "-t", "overlay", "overlay", "-o",
        "lowerdir=/cache/web-abc,upperdir=/state/hosts/web-1/upper,workdir=/state/hosts/web-1/work",
        "/state/hosts/web-1/root",
    ]  # fmt: skip
