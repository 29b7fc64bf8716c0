"""Errors that the CLI prints as one line: what went wrong, on which object, and the fix."""

from __future__ import annotations

import errno
import logging
import traceback

log = logging.getLogger("pixmill.errors")


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


REASON_LIMIT = 2000  # characters of a failure reason kept in failed.jsonl


def failure_reason(exc: BaseException) -> str:
    """The reason recorded for a row that failed with ``exc`` (every operator and executor uses it).

    A :class:`RowError` or :class:`PixmillError` is already written for people (the row, the file,
    the fix): its message is the reason. Any other exception is unexpected, so the reason names its
    type with the first line of its message (``ValueError: cannot decode image``), and the
    traceback goes to the debug log. At most :data:`REASON_LIMIT` characters.
    """
    if isinstance(exc, (RowError, PixmillError)):
        return str(exc)[:REASON_LIMIT]
    lines = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    log.debug("row failure traceback:\n%s", "".join(traceback.format_exception(exc)))
    return reason[:REASON_LIMIT]


# errno values that describe the machine, not the row: disk full or over quota, a read-only or
# unwritable folder, a file too large for the system's limits, out of file handles or memory.
_ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG", "EMFILE",
                                      "ENFILE", "ENOMEM", "EIO") if hasattr(errno, name))


class EnvironmentFault(PixmillError):
    """The machine failed the step (disk full, permissions, out of memory), not a row's data.

    Never recorded as a row failure: the step stops at the first one, what was committed stays,
    and a rerun once the cause is fixed redoes only the rows that were lost.
    """


def is_environment_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's fault (see :class:`EnvironmentFault`)."""
    if isinstance(exc, (EnvironmentFault, MemoryError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS


def environment_fault(exc: BaseException, where: str) -> EnvironmentFault:
    """The one-line :class:`EnvironmentFault` for ``exc`` raised while ``where`` ran."""
    if isinstance(exc, EnvironmentFault):
        return exc
    if isinstance(exc, MemoryError):
        what, fix = "the machine ran out of memory", "free memory or lower --batch-size"
    else:
        detail = exc.strerror or type(exc).__name__
        path = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        what = f"{detail}{path}"
        fix = {errno.ENOSPC: "free disk space", errno.EROFS: "use a writable --out folder",
               errno.EFBIG: "raise the file size limit (ulimit -f)"}.get(exc.errno, "fix the cause")
    return EnvironmentFault(f"{where} stopped: {what}; nothing was marked failed",
                            f"{fix}, then rerun the same command: committed rows are kept, the rest are redone")
