"""A PostgreSQL SCRAM-SHA-256 password verifier, computed here (RFC 5802 and RFC 7677).

``ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'`` stores a verifier as it is: the server never
sees the password itself, so it cannot reach its logs (``log_statement``, an error's
statement text) or ``pg_stat_activity``. psycopg offers no helper for it (libpq's
``PQencryptPasswordConn`` is not exposed), hence this: PBKDF2-HMAC-SHA-256, then the client
and server keys, in PostgreSQL's ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

# PostgreSQL's default (scram_iterations, 15 and 16); a verifier carries its own count.
ITERATIONS = 4096
SALT_BYTES = 16  # what PostgreSQL uses


class PasswordError(ValueError):
    """A password this module refuses; one line, never the password."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The verifier PostgreSQL stores for ``password`` (a random salt unless given).

    Only printable ASCII is accepted: PostgreSQL SASLprep-normalises a password before
    hashing, which is the identity on printable ASCII, so no normaliser is needed here and a
    password outside it is refused rather than hashed differently from the server."""
    if not password or not all(" " <= ch <= "~" for ch in password):
        raise PasswordError("password: must be non-empty printable ASCII (the rotation makes one)")
    if iterations < 1:
        raise PasswordError(f"iterations: {iterations} is not allowed; at least 1")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"
