"""Preflight problems are one line each and name the Debian package to install."""

from deploy.local.preflight import problems


def test_preflight_says_what_to_do():
    installed = {"ip": "/usr/bin/ip", "mount": "/usr/bin/mount"}
    found = problems(1000, installed.get)
    assert found[0].startswith("fab local.up must run as root")
    assert (
        "systemd-nspawn is not installed; install it with `apt-get install systemd-container`"
        in found
    )
    assert "nft is not installed; install it with `apt-get install nftables`" in found
    assert "mmdebstrap is not installed; install it with `apt-get install mmdebstrap`" in found
    assert all("\n" not in line for line in found)
    assert problems(0, lambda name: f"/usr/bin/{name}") == []
