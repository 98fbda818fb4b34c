"""Cloud-init user-data for a web droplet, as a pure function.

A real droplet (infra/web.py) and a local droplet host (deploy/local) both boot with the output of
``render_user_data``, so what cloud-init does on first boot is identical in the cloud and here.
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

# Applied by sshd before the distribution's defaults: sshd keeps the *first* value it reads for
# a keyword, and Debian's sshd_config includes sshd_config.d/*.conf at its very top.
# The user cloud-init creates for deploys; infra/ exports it as ssh_user, the local droplet
# boots with it too.
DEPLOY_USER = "deploy"
SSHD_HARDENING_PATH = "/etc/ssh/sshd_config.d/10-dropstack-cloudinit.conf"
SSHD_HARDENING = """\
# Written by cloud-init from dropstack's user-data. fab provision adds more hardening.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
"""


def render_user_data(*, hostname: str, deploy_user: str, ssh_public_keys: Sequence[str]) -> str:
    """Return ``#cloud-config`` user-data that creates the deploy user and locks down SSH.

    The deploy user logs in with the given keys only and has passwordless sudo (Fabric needs it to
    provision); root cannot log in over SSH and no account can log in with a password.
    """
    keys = [key.strip() for key in ssh_public_keys if key.strip()]
    if not keys:
        raise ValueError("ssh_public_keys: at least one public key is required")
    config = {
        "hostname": hostname,
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "disable_root": True,
        "ssh_pwauth": False,
        # Only the ed25519 host key at first boot: ssh-audit's hardened policy refuses ECDSA,
        # and cloud-init makes RSA keys of 3072 bits; fab provision adds the RSA 4096 key.
        # The operator's known_hosts pins this ed25519 key, which provisioning never replaces.
        "ssh_genkeytypes": ["ed25519"],
        "users": [
            {
                "name": deploy_user,
                "gecos": "dropstack deploy user",
                "shell": "/bin/bash",
                "groups": ["sudo"],
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": keys,
            }
        ],
        "write_files": [
            {
                "path": SSHD_HARDENING_PATH,
                "owner": "root:root",
                "permissions": "0644",
                "content": SSHD_HARDENING,
            }
        ],
    }
    return "#cloud-config\n" + yaml.dump(
        config, Dumper=_CloudConfigDumper, sort_keys=False, width=1000
    )


class _CloudConfigDumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks: the user-data reads like the files it writes."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CloudConfigDumper.add_representer(str, _represent_str)
