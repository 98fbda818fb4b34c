"""How the stack's resources are named, as a pure function of the Pulumi project and stack.

Every DigitalOcean name the program sets (VPC, droplets, tag, firewall, cluster, project) starts
with one prefix, so two stacks share an account without colliding and a resource's name says
which stack owns it.
"""

from __future__ import annotations

import re

from infra.settings import SettingsError

# Leaves room for "-web-10" within a 63-character hostname label and DigitalOcean's name limits.
MAX_PREFIX_LENGTH = 40


def resource_prefix(project: str, stack: str) -> str:
    """``<project>-<stack>`` in lowercase letters, digits and hyphens, e.g. ``dropstack-prod``."""
    prefix = re.sub(r"[^a-z0-9]+", "-", f"{project}-{stack}".lower()).strip("-")
    if not prefix[:1].isalpha() or len(prefix) > MAX_PREFIX_LENGTH:
        raise SettingsError(
            [
                f"stack {stack!r}: resource names start with {prefix!r}, which must begin with a "
                f"letter and be at most {MAX_PREFIX_LENGTH} characters; choose a shorter stack name"
            ]
        )
    return prefix
