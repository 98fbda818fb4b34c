"""Valid sample values for the stack configuration: SSH keys and admin networks."""

from __future__ import annotations

import base64


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def ed25519_public_key(seed: int, comment: str) -> str:
    """A well-formed OpenSSH ed25519 public key line (its 32 key bytes are made up)."""
    blob = _ssh_string(b"ssh-ed25519") + _ssh_string(bytes([seed]) * 32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


ADMIN_KEY = ed25519_public_key(1, "admin@laptop")
SECOND_KEY = ed25519_public_key(2, "ci@runner")
# 198.18.0.0/15 and 2001:2::/48 are reserved for benchmarking (RFC 2544, RFC 5180), so they are
# neither real networks nor the documentation ranges the settings refuse.
ADMIN_CIDRS = ["198.18.0.7/32", "2001:2::/48"]
# Alerts are on by default and need a recipient; .test is reserved (RFC 2606) but not refused.
ALERT_EMAIL = "ops@dropstack.test"


def valid_config(**overrides: object) -> dict[str, object]:
    """The two required keys and an alert recipient with valid values, plus ``overrides``."""
    return {
        "sshPublicKeys": [ADMIN_KEY, SECOND_KEY],
        "adminCidrs": list(ADMIN_CIDRS),
        "alertEmails": [ALERT_EMAIL],
        **overrides,
    }
