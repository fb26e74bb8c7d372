"""User-facing errors: the CLI prints their message on one line and exits 2, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class CorruptArtifact(UserError):
    """A cached file whose content no longer matches the hash recorded when it was written."""


def one_line(err: Exception | str, limit: int = 200) -> str:
    """An error message's first sentence on one line, at most ``limit`` characters (for a UserError that
    quotes a library's multi-line or paragraph-long message)."""
    text = " ".join(str(err).split()).split(". ")[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
