"""The one exception type that means "the user gave us something we cannot use"."""

from __future__ import annotations


class UserInputError(Exception):
    """Bad input from the user: the message names the culprit and what is allowed.

    The CLI prints it on one line and exits with status 2, having written nothing.
    """


class OutputError(UserInputError):
    """A write that the file system refused (full, over quota, read-only, failing): the
    message names the path and the cause. Nothing half-written is left where a later command
    would read it; the CLI prints it on one line and exits with status 2."""
