"""Errors that the CLI prints as one line: what went wrong, on which object, and the fix."""

from __future__ import annotations


class PixmillError(Exception):
    """A user-facing error. ``str(err)`` is one line naming the object and, where known, the fix."""

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(f"{message} (fix: {fix})" if fix else message)


class PluginError(PixmillError):
    """A plugin failed to load or registered something invalid."""


class ConfigError(PixmillError):
    """A pipeline, operator or serving was configured wrongly (unknown name, bad option...)."""


class InputError(PixmillError):
    """The input data is malformed (bad JSONL line, missing file...)."""


class RowError(Exception):
    """Raised by an operator or serving for one row: the row is recorded as failed with this reason.

    Unlike other exceptions it never triggers the runner's "retry rows one by one" isolation,
    because the operator already knows which row is at fault.
    """
