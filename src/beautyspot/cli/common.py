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


def resolve_db(
    db: str | None, blobs: str | None, *, workspace_given: bool
) -> tuple[str | None, str | None]:
    """The DB and blob store a command acts on.

    ``$BEAUTYSPOT_DB`` stands in for ``--db`` only when neither ``--db`` nor a workspace
    (``-w``, ``$BEAUTYSPOT_WORKSPACE``) was given: workers export it for the library, and
    an explicit workspace must still mean that workspace.  ``$BEAUTYSPOT_BLOBS`` stands
    in for ``--blobs`` only for a ``postgresql://`` DB.  A password in such a URL (as
    ``user:pw@`` or ``?password=``) moves to ``PGPASSWORD``, which libpq reads, so the
    URL that tables, errors and JSON print never holds it.
    """
    if db is None and not workspace_given:
        db = os.environ.get("BEAUTYSPOT_DB") or None
    from ..workspace import is_server_url

    if not is_server_url(db):
        return db, blobs
    if blobs is None:
        blobs = os.environ.get("BEAUTYSPOT_BLOBS") or None
    url, password = split_password(db.strip())
    if password is not None:
        os.environ["PGPASSWORD"] = password
    return url, blobs


def split_password(url: str) -> tuple[str, str | None]:
    """(*url* without its password, the password or None)."""
    from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError as exc:
        raise UsageError(f"invalid PostgreSQL URL: {exc}") from None
    if password is not None:
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{user}@{host}" if user else host)
        password = unquote(password)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "password" for k, _v in query):
        password = next(v for k, v in query if k == "password")
        parts = parts._replace(query=urlencode([(k, v) for k, v in query if k != "password"]))
    return urlunsplit(parts), password


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
