"""The SQL timestamp predicate agrees with parse_instant on every value; prefix ranges.

``sql.before_sql`` filters rows with an index range, ``julianday()`` and, near the
cutoff, the Python function ``bs_ts_lt``.  Whatever a DB holds, the rows it selects
must be exactly those for which ``parse_instant(value) < cutoff`` in Python.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_timeutil import SQLITE_WS, rendered_timestamps

from beautyspot import sql
from beautyspot import timeutil as tu

UTC = dt.timezone.utc
# BEAUTYSPOT_SQL_EXAMPLES=20000 runs the agreement properties harder (e.g. after
# touching the predicates in sql.py).
PROPERTY = settings(
    max_examples=int(os.environ.get("BEAUTYSPOT_SQL_EXAMPLES", "250")), deadline=None
)

# Tables: `t` has no type affinity and an index on x (the SEARCH path); `u` has the
# TIMESTAMP (NUMERIC) affinity of the real columns and no index (the SCAN path).
TABLES = ("t", "u")


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory):
    path = Path(tmp_path_factory.mktemp("sqlts")) / "ts.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    sql.register_functions(connection)
    connection.execute("CREATE TABLE t(x)")
    connection.execute("CREATE INDEX idx_t_x ON t(x)")
    connection.execute("CREATE TABLE u(x TIMESTAMP)")
    yield connection
    connection.close()


def selected(conn: sqlite3.Connection, table: str, cutoff: int) -> set[int]:
    query = f"SELECT rowid FROM {table} WHERE {sql.before_sql('x', 'c')}"
    return {r[0] for r in conn.execute(query, sql.before_params("c", cutoff))}


def selected_as_value(conn: sqlite3.Connection, table: str, cutoff: int) -> set[int]:
    # The same predicate outside a WHERE (as RowFilter.live_at uses it): no jump code.
    query = f"SELECT rowid, coalesce({sql.before_sql('x', 'c')}, 0) FROM {table}"
    return {r for r, hit in conn.execute(query, sql.before_params("c", cutoff)) if hit}


def expected(conn: sqlite3.Connection, table: str, cutoff: int) -> set[int]:
    # The truth is computed on the value as stored (affinity may have converted it).
    out = set()
    for rowid, value in conn.execute(f"SELECT rowid, x FROM {table}"):
        parsed = tu.parse_instant(value)
        if parsed is not None and parsed < cutoff:
            out.add(rowid)
    return out


def store(conn: sqlite3.Connection, values: list[object]) -> None:
    conn.execute("BEGIN")
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")
        conn.executemany(f"INSERT INTO {table}(x) VALUES (?)", [(v,) for v in values])
    conn.execute("COMMIT")


def assert_agree(conn: sqlite3.Connection, values: list[object], cutoff: int) -> None:
    store(conn, values)
    for table in TABLES:
        want = expected(conn, table, cutoff)
        for got in (selected(conn, table, cutoff), selected_as_value(conn, table, cutoff)):
            if got != want:
                stored = dict(conn.execute(f"SELECT rowid, x FROM {table}").fetchall())
                diff = {stored[r]: ("sql" if r in got else "python") for r in got ^ want}
                pytest.fail(f"table {table}, cutoff {tu.from_instant(cutoff)!s}: {diff!r}")
    assert_valid_agrees(conn)


def assert_valid_agrees(conn: sqlite3.Connection) -> None:
    """valid_ts_sql is true, and order_key_sql is the instant's julianday, exactly for
    the values parse_instant accepts."""
    columns = f"x, coalesce({sql.valid_ts_sql('x')}, 0), {sql.order_key_sql('x')}"
    for table in TABLES:
        for value, valid, key in conn.execute(f"SELECT {columns} FROM {table}"):
            parsed = tu.parse_instant(value)
            assert bool(valid) == (parsed is not None), (table, value, valid)
            assert (key is None) == (parsed is None), (table, value, key)
            if parsed is not None:
                # SQLite rounds to milliseconds; a double holds a julianday to ~50 µs.
                assert abs(key - tu.julian_day(parsed)) * US_PER_DAY <= 600, (value, key)


# --------------------------------------------------------------------------- strategies

# Valid timestamps; the widest span the rendering supports (local dates stay in 1..9999).
wide_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30, 23, 59, 59, 999_999),
    timezones=st.just(UTC),
)
valid_texts = st.one_of(
    rendered_timestamps().map(lambda c: c[0]),
    rendered_timestamps(wide_datetimes).map(lambda c: c[0]),
)

JUNK_CHARS = "0123456789 -:.+TtZz\t\n\u00a0x/\u0665\uff11\x00"


@st.composite
def near_misses(draw) -> str:
    """A valid timestamp with one to three small mutations (many stay valid)."""
    text = draw(valid_texts)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(
            st.sampled_from(
                [
                    "digit",
                    "drop",
                    "space",
                    "separator",
                    "zulu",
                    "dup",
                    "insert",
                    "truncate",
                    "sign",
                    "colon",
                    "offset",
                    "frac",
                    "prefix",
                    "nul",
                    "longfrac",
                    "year0",
                ]
            )
        )
        pos = draw(st.integers(min_value=0, max_value=max(len(text) - 1, 0)))
        if kind == "nul":
            text = text[:pos] + "\x00" + text[pos:]
        elif kind == "longfrac":
            text = text[:19] + "." + "9" * draw(st.integers(min_value=40, max_value=420))
        elif kind == "year0":
            text = "0000" + text[4:]
        elif kind == "digit":
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            if digits:
                i = draw(st.sampled_from(digits))
                text = text[:i] + draw(st.sampled_from("0123456789")) + text[i + 1 :]
        elif kind == "drop":
            text = text[:pos] + text[pos + 1 :]
        elif kind == "space":
            ws = draw(st.sampled_from([*SQLITE_WS, "\u00a0", "  "]))
            where = draw(st.sampled_from([0, pos, len(text)]))
            text = text[:where] + ws + text[where:]
        elif kind == "separator":
            sep = draw(st.sampled_from([" ", "T", "t", "_", "  ", "T ", "", "/"]))
            if len(text) > 10:
                text = text[:10] + sep + text[11:]
        elif kind == "zulu":
            text += draw(st.sampled_from(["Z", "z", " Z", "Z ", "ZZ"]))
        elif kind == "dup":
            text = text[: pos + 1] + text[pos:]
        elif kind == "insert":
            text = text[:pos] + draw(st.sampled_from(JUNK_CHARS)) + text[pos:]
        elif kind == "truncate":
            text = text[:pos]
        elif kind == "sign":
            text = draw(st.sampled_from(["+", "-"])) + text
        elif kind == "colon":
            colons = [i for i, c in enumerate(text) if c == ":"]
            if colons:
                i = draw(st.sampled_from(colons))
                text = text[:i] + draw(st.sampled_from(["", ".", "-", "::"])) + text[i + 1 :]
        elif kind == "offset":
            text += draw(
                st.sampled_from(["+00:00", "+14:00", "-14:00", "+14:01", "+15:00", "+0900", "+9"])
            )
        elif kind == "frac":
            text += draw(
                st.sampled_from(
                    [".", ".0", ".5", ".123456789", ".1.2", "." + "7" * 40]
                    + ["." + "1" * 309, "." + "9" * 400, "\x00", "\x00junk"]
                )
            )
        elif kind == "prefix":
            text = draw(st.sampled_from(["0000", "00001", "1", "9"])) + text[4:]
    return text


stored_values = st.one_of(
    valid_texts,
    valid_texts,
    near_misses(),
    near_misses(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.binary(max_size=40),
    valid_texts.map(str.encode),
    st.none(),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
)

US_PER_DAY = 86_400_000_000
INSTANT_MIN = tu.to_instant(dt.datetime(1, 1, 1, tzinfo=UTC)) - 2 * US_PER_DAY
INSTANT_MAX = tu.to_instant(dt.datetime(9999, 12, 31, tzinfo=UTC)) + 2 * US_PER_DAY

# Offsets from a stored value's instant: within microseconds, within SQLite's
# millisecond rounding, at the 2 ms band edge, and within the 2-day index bound.
NEAR = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=-3_000, max_value=3_000),
    st.sampled_from([-2_001, -2_000, -1_999, -1_000, -500, 500, 999, 1_000, 1_999, 2_000, 2_001]),
    st.integers(min_value=-5, max_value=5).map(lambda n: n * 1_000),
    st.integers(min_value=-3 * US_PER_DAY, max_value=3 * US_PER_DAY),
)


@st.composite
def cases(draw) -> tuple[list[object], int]:
    values = draw(st.lists(stored_values, min_size=1, max_size=25))
    instants = [p for p in map(tu.parse_instant, values) if p is not None]
    if instants and draw(st.booleans()):
        cutoff = draw(st.sampled_from(instants)) + draw(NEAR)
    else:
        cutoff = draw(
            st.one_of(
                st.integers(min_value=INSTANT_MIN, max_value=INSTANT_MAX),
                st.integers(min_value=-(2**62), max_value=2**62),
                st.builds(tu.to_instant, st.datetimes(timezones=st.just(UTC))),
            )
        )
    return values, cutoff


# --------------------------------------------------------------------------- agreement


@PROPERTY
@given(cases())
def test_sql_predicate_agrees_with_parse_instant(conn, case):
    values, cutoff = case
    assert_agree(conn, values, cutoff)


@PROPERTY
@given(st.lists(rendered_timestamps(wide_datetimes), min_size=1, max_size=10), st.data())
def test_cutoff_within_microseconds_of_a_value(conn, rows, data):
    """Values in any offset and precision, the cutoff a few µs from one of them."""
    values = [text for text, _ in rows]
    _, moment = data.draw(st.sampled_from(rows))
    cutoff = tu.to_instant(moment) + data.draw(st.integers(min_value=-2, max_value=2))
    assert_agree(conn, values, cutoff)


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01 12:00:00",
        "2026-01-01 12:00:00+00:00",
        "2026-01-01 12:00:00.000001+00:00",
        "2026-01-01 12:00:00.999999+00:00",
        "2026-01-01 12:00:00.9999995Z",
        "2026-01-01 12:00:00.0004999",
        "2026-01-01 12:00:00.0005",
        "2026-01-01 12:00:00.0015",
        "2026-01-01T21:00:00+09:00",
        "2026-01-01T02:00:00.123456-09:59",
        "2026-01-01 12:00:00 Z ",
        "2026-01-01 12:00:00." + "9" * 40,
        "0001-01-01 00:00:00",
        "0001-01-01 14:00:00+14:00",  # the first instant, written east of UTC
        "0001-01-01 00:00:00-14:00",
        "0001-01-02 00:00:00+14:00",
        "9999-12-31 23:59:59.999",
        "9999-12-31 23:59:59.999499",
        "9999-12-31 23:59:59+14:00",
        # Days past the 28th: leap years (every 4th, not every 100th, every 400th).
        "2000-02-29 12:00:00",
        "2024-02-29T00:00:00Z",
        "0400-02-29 00:00:00",
        "2026-04-30 23:59:59",
        "2026-12-31T23:59:59.5-14:00",
        "2026-01-01T23:59:59",
    ],
)
@pytest.mark.parametrize("delta", [-2_001, -1_000, -1, 0, 1, 499, 500, 1_000, 2_001])
def test_boundary_examples(conn, value, delta):
    assert_agree(conn, [value], tu.parse_instant(value) + delta)


@pytest.mark.parametrize(
    "value",
    [
        "2026-02-30 12:00:00",
        "2026-01-01 24:00:00",
        "2026-01-01T24:00:00",
        "1900-02-29 12:00:00",
        "2100-02-29 12:00:00",
        "2023-02-29 12:00:00",
        "0000-02-29 12:00:00",
        # Before the first instant (0001-01-01 00:00 UTC): no datetime can show them,
        # so they are never taken for old or expired either.
        "0001-01-01 00:00:00+14:00",
        "0001-01-01 13:59:59.999+14:00",
        "0001-01-01T00:00:00.5+00:01",
        "2026-04-31 12:00:00",
        "2026-06-31T12:00:00",
        "2026-01-01\t12:00:00",
        "2026-01-01 \t12:00:00",
        "2026-01-01 T12:00:00",
        "2026-01-01 12:00:00\x00",
        "12:00:00.1234 +01:00",
        "          2461041.5",
        "now",
        "2026-01-01 12:00",
        "2026-01-01 12:00+00:00",
        "2026-01-01 12:00:00+15:00",
        "2026-01-01 12:00:00+0900",
        " 2026-01-01 12:00:00",
        "2026-01-01 12:00:00x",
        "2026-01-01  12:00:00",
        "2026-01-01TT12:00:00",
        "2026-01-01t12:00:00",
        "-2026-01-01 12:00:00",
        "2026-01-01 12:00:00.",
        "2026-01-01",
        "12:00:00",
        "2461041.5",
        2461041.5,
        1767225600,
        b"2026-01-01 12:00:00",
        None,
    ],
)
def test_unparsable_never_selected(conn, value):
    # Even a cutoff far in the future selects nothing unparsable.
    assert_agree(conn, [value], tu.to_instant(dt.datetime(9999, 1, 1, tzinfo=UTC)))
    assert selected(conn, "t", tu.to_instant(dt.datetime(9999, 1, 1, tzinfo=UTC))) == set()


# Inputs on which SQLite's own date parser and parse_instant used to disagree; the
# predicate now guards each (length, NUL, year range, affinity-free comparison).
EDGE_CASES = [
    pytest.param(
        "2020-01-01 00:00:00\x00junk",
        tu.to_instant(dt.datetime(2026, 1, 1, tzinfo=UTC)),
        id="embedded-NUL",
    ),
    pytest.param(
        "2030-01-01 00:00:00." + "1" * 309,
        tu.to_instant(dt.datetime(2030, 1, 1, 0, 0, 0, 50_000, tzinfo=UTC)),
        id="309-digit-fraction-read-as-0",
    ),
    pytest.param(
        "2030-01-01 00:00:00." + "9" * 400,
        tu.to_instant(dt.datetime(2031, 1, 1, tzinfo=UTC)),
        id="400-digit-fraction-is-NULL",
    ),
    pytest.param(
        "0000-01-01 00:00:00",
        tu.to_instant(dt.datetime(2026, 1, 1, tzinfo=UTC)),
        id="year-0000-on-TIMESTAMP-column",
    ),
    pytest.param(
        "9999-12-31 23:59:59.999999+00:00",
        tu.to_instant(dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) + 1,
        id="datetime-max-rounds-to-year-10000",
    ),
    pytest.param(
        "9999-12-31 23:59:59-00:01",
        tu.to_instant(dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        id="instant-in-year-10000",
    ),
]


@pytest.mark.parametrize(("value", "cutoff"), EDGE_CASES)
def test_edge_cases_agree(conn, value, cutoff):
    assert_agree(conn, [value], cutoff)


# --------------------------------------------------------------------------- query plan


def test_predicate_searches_the_index(conn):
    cutoff = tu.to_instant(dt.datetime(2026, 1, 1, tzinfo=UTC))
    plan = conn.execute(
        f"EXPLAIN QUERY PLAN SELECT rowid FROM t WHERE {sql.before_sql('x', 'c')}",
        sql.before_params("c", cutoff),
    ).fetchall()
    details = [row[-1] for row in plan]
    assert any(d.startswith("SEARCH") and "idx_t_x" in d for d in details), details
    assert not any(d.startswith("SCAN") for d in details), details


def test_predicate_searches_the_index_on_the_tasks_table(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "tasks.db")
    sql.register_functions(conn)
    conn.execute(sql.CREATE_TABLE)
    sql.ensure_indexes(conn, sql.read_schema(conn))
    cutoff = tu.to_instant(dt.datetime(2026, 1, 1, tzinfo=UTC))
    for col, index in (("updated_at", "idx_updated_at"), ("expires_at", "idx_expires_at")):
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN SELECT rowid FROM tasks WHERE {sql.before_sql(col, 'c')}",
            sql.before_params("c", cutoff),
        ).fetchall()
        details = [row[-1] for row in plan]
        assert any(d.startswith("SEARCH") and index in d for d in details), details
        assert not any(d.startswith("SCAN") for d in details), details
    conn.close()


def test_before_params_far_cutoffs_do_not_overflow():
    for cutoff in (-(2**62), 2**62, INSTANT_MIN, INSTANT_MAX):
        params = sql.before_params("c", cutoff)
        assert set(params) == {"c_hi", "c_band_lo", "c_band_hi", "c_us"}
        assert params["c_band_lo"] < params["c_band_hi"]


# --------------------------------------------------------------------------- next_prefix

BOUNDARY_CHARS = ["\x00", "\x7f", "\x80", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff"]
BOUNDARY_CHARS += ["\U00010000", "\U0010fffe", "\U0010ffff", "a", "b", "%", "_"]
# Real strings only: SQLite cannot store lone surrogates.
chars = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(BOUNDARY_CHARS),
)
texts = st.text(alphabet=chars, max_size=8)


@st.composite
def string_and_prefix(draw) -> tuple[str, str]:
    p = draw(texts)
    how = draw(st.sampled_from(["extends", "random", "near", "equal"]))
    if how == "extends":
        s = p + draw(texts)
    elif how == "equal":
        s = p
    elif how == "near" and p:
        # Same prefix minus the last char, then a neighbour of that char.
        last = ord(p[-1]) + draw(st.sampled_from([-1, 1, 2]))
        if 0 <= last <= 0x10FFFF and not 0xD800 <= last <= 0xDFFF:
            s = p[:-1] + chr(last) + draw(texts)
        else:
            s = p[:-1] + draw(texts)
    else:
        s = draw(texts)
    return s, p


def in_range(s: str, p: str) -> bool:
    end = sql.next_prefix(p)
    return p <= s and (end is None or s < end)


@settings(max_examples=300, deadline=None)
@given(string_and_prefix())
def test_next_prefix_bounds_exactly_the_strings_with_the_prefix(case):
    s, p = case
    assert s.startswith(p) == in_range(s, p)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_next_prefix_is_a_real_string_above_the_prefix(p):
    end = sql.next_prefix(p)
    if end is None:
        assert all(c == "\U0010ffff" for c in p)
        return
    assert end > p
    assert not end.startswith(p)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in end)
    end.encode("utf-8")  # storable


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("", None),
        ("a", "b"),
        ("ab", "ac"),
        ("a%", "a&"),
        ("\ud7ff", "\ue000"),
        ("x\ud7ff", "x\ue000"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff", None),
        ("\U0010ffff\U0010ffff", None),
        ("\uffff", "\U00010000"),
    ],
)
def test_next_prefix_examples(prefix, end):
    assert sql.next_prefix(prefix) == end


@PROPERTY
@given(st.lists(texts, max_size=30), texts, st.lists(texts, max_size=5))
def test_sqlite_prefix_range_agrees_with_startswith(conn, strings, prefix, extensions):
    rows = strings + [prefix + e for e in extensions]
    conn.execute("BEGIN")
    conn.execute("DROP TABLE IF EXISTS k")
    conn.execute("CREATE TABLE k(s TEXT)")
    conn.execute("CREATE INDEX idx_k_s ON k(s)")
    conn.executemany("INSERT INTO k(s) VALUES (?)", [(s,) for s in rows])
    got = conn.execute(
        f"SELECT rowid FROM k WHERE {sql.prefix_range_sql('s')}", sql.prefix_params(prefix)
    ).fetchall()
    conn.execute("COMMIT")
    assert sorted(rows[r - 1] for (r,) in got) == sorted(s for s in rows if s.startswith(prefix))
