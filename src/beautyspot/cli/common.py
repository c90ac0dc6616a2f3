"""What every command path shares and that must not pull in Typer: exit codes, the
clock, timestamp display, and the mapping of an exception to one line + exit code.

The Typer app (:mod:`.app`) and the direct ``show`` path (:mod:`.show`) both use it,
so both report errors and times identically.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

from ..errors import BeautySpotError, UsageError
from ..timeutil import now_utc, parse_datetime, utc_text
from .render import Output, safe_text

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


def now_from_env() -> dt.datetime:
    """The clock, or ``BEAUTYSPOT_NOW`` (an ISO date-time) for tests and reproducible runs."""
    fixed = os.environ.get("BEAUTYSPOT_NOW")
    if fixed:
        moment = parse_datetime(fixed.replace("T", " ").replace("Z", "+00:00"))
        if moment is None:
            raise UsageError(f"BEAUTYSPOT_NOW={fixed!r} is not a timestamp")
        return moment
    return now_utc()


def resolve_db(db: str | None, blobs: str | None) -> tuple[str | None, str | None]:
    """``--db`` (else ``$BEAUTYSPOT_DB``) and ``--blobs`` (else ``$BEAUTYSPOT_BLOBS``).

    A password in a ``postgresql://`` URL moves to ``PGPASSWORD`` (libpq reads it from
    there) so that the URL, which tables, errors and JSON print, never holds it.
    """
    db = db or os.environ.get("BEAUTYSPOT_DB") or None
    blobs = blobs or os.environ.get("BEAUTYSPOT_BLOBS") or None
    from ..workspace import is_server_url

    if is_server_url(db):
        from urllib.parse import unquote, urlsplit, urlunsplit

        parts = urlsplit(db.strip())
        if parts.password is not None:
            os.environ["PGPASSWORD"] = unquote(parts.password)
            user = parts.username or ""
            host = parts.netloc.rsplit("@", 1)[1]
            db = urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))
    return db, blobs


def display_ts(value: object) -> str:
    """A stored timestamp for display: UTC if parsable, else shown literally."""
    moment = parse_datetime(value)
    if moment is None:
        return "" if value is None else f"{safe_text(value)} (unparsable)"
    return utc_text(moment)


def exit_code_for(exc: BaseException, err: Output) -> int:
    """Report *exc* as one line on stderr and return the exit code; re-raise what is
    not an error (SystemExit, GeneratorExit)."""
    if isinstance(exc, BeautySpotError):
        err.error(str(exc))
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        err.error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        # `beautyspot ls -q | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not complain, and end quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    if isinstance(exc, OSError):
        err.error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        return EXIT_FAILURE
    if isinstance(exc, Exception):  # a bug: still one line for cron, never a traceback
        err.error(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    raise exc
