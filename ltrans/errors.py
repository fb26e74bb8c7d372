"""User-facing errors: the CLI prints their message on one line and exits 2, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class CorruptArtifact(UserError):
    """A cached file whose content no longer matches the hash recorded when it was written."""
