"""Secret rotation: the app's SECRET_KEY and the database password (``fab secrets.rotate``).

``scram`` computes a SCRAM-SHA-256 verifier locally, so a new password never reaches the
server as plaintext; ``plan`` is the pure part (the stages, the env file's new values);
``rotate`` runs them over the release tasks' hosts and blue/green switch; ``tasks`` is the
thin ``fab`` task.
"""
