"""dropstack's policy pack: `pulumi preview --policy-pack infra/policy` (see docs/infra.md)."""

import io
import sys

from policies import PACK_NAME, POLICIES
from pulumi_policy import PolicyPack

# The analyzer announces its port by writing one line to sys.stdout.buffer and never flushes it.
# On a pipe that line sits in the buffer unless PYTHONUNBUFFERED is set, which the Pulumi CLI
# does but `sudo`, CI and the tests' own subprocess need not; the reader then waits forever.
# An unbuffered stdout makes the announcement independent of the environment.
sys.stdout = io.TextIOWrapper(
    io.FileIO(sys.stdout.fileno(), "w", closefd=False), write_through=True, line_buffering=True
)

# Starts the analyzer server the Pulumi CLI talks to; it serves until the CLI is done.
PolicyPack(name=PACK_NAME, policies=POLICIES)
