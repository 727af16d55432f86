"""One error hierarchy; the CLI maps each class to its exit code and prints the message."""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path


class RcahookError(Exception):
    """Base class: the message names what was given, what was expected and what to do."""

    exit_code = 1


class NotARepositoryError(RcahookError):
    exit_code = 10


class EmptyRepositoryError(RcahookError):
    exit_code = 11


class UnknownRevisionError(RcahookError):
    exit_code = 12


class IndexMissingError(RcahookError):
    exit_code = 13


class IndexLockedError(RcahookError):
    exit_code = 14


class BadInputError(RcahookError):
    """Malformed user input: an incident file, a stack trace, a flag value."""

    exit_code = 15


class EmptySearchSpaceError(RcahookError):
    exit_code = 16


class ModelUnavailableError(RcahookError):
    """The model package, directory or server cannot be used."""

    exit_code = 17


class ModelServerError(ModelUnavailableError):
    exit_code = 18


class ModelAnswerError(ModelServerError):
    """The model answered, but nothing a ranking can use (null text, NaN logprobs, no valid label)."""


class ConfigError(RcahookError):
    exit_code = 19


class NotFoundError(RcahookError):
    """A commit, investigation id or symbol the user named is not in the index."""

    exit_code = 20


class PermissionDeniedError(RcahookError):
    """rcahook cannot read or write where its data lives (a read-only repository, a file
    without permission). Never reported as corruption, never a reason to delete anything."""

    exit_code = 21


class RepositoryReadError(RcahookError):
    """An object the repository should have could not be read (corrupt or lost); also what a
    worker process sends back instead of a library exception that cannot cross processes."""

    exit_code = 22


class GitFailedError(RcahookError):
    """A git command rcahook runs itself (a scratch worktree, a revert) failed; the message quotes git."""

    exit_code = 23


class BisectError(RcahookError):
    """A bisection that cannot name a culprit: the good revision fails, the bad one passes,
    the command cannot be run; the message says which and what to do."""

    exit_code = 24


def log_crash() -> str:
    """Append the current exception's traceback to the user's crash log; its path (for the one line
    an internal error prints), or why there is none."""
    from rcahook import __version__

    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "rcahook"
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / "crash.log"
        with open(path, "a") as f:
            f.write(f"--- rcahook {__version__} {' '.join(sys.argv)}\n{traceback.format_exc()}\n")
        return str(path)
    except OSError:
        return "(could not write a log)"
