"""The job's errors: each one line, printed as ``error: ...`` and the exit status 1."""

from __future__ import annotations


class JobError(Exception):
    """A step failed; ``str()`` is one line naming the step and the reason."""


class NotCreated(JobError):
    """The target database could not be created (it exists): nothing of ours to clean up."""


# job.py restore's exit status for NotCreated: the operator's side then drops nothing.
NOT_CREATED_EXIT = 3
