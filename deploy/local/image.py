"""The root filesystems the local hosts boot, as recipes with a cache key.

A web host must look like a fresh DigitalOcean Debian 12 droplet: no nginx, no app, nothing that
``fab provision`` installs later with apt. The database host gets a second image with PostgreSQL
preinstalled, because a managed database is a service nobody provisions.

Images are cached under a directory named by a hash of everything that goes into them (suite,
sources, packages, the files written after bootstrap, the build format), so a change to any input
builds a new image and an unchanged recipe never rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

# Bump when the build *procedure* changes in a way the recipe fields do not show.
BUILD_FORMAT = 1

SUITE = "bookworm"
# What a Debian 12 droplet's apt uses; deb.debian.org is the only archive this machine may reach.
SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)

# A bare droplet: init, sshd, cloud-init and what cloud-init and Fabric need. No kernel (a
# container shares this machine's), no udev (it does not run in a container), no ifupdown
# (addresses come from outside, as DigitalOcean's metadata configures a droplet's).
DROPLET_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",  # hostnamectl, used by cloud-init's set_hostname
    "openssh-server",
    "cloud-init",
    "sudo",
    "python3",
    "iproute2",
    "netbase",
    "procps",
    "ca-certificates",
    "curl",
)
# PgBouncer stands in for DigitalOcean's connection pools (port 25061, transaction mode).
DATABASE_PACKAGES = ("postgresql-15", "openssl", "pgbouncer")

# Files written into the image after bootstrap (path -> content).
DROPLET_FILES = (
    # Only the seed directory this project writes; no probing of cloud metadata services.
    ("/etc/cloud/cloud.cfg.d/95-dropstack-nocloud.cfg", "datasource_list: [NoCloud, None]\n"),
    # The addresses are configured from outside the container before it boots.
    ("/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg", "network: {config: disabled}\n"),
    # Without a system locale cloud-init's locale module tries to generate en_US.UTF-8, which
    # minbase cannot, and reports the boot as failed. C.UTF-8 needs no generation.
    ("/etc/default/locale", "LANG=C.UTF-8\n"),
    ("/etc/hostname", "localhost\n"),
    # Empty: each host gets its own machine id on first boot, as a new droplet does.
    ("/etc/machine-id", ""),
)
# Removed from the image: host keys must differ per host (cloud-init generates them on first
# boot) and this machine's resolver must not be baked into a cached image.
DROPLET_REMOVED = (
    "/etc/ssh/ssh_host_*",
    "/etc/resolv.conf",
)


@dataclass(frozen=True)
class ImageRecipe:
    role: str
    suite: str
    sources: tuple[str, ...]
    packages: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    removed: tuple[str, ...]


WEB_IMAGE = ImageRecipe(
    role="web",
    suite=SUITE,
    sources=SOURCES,
    packages=DROPLET_PACKAGES,
    files=DROPLET_FILES,
    removed=DROPLET_REMOVED,
)
DB_IMAGE = ImageRecipe(
    role="db",
    suite=SUITE,
    sources=SOURCES,
    packages=DROPLET_PACKAGES + DATABASE_PACKAGES,
    files=DROPLET_FILES,
    removed=DROPLET_REMOVED,
)
IMAGES = {"web": WEB_IMAGE, "db": DB_IMAGE}


def image_key(recipe: ImageRecipe) -> str:
    """A short hash of every input of the image."""
    inputs = {"build_format": BUILD_FORMAT, **asdict(recipe)}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def cache_root(environ: dict[str, str] | os._Environ = os.environ) -> Path:
    """``${XDG_CACHE_HOME:-/root/.cache}/dropstack/images``."""
    return Path(environ.get("XDG_CACHE_HOME") or "/root/.cache") / "dropstack" / "images"


def image_dir(root: Path, recipe: ImageRecipe) -> Path:
    return root / f"{recipe.role}-{image_key(recipe)}"


def mmdebstrap_command(recipe: ImageRecipe, target: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=minbase",
        "--quiet",
        f"--include={','.join(recipe.packages)}",
        recipe.suite,
        str(target),
        *recipe.sources,
    ]
