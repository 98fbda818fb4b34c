"""The first-boot host keys cloud-init makes (infra/cloudinit.py): ed25519 only."""

import yaml

from infra.cloudinit import render_user_data


def test_first_boot_makes_only_the_ed25519_host_key():
    text = render_user_data(
        hostname="web-1", deploy_user="deploy", ssh_public_keys=["ssh-ed25519 A"]
    )
    config = yaml.safe_load(text.removeprefix("#cloud-config\n"))
    assert config["ssh_genkeytypes"] == ["ed25519"]
