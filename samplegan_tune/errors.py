"""The one exception type that means "the user gave us something we cannot use"."""

from __future__ import annotations


class UserInputError(Exception):
    """Bad input from the user: the message names the culprit and what is allowed.

    The CLI prints it on one line and exits with status 2, having written nothing.
    """
