"""What a local host boots with and how it is reached: seed files, nspawn and SSH command lines.

Each host boots with exactly the user-data a real droplet gets from the Pulumi program
(``infra.cloudinit.render_user_data``), through cloud-init's NoCloud seed directory.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

from deploy.local.network import HostPlan
from infra.cloudinit import DEPLOY_USER, render_user_data

SEED_DIR = "/var/lib/cloud/seed/nocloud"


def user_data(host: HostPlan, public_key: str) -> str:
    return render_user_data(
        hostname=host.name, deploy_user=DEPLOY_USER, ssh_public_keys=[public_key]
    )


def meta_data(host: HostPlan, instance_id: str) -> str:
    """NoCloud meta-data. A new instance-id per ``up`` makes cloud-init treat the host as new."""
    return yaml.safe_dump(
        {"instance-id": instance_id, "local-hostname": host.name}, sort_keys=False
    )


def instance_id(host: HostPlan, stack_id: str) -> str:
    return f"ds-{stack_id}-{host.name}"


def seed_files(host: HostPlan, *, public_key: str, stack_id: str, nameservers: list[str]) -> dict:
    """Files written into a host's fresh root before it boots (path -> content)."""
    return {
        f"{SEED_DIR}/user-data": user_data(host, public_key),
        f"{SEED_DIR}/meta-data": meta_data(host, instance_id(host, stack_id)),
        "/etc/resolv.conf": resolv_conf(nameservers),
    }


def resolv_conf(nameservers: list[str]) -> str:
    return "".join(f"nameserver {n}\n" for n in nameservers)


def upstream_nameservers(resolv_conf_text: str, uplink_resolv_conf_text: str = "") -> list[str]:
    """The resolvers a host should use: this machine's, unless they are loopback stubs.

    A stub such as systemd-resolved's 127.0.0.53 is unreachable from another namespace; its
    upstream servers (``/run/systemd/resolve/resolv.conf``) are used instead.
    """
    for text in (resolv_conf_text, uplink_resolv_conf_text):
        servers = [
            s for s in _nameservers(text) if not ipaddress.ip_address(s.split("%")[0]).is_loopback
        ]
        servers = [s for s in servers if ipaddress.ip_address(s.split("%")[0]).version == 4]
        if servers:
            return servers
    return []


def _nameservers(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(fields[1])
    return found


def nspawn_command(host: HostPlan, root: Path) -> list[str]:
    """Boot the host's root with systemd as PID 1 inside the namespace this project made.

    --register=no and --keep-unit: this machine has no system D-Bus or systemd to register with.
    --resolv-conf=off and --timezone=off: the host keeps the files its root has, as a droplet does.
    """
    return [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
        f"--network-namespace-path={host.netns_path}",
        f"--directory={root}",
        f"--machine={host.name}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
    ]


# A reboot inside a host ends systemd-nspawn with status 133 ("reboot requested"). On
# DigitalOcean the hypervisor boots the droplet again with its disk; this loop is that part:
# the same root, booted again. Any other end (a poweroff, `down`, a hard kill) ends the loop.
SUPERVISOR = "dropstack-supervise"
# $1: the host's own cgroup (empty: none). Every container needs one: with --keep-unit and no
# systemd on this machine, nspawn puts each container's payload in <its own cgroup>/payload, so
# containers started from one cgroup share one cgroup tree, and one host's systemd removed
# another's unit cgroups: "Failed to attach to cgroup .../dropstack@blue.service: No such file
# or directory", status 219/CGROUP, on multi-host stacks only.
SUPERVISE_SCRIPT = (
    'cg=$1; shift; if [ -n "$cg" ]; then mkdir -p "$cg" && echo $$ > "$cg/cgroup.procs" '
    '|| exit 1; fi; while :; do "$@"; rc=$?; [ "$rc" -eq 133 ] || exit "$rc"; done'
)
# cgroup v2 inside the container, as on a droplet (this machine runs hybrid cgroups).
NSPAWN_ENVIRONMENT = {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
CGROUP_PARENT = "dropstack"


def host_cgroup(host: HostPlan, unified_root: Path | None) -> str:
    """The host's own cgroup in this machine's cgroup v2 tree ('' without one)."""
    return str(unified_root / CGROUP_PARENT / host.netns) if unified_root else ""


def supervised(command: list[str], cgroup: str = "") -> list[str]:
    """The command in its own cgroup, started again each time it exits with 133 (a reboot)."""
    return ["sh", "-c", SUPERVISE_SCRIPT, SUPERVISOR, cgroup, *command]


def is_supervisor_of(cmdline: list[str], host: HostPlan) -> bool:
    return (
        len(cmdline) > 4
        and cmdline[3] == SUPERVISOR
        and f"--network-namespace-path={host.netns_path}" in cmdline
    )


def overlay_mount_command(image: Path, host_dir: Path) -> list[str]:
    """Mount ``host_dir/root`` as the image (read-only, shared) plus this host's own changes."""
    layers = f"lowerdir={image},upperdir={host_dir / 'upper'},workdir={host_dir / 'work'}"
    return ["mount", "-t", "overlay", "overlay", "-o", layers, str(host_dir / "root")]


def is_nspawn_of(cmdline: list[str], host: HostPlan) -> bool:
    """Whether a process's argv is the nspawn of this host (down finds containers this way)."""
    return (
        bool(cmdline)
        and Path(cmdline[0]).name == "systemd-nspawn"
        and f"--network-namespace-path={host.netns_path}" in cmdline
    )


def known_hosts_line(host: HostPlan, host_public_key: str) -> str:
    """A known_hosts entry from the key the host generated, read from its root filesystem."""
    key_type, key = host_public_key.split()[:2]
    return f"{host.ssh_address} {key_type} {key}\n"


def ssh_command(
    host: HostPlan, *, key_path: Path, known_hosts: Path, command: str | None = None
) -> list[str]:
    argv = [
        "ssh",
        "-i",
        str(key_path),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        f"{DEPLOY_USER}@{host.ssh_address}",
    ]
    return argv + ([command] if command else [])
