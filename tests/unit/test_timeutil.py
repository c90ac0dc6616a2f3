"""timeutil: every stored timestamp form parses to the right instant; durations and cutoffs.

The strategies defined here (``rendered_timestamps`` and friends) are also used by
``test_sql_timestamps.py``, which checks that the SQL predicate agrees with
:func:`beautyspot.timeutil.parse_instant`.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beautyspot import timeutil as tu
from beautyspot.errors import UsageError

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

PROPERTY = settings(max_examples=250, deadline=None)

# --------------------------------------------------------------------------- strategies

# SQLite's isspace() set: the only whitespace allowed before/after the offset.
SQLITE_WS = " \t\n\x0b\x0c\r"

aware_datetimes = st.datetimes(
    min_value=dt.datetime(1900, 1, 1),
    max_value=dt.datetime(2200, 12, 31, 23, 59, 59, 999_999),
    timezones=st.just(UTC),
)

# -14:00..+14:00, any minute (odd ones included).
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)

FORMATS = ("upstream", "T", "Z", "z", "offset", "naive", "naive_T", "offset_ws")


def _offset_text(tz: dt.tzinfo, moment: dt.datetime) -> str:
    total = int(tz.utcoffset(moment).total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


@st.composite
def rendered_timestamps(draw, datetimes=aware_datetimes) -> tuple[str, dt.datetime]:
    """A stored timestamp in any accepted form, and the (aware) datetime it denotes.

    The fraction is rendered with 0-6 digits (the datetime is truncated to match) or
    with more than 6 (the extra digits are dropped by the parser, so the datetime is
    the untruncated one).
    """
    moment = draw(datetimes)
    fmt = draw(st.sampled_from(FORMATS))
    digits = draw(st.integers(min_value=0, max_value=9))
    if fmt in ("upstream",):
        # Upstream writes exactly 6 digits, or none when microseconds are 0.
        digits = 6 if moment.microsecond else 0
    if digits < 6:
        scale = 10 ** (6 - digits)
        moment = moment.replace(microsecond=moment.microsecond // scale * scale)
    if fmt in ("offset", "offset_ws"):
        tz = draw(offsets)
    else:
        tz = UTC
    local = moment.astimezone(tz)
    text = local.strftime("%Y-%m-%d") + ("T" if fmt in ("T", "Z", "z", "naive_T") else " ")
    text += local.strftime("%H:%M:%S")
    if digits:
        frac = f"{local.microsecond:06d}"
        if digits > 6:
            frac += "".join(
                draw(st.lists(st.sampled_from("0123456789"), min_size=1, max_size=digits - 6))
            )
        else:
            frac = frac[:digits]
        text += "." + frac
    if fmt == "upstream":
        text += "+00:00"
    elif fmt == "T":
        text += draw(st.sampled_from(["+00:00", "-00:00"]))
    elif fmt in ("Z", "z"):
        text += fmt
    elif fmt == "offset":
        text += _offset_text(tz, local)
    elif fmt == "offset_ws":
        pad = st.text(alphabet=SQLITE_WS, max_size=2)
        text += draw(pad) + _offset_text(tz, local) + draw(pad)
    return text, moment


# --------------------------------------------------------------------------- parse_instant


@PROPERTY
@given(rendered_timestamps())
def test_every_format_parses_to_its_instant(case):
    text, moment = case
    assert tu.parse_instant(text) == tu.to_instant(moment)


@PROPERTY
@given(aware_datetimes, offsets)
def test_same_instant_in_every_format(moment, tz):
    local = moment.astimezone(tz)
    off = _offset_text(tz, local)
    utc_plain = moment.strftime("%Y-%m-%d %H:%M:%S")
    frac = f".{moment.microsecond:06d}" if moment.microsecond else ""
    forms = {
        "upstream": tu.format_ts(moment),
        "T": utc_plain.replace(" ", "T") + frac + "+00:00",
        "Z": utc_plain.replace(" ", "T") + frac + "Z",
        "naive": utc_plain + frac,
        "offset": local.strftime("%Y-%m-%d %H:%M:%S") + f".{local.microsecond:06d}" + off,
        "nanos": utc_plain + f".{moment.microsecond:06d}789Z",
    }
    expected = tu.to_instant(moment)
    assert {name: tu.parse_instant(v) for name, v in forms.items()} == dict.fromkeys(
        forms, expected
    )


@PROPERTY
@given(rendered_timestamps(), rendered_timestamps())
def test_ordering_of_instants_is_ordering_of_datetimes(a, b):
    (ta, ma), (tb, mb) = a, b
    pa, pb = tu.parse_instant(ta), tu.parse_instant(tb)
    assert (pa < pb) == (ma < mb)
    assert (pa == pb) == (ma == mb)


@PROPERTY
@given(st.lists(rendered_timestamps(), min_size=2, max_size=20))
def test_sorting_by_instant_sorts_chronologically(cases):
    by_instant = sorted(cases, key=lambda c: tu.parse_instant(c[0]))
    moments = [m for _, m in by_instant]
    assert moments == sorted(moments)


@PROPERTY
@given(st.text())
def test_parse_instant_never_raises(text):
    result = tu.parse_instant(text)
    assert result is None or type(result) is int


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        1767225600,
        1767225600.5,
        True,
        b"2026-01-01 12:00:00",
        bytearray(b"2026-01-01 12:00:00"),
        "",
        " ",
        "now",
        "CURRENT_TIMESTAMP",
        "2026-01-01",  # a date alone is not a stored timestamp
        "2026-02-30 12:00:00",
        "2026-02-29 12:00:00",  # not a leap year
        "2026-13-01 12:00:00",
        "2026-00-10 12:00:00",
        "2026-01-00 12:00:00",
        "2026-04-31 12:00:00",
        "2026-01-01 24:00:00",
        "2026-01-01 12:60:00",
        "2026-01-01 12:00:60",
        "2026-01-01 12:00",  # no seconds (SQLite accepts it; we do not)
        "2026-01-01 12:00+00:00",
        "2026-01-01 12:00:00+15:00",
        "2026-01-01 12:00:00-15:00",
        "2026-01-01 12:00:00+14:60",
        "2026-01-01 12:00:00+0900",
        "2026-01-01 12:00:00+09",
        "2026-01-01 12:00:00+9:00",
        " 2026-01-01 12:00:00",
        "\t2026-01-01 12:00:00",
        "2026-01-01 12:00:00x",
        "2026-01-01 12:00:00+00:00x",
        "2026-01-01 12:00:00Zjunk",
        "2026-01-01 12:00:00ZZ",
        "2026-01-01 12:00:00Z+00:00",
        "2026-01-01 12:00:00.",
        "2026-01-01 12:00:00.+00:00",
        "2026-01-01 12:00:00,5",
        "2026-01-01 12:00:00\u00a0",  # NBSP is not SQLite whitespace
        "2026-01-01t12:00:00",
        "2026-01-01_12:00:00",
        "2026-01-01  12:00:00",
        "2026-01-01T 12:00:00",
        "2026-1-01 12:00:00",
        "26-01-01 12:00:00",
        "+2026-01-01 12:00:00",
        "-2026-01-01 12:00:00",
        "12026-01-01 12:00:00",
        "0000-01-01 00:00:00",
        "0000-12-31 23:00:00-14:00",
        "\uff12\uff10\uff12\uff16-01-01 12:00:00",  # fullwidth digits
        "\u0662\u0660\u0662\u0666-01-01 12:00:00",  # Arabic-Indic digits
        "2026-01-01 1\u0662:00:00",
        "2026-01-01 12:00:00.\u0665",
        "2026-01-01 12:00:00+\u0660\u0669:00",
    ],
)
def test_garbage_is_unparsable(value):
    assert tu.parse_instant(value) is None
    assert tu.parse_datetime(value) is None


def test_str_subclass_is_not_a_timestamp():
    class Tagged(str):
        pass

    assert tu.parse_instant(Tagged("2026-01-01 12:00:00")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01 12:00:00", dt.datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2026-01-01 12:00:00+00:00", dt.datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2026-01-01 12:00:00.5+00:00", dt.datetime(2026, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-01-01T12:00:00+09:00", dt.datetime(2026, 1, 1, 3, tzinfo=UTC)),
        ("2026-01-01T12:00:00-09:30", dt.datetime(2026, 1, 1, 21, 30, tzinfo=UTC)),
        ("2026-01-01 00:30:00+01:00", dt.datetime(2025, 12, 31, 23, 30, tzinfo=UTC)),
        ("2026-01-01 12:00:00z", dt.datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2026-01-01 12:00:00 Z ", dt.datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2026-01-01 12:00:00\t+01:00\n", dt.datetime(2026, 1, 1, 11, tzinfo=UTC)),
        ("2026-01-01 12:00:00.9999999Z", dt.datetime(2026, 1, 1, 12, 0, 0, 999_999, tzinfo=UTC)),
        ("2024-02-29 23:59:59.000001", dt.datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC)),
        ("1970-01-01 00:00:00", dt.datetime(1970, 1, 1, tzinfo=UTC)),
        ("1969-12-31 23:59:59.999999", dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        ("0001-01-01 00:00:00", dt.datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31 23:59:59.999", dt.datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
        ("9999-12-31 23:59:59.999999", None),  # SQLite rounds it into year 10000
        ("2026-01-01 12:00:00+14:00", dt.datetime(2025, 12, 31, 22, tzinfo=UTC)),
        ("2026-01-01 12:00:00-14:00", dt.datetime(2026, 1, 2, 2, tzinfo=UTC)),
    ],
)
def test_known_values(value, expected):
    assert tu.parse_instant(value) == (None if expected is None else tu.to_instant(expected))
    assert tu.parse_datetime(value) == expected


def test_instants_beyond_datetime_range_are_unparsable():
    # Well-formed strings whose instant lies outside datetime's range (year 0 / year
    # 10000): unparsable on both sides, so what cannot be shown is never deleted as old.
    for value in ("0001-01-01 00:00:00+00:01", "9999-12-31 23:59:59-00:01"):
        assert tu.parse_instant(value) is None
        assert tu.parse_datetime(value) is None
    first = tu.to_instant(dt.datetime(1, 1, 1, tzinfo=UTC))
    assert tu.parse_instant("0001-01-01 00:01:00+00:01") == first


def test_naive_means_utc():
    assert tu.to_instant(dt.datetime(2026, 1, 1)) == tu.to_instant(
        dt.datetime(2026, 1, 1, tzinfo=UTC)
    )


@PROPERTY
@given(st.integers(min_value=-(10**17), max_value=10**17))
def test_from_instant_inverts_to_instant(instant):
    try:
        moment = tu.from_instant(instant)
    except OverflowError:
        return
    assert tu.to_instant(moment) == instant
    assert tu.julian_day(instant) == pytest.approx(
        2440587.5 + instant / 86_400_000_000, rel=0, abs=1e-9
    )


# --------------------------------------------------------------------------- format_ts

UPSTREAM_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?\+00:00\Z")


@PROPERTY
@given(aware_datetimes, offsets)
def test_format_ts_round_trips(moment, tz):
    local = moment.astimezone(tz)
    text = tu.format_ts(local)
    assert UPSTREAM_SHAPE.match(text), text
    assert ("." in text) == (moment.microsecond != 0)
    assert tu.parse_instant(text) == tu.to_instant(moment)
    assert tu.parse_datetime(text) == moment


@PROPERTY
@given(aware_datetimes)
def test_format_ts_of_naive_is_utc(moment):
    naive = moment.replace(tzinfo=None)
    assert tu.format_ts(naive) == tu.format_ts(moment)
    assert tu.parse_instant(tu.format_ts(naive)) == tu.to_instant(moment)


def test_format_ts_examples():
    assert tu.format_ts(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02 03:04:05+00:00"
    assert tu.format_ts(dt.datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC)) == (
        "2026-01-02 03:04:05.000060+00:00"
    )
    jst = dt.timezone(dt.timedelta(hours=9))
    assert tu.format_ts(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=jst)) == (
        "2026-01-01 18:04:05+00:00"
    )


# --------------------------------------------------------------------------- parse_duration

UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 15 * 60),
        ("12h", 12 * 3600),
        ("30d", 30 * 86400),
        ("2w", 14 * 86400),
        ("1.5h", 5400),
        ("0.5d", 43200),
        ("2.25m", 135),
        (" 30d ", 30 * 86400),
        ("90sec", 90),
        ("10min", 600),
    ],
)
def test_parse_duration_valid(text, seconds):
    assert tu.parse_duration(text) == dt.timedelta(seconds=seconds)


@PROPERTY
@given(st.integers(min_value=1, max_value=100_000), st.sampled_from(sorted(UNITS)))
def test_parse_duration_integers(n, unit):
    assert tu.parse_duration(f"{n}{unit}") == dt.timedelta(seconds=n * UNITS[unit])


@pytest.mark.parametrize(
    "text",
    [
        "30x",
        "",
        "   ",
        "-5d",
        "+5d",
        "0d",
        "0s",
        "0.0h",
        "d",
        "5",
        "5.",
        ".5d",
        "5..5d",
        "1e3s",
        "inf d",
        "nan",
        "5d3h",
        "5 d 3h",
        "\u0663d",  # Arabic-Indic three
        "\uff13d",  # fullwidth three
        "99999999999w",
        "100000000000d",
        "9" * 400 + "d",
        "10001y",
        "30 days ago",
    ],
)
def test_parse_duration_invalid(text):
    with pytest.raises(UsageError):
        tu.parse_duration(text)


def test_parse_duration_none_is_usage_error():
    with pytest.raises(UsageError):
        tu.parse_duration(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["0d", "0s", "0.0h", "0w"])
def test_parse_duration_zero_allowed(text):
    assert tu.parse_duration(text, allow_zero=True) == dt.timedelta(0)


def test_parse_duration_negative_refused_even_with_allow_zero():
    with pytest.raises(UsageError):
        tu.parse_duration("-1s", allow_zero=True)


def test_parse_duration_sub_microsecond_is_not_zero():
    try:
        result = tu.parse_duration("0.0000001s")
    except UsageError:
        return
    assert result > dt.timedelta(0)


# --------------------------------------------------------------------------- parse_cutoff


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW - dt.timedelta(days=30)),
        ("2w", NOW - dt.timedelta(weeks=2)),
        ("12h", NOW - dt.timedelta(hours=12)),
        ("90s", NOW - dt.timedelta(seconds=90)),
        ("1.5h", NOW - dt.timedelta(minutes=90)),
        ("2026-01-01", dt.datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T12:30:00", dt.datetime(2026, 1, 1, 12, 30, tzinfo=UTC)),
        ("2026-01-01 12:30:00", dt.datetime(2026, 1, 1, 12, 30, tzinfo=UTC)),
        ("2026-01-01T12:30:00Z", dt.datetime(2026, 1, 1, 12, 30, tzinfo=UTC)),
        ("2026-01-01T12:30:00+09:00", dt.datetime(2026, 1, 1, 3, 30, tzinfo=UTC)),
        ("2026-01-01T12:30:00-05:30", dt.datetime(2026, 1, 1, 18, 0, tzinfo=UTC)),
        ("2026-06-01T12:00:00", NOW),  # exactly now is not the future
        ("2026-06-01T21:00:00+09:00", NOW),
        ("1970-01-01", dt.datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_cutoff(text, expected):
    result = tu.parse_cutoff(text, now=NOW)
    assert result == expected
    assert result.utcoffset() == dt.timedelta(0)


@PROPERTY
@given(st.integers(min_value=1, max_value=5000), st.sampled_from(sorted(UNITS)))
def test_parse_cutoff_duration_is_now_minus_duration(n, unit):
    assert tu.parse_cutoff(f"{n}{unit}", now=NOW) == NOW - dt.timedelta(seconds=n * UNITS[unit])


@PROPERTY
@given(
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2026, 5, 30)),
    offsets,
)
def test_parse_cutoff_iso_dates(moment, tz):
    aware = moment.replace(tzinfo=UTC).astimezone(tz)
    assert tu.parse_cutoff(aware.isoformat(), now=NOW) == moment.replace(tzinfo=UTC)
    assert tu.parse_cutoff(moment.isoformat(), now=NOW) == moment.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-06-02",  # tomorrow
        "2026-06-01T12:00:01",
        "2026-06-01T12:00:00.000001Z",
        "2026-06-01T13:00:00+00:59",  # 12:01 UTC
        "2027-01-01",
        "9999-12-31",
    ],
)
def test_parse_cutoff_refuses_the_future(text):
    with pytest.raises(UsageError, match="future"):
        tu.parse_cutoff(text, now=NOW)


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30",
        "2026-13-01",
        "2026-01-01T25:00:00",
        "2026-01-01T12:00:00+25:00",
        "2026-1-1x",
        "2026-",
        "30x",
        "",
        "0d",
        "-5d",
        "yesterday",
        "99999999999w",
    ],
)
def test_parse_cutoff_refuses_garbage(text):
    with pytest.raises(UsageError):
        tu.parse_cutoff(text, now=NOW)


def test_parse_cutoff_duration_before_year_one_is_usage_error():
    with pytest.raises(UsageError):
        tu.parse_cutoff("500000w", now=NOW)  # ~9,589 years ago


def test_parse_cutoff_date_at_year_one_with_offset():
    try:
        tu.parse_cutoff("0001-01-01T00:00:00+01:00", now=NOW)
    except UsageError:
        pass
