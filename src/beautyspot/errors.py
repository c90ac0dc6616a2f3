"""Exception hierarchy of beautyspot.

Every error the library raises on purpose derives from :class:`BeautySpotError`.
The command-line tool turns each into a one-line message and the exit code named
by ``exit_code`` (1 = failure, 2 = usage error); see ``beautyspot.cli``.
"""

from __future__ import annotations


class BeautySpotError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(BeautySpotError):
    """A bad argument: wrong duration, missing path, ambiguous key..."""

    exit_code = 2


class DBError(BeautySpotError):
    """A task DB cannot be opened or read (corrupt, not SQLite, no ``tasks`` table, locked)."""


class DBNotFoundError(DBError):
    """A DB path that does not exist (never silently created)."""


class DBBusyError(DBError):
    """The DB stayed locked by another connection past the timeout."""


class StorageError(BeautySpotError):
    """A blob file could not be read, written or deleted."""


class UnsafePathError(StorageError):
    """A blob location that would resolve outside its blob directory."""


class DecodeError(BeautySpotError):
    """A payload that is not valid MessagePack."""


class LockHeldError(BeautySpotError):
    """Another maintenance run holds the workspace lock."""
