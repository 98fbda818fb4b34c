"""Fabric entry point: `fab --list` from the repository root. The tasks live in deploy/."""

from deploy.tasks import namespace as ns  # noqa: F401  (fab looks for `ns`)
