"""What this machine must have before a local stack can start, as one-line problems."""

from __future__ import annotations

from collections.abc import Callable

# command -> the Debian package that provides it
REQUIRED_COMMANDS = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "nft": "nftables",
    "ip": "iproute2",
    "mount": "mount",
}
# With --domain: the local CA, and certbot for the load balancer's certificate.
ACME_COMMANDS = {
    "pebble": "pebble",
    "pebble-challtestsrv": "pebble",
    "certbot": "certbot",
    "curl": "curl",
    "openssl": "openssl",
}


def problems(
    euid: int,
    which: Callable[[str], str | None],
    task: str = "fab local.up",
    commands: dict[str, str] = REQUIRED_COMMANDS,
) -> list[str]:
    """Each problem is one line saying what to do about it."""
    found = []
    if euid != 0:
        found.append(
            f"{task} must run as root: the local droplet's namespaces, nftables table, "
            "containers and state directory are root's (try sudo)"
        )
    for command, package in commands.items():
        if which(command) is None:
            found.append(f"{command} is not installed; install it with `apt-get install {package}`")
    return found
