"""Timestamps and durations.

Task DBs hold timestamps in several text forms (SPEC §3): upstream's
``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``, ``T``-separated values, other UTC offsets,
``Z`` and naive values (SQLite's ``CURRENT_TIMESTAMP``, taken as UTC).  Comparing
them as strings is wrong, so every comparison goes through an *instant*: integer
microseconds since the Unix epoch, UTC.

The grammar accepted here is deliberately the one SQLite's own date functions
accept for a full date-time (``julianday()``), restricted to what is a real
calendar instant: a valid date (no 30 February), hours 00-23, offsets up to
±14:00.  ``beautyspot.db`` filters rows in SQL with ``julianday()`` plus the same
restrictions, and falls back to :func:`parse_instant` only for the few rows that
lie within milliseconds of a cutoff, so SQL and Python agree on every value
(a Hypothesis test checks this).  Anything else is *unparsable*: never expired,
never old, reported instead of deleted.
"""

from __future__ import annotations

import datetime as dt
import re

from .errors import UsageError

UTC = dt.timezone.utc
_US_PER_SECOND = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_SECOND
# Days from 0001-01-01 (ordinal 1) to 1970-01-01.
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()

# SQLite's isspace(): space, \t, \n, \v, \f, \r.
_WS = "[ \t\n\x0b\x0c\r]*"
_TS_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?" + _WS + r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?" + _WS + r"\Z"
)


# Longer values are unparsable: no real timestamp is, and SQLite misreads fractions
# of hundreds of digits.
MAX_TS_LENGTH = 64
# SQLite's last valid instant: 9999-12-31 23:59:59.999 UTC, fractions rounded to ms.
_MAX_INSTANT = (dt.date(9999, 12, 31).toordinal() - dt.date(1970, 1, 1).toordinal() + 1) * (
    86_400 * 1_000_000
) - 500
# The first instant, 0001-01-01 00:00 UTC: earlier ones ('0001-01-01 00:00+14:00') are
# unparsable too; Python's datetime cannot hold them, so they could not be shown.
_MIN_INSTANT = (dt.date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400 * 1_000_000
MIN_JULIAN_DAY = 1721425.5  # julianday('0001-01-01 00:00:00')


def parse_instant(value: object) -> int | None:
    """Return *value* as microseconds since the epoch (UTC), or None if unparsable.

    Only ``str`` values are timestamps; numbers, bytes and NULL are unparsable, and
    so is an instant past the end of year 9999 in UTC.  Fractions beyond
    microseconds are truncated.
    """
    if type(value) is not str or len(value) > MAX_TS_LENGTH:
        return None
    m = _TS_RE.match(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        ordinal = dt.date(year, month, day).toordinal()
    except ValueError:
        return None
    offset_s = 0
    if m.group(9):
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 14 or off_m > 59:
            return None
        offset_s = (off_h * 3600 + off_m * 60) * (1 if m.group(9) == "+" else -1)
    frac = m.group(7)
    micros = int(frac[:6].ljust(6, "0")) if frac else 0
    seconds = hour * 3600 + minute * 60 + second - offset_s
    instant = (ordinal - _EPOCH_ORDINAL) * _US_PER_DAY + seconds * _US_PER_SECOND + micros
    return instant if _MIN_INSTANT <= instant < _MAX_INSTANT else None


def to_instant(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=UTC)
    return delta // dt.timedelta(microseconds=1)


def from_instant(instant: int) -> dt.datetime:
    """The aware UTC datetime of an instant (inverse of :func:`to_instant`)."""
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=instant)


def parse_datetime(value: object) -> dt.datetime | None:
    """Like :func:`parse_instant`, as an aware UTC datetime (None when out of range)."""
    instant = parse_instant(value)
    if instant is None:
        return None
    try:
        return from_instant(instant)
    except OverflowError:
        return None


def utc_text(moment: dt.datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, the year always four digits (strftime's ``%Y``
    prints year 1 as ``1`` on Linux)."""
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment:%m-%d %H:%M:%S}"


def format_ts(moment: dt.datetime) -> str:
    """Upstream's storage form: ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00`` in UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(sep=" ")


def julian_day(instant: int) -> float:
    """The SQLite ``julianday()`` value of an instant (2440587.5 is the Unix epoch)."""
    return 2440587.5 + instant / _US_PER_DAY


def now_utc() -> dt.datetime:
    """The current time. Only the CLI and library defaults call this; plans take ``now``."""
    return dt.datetime.now(UTC)


_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*\Z")
_UNITS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}
# Ten thousand years: past that a duration is a typo, and datetime arithmetic overflows.
_MAX_SECONDS = 10_000 * 365 * 86400


def parse_duration(text: str, *, allow_zero: bool = False) -> dt.timedelta:
    """Parse ``30s``, ``15m``, ``12h``, ``30d``, ``2w`` (a bare number is refused).

    Raises :class:`UsageError` for anything else, for negative values, and for
    zero unless *allow_zero* (a zero grace period is legitimate; a zero age is not).
    """
    m = _DURATION_RE.match(text or "")
    if m is None or m.group(2).lower() not in _UNITS:
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 30s, 15m, 12h, 30d, 2w"
        )
    seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if seconds > _MAX_SECONDS:
        raise UsageError(f"duration {text!r} is too large")
    delta = dt.timedelta(seconds=seconds)
    if not delta and not allow_zero:
        raise UsageError(f"duration {text!r} must be greater than zero")
    return delta


def parse_cutoff(text: str, now: dt.datetime) -> dt.datetime:
    """A prune cutoff: ``now - DURATION``, or an ISO date/date-time (naive = UTC).

    A cutoff in the future is refused: it would select every row, which is what
    ``clear`` is for.
    """
    try:
        return _parse_cutoff(text, now)
    except OverflowError:
        raise UsageError(f"cutoff {text!r} is out of range") from None


def _parse_cutoff(text: str, now: dt.datetime) -> dt.datetime:
    value = (text or "").strip()
    if value[:1].isdigit() and ("-" in value):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"invalid date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[+HH:MM]"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if moment > now:
            raise UsageError(f"date {text!r} is in the future")
        return moment.astimezone(UTC)
    return now - parse_duration(value)


def humanize_age(seconds: float) -> str:
    """``3d 4h``-style age for tables."""
    seconds = int(max(seconds, 0))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*\Z")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
}


def parse_size(text: str) -> int:
    """Bytes from ``500MB``, ``2GiB``, ``1.5GB``, ``4096`` (decimal and binary units)."""
    m = _SIZE_RE.match(text or "")
    if m is None or m.group(2).lower() not in _SIZE_UNITS:
        raise UsageError(f"invalid size {text!r}: use e.g. 500MB, 2GiB, 1.5GB or a byte count")
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if value > 2**62:
        raise UsageError(f"size {text!r} is too large")
    return int(value)
