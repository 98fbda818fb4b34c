"""dropstack's policy pack: `pulumi preview --policy-pack infra/policy` (see docs/infra.md)."""

from policies import PACK_NAME, POLICIES
from pulumi_policy import PolicyPack

# Starts the analyzer server the Pulumi CLI talks to; it serves until the CLI is done.
PolicyPack(name=PACK_NAME, policies=POLICIES)
