"""TaskReader's ls queries answer exactly what a plain full sort or scan answers.

``list_tasks`` with a limit ranks a window found from the rows inserted last, and
``summary`` computes each row's key once in a subquery; both must give what the
straightforward queries give, whatever the timestamps and the insertion order.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_sql_timestamps import PROPERTY, stored_values, valid_texts

from beautyspot import reader as bsreader
from beautyspot import sql
from beautyspot import timeutil as tu
from beautyspot.db import TaskReader

UTC = dt.timezone.utc
NOW = tu.to_instant(dt.datetime(2026, 12, 10, tzinfo=UTC))

# Mostly parsable values (in every form and offset), some garbage.
updated_values = st.one_of(valid_texts, valid_texts, valid_texts, stored_values)
rows_strategy = st.lists(
    st.tuples(updated_values, st.one_of(st.none(), valid_texts), st.sampled_from("fgh")),
    max_size=40,
)


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(tmp_path_factory.mktemp("reader")) / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(sql.CREATE_TABLE)
    conn.commit()
    conn.close()
    return path


def store(path: Path, rows: list[tuple[object, object, str]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        conn.execute("DELETE FROM tasks")
        conn.executemany(
            "INSERT INTO tasks(cache_key, func_name, updated_at, expires_at) VALUES (?, ?, ?, ?)",
            [(f"k{i}", func, upd, exp) for i, (upd, exp, func) in enumerate(rows)],
        )
    conn.close()


def full_order(reader: TaskReader, rfilter: sql.RowFilter) -> list[int]:
    return [r.rowid for r in reader.list_tasks(rfilter, None)]


FILTERS = [
    sql.RowFilter(),
    sql.RowFilter(func="g"),
    sql.RowFilter(expired_before=NOW),
    sql.RowFilter(updated_before=NOW),
]


@PROPERTY
@given(rows_strategy, st.integers(min_value=1, max_value=45), st.integers(0, 5), st.data())
def test_limited_listing_is_the_head_of_the_full_order(db_path, rows, limit, sample, data):
    store(db_path, rows)
    rfilter = data.draw(st.sampled_from(FILTERS))
    saved = bsreader._SAMPLE_ROWS
    bsreader._SAMPLE_ROWS = sample  # a small sample: the window logic, not the table, decides
    try:
        with TaskReader(db_path) as reader:
            got = [r.rowid for r in reader.list_tasks(rfilter, limit)]
            assert got == full_order(reader, rfilter)[:limit]
    finally:
        bsreader._SAMPLE_ROWS = saved


@pytest.mark.parametrize("sample", [0, 2, 1_000])
def test_limited_listing_when_the_last_inserted_rows_are_old(db_path, sample, monkeypatch):
    # Newest rows first in rowid order, ties within a millisecond, offsets that move a
    # value across midnight, and garbage with a large raw text.
    values = [
        "2026-12-09 23:59:59.999+00:00",
        "2026-12-10T08:00:00.9996+09:00",
        "2026-12-09 23:59:59.9991",
        "9999-99-99 garbage",
        "2026-12-10 13:00:00+14:00",
        "2026-12-09 10:00:00-14:00",
        "2026-02-30 12:00:00",
        None,
        "2026-12-08 12:00:00",
        "2026-12-08 12:00:00",
    ]
    store(db_path, [(v, None, "f") for v in values] + [("2020-01-01 00:00:00", None, "f")] * 5)
    monkeypatch.setattr(bsreader, "_SAMPLE_ROWS", sample)
    with TaskReader(db_path) as reader:
        everything = full_order(reader, sql.RowFilter())
        for limit in range(1, len(everything) + 2):
            got = [r.rowid for r in reader.list_tasks(sql.RowFilter(), limit)]
            assert got == everything[:limit], limit


@pytest.mark.parametrize(
    "y_z",
    [
        # Y's local date is the day before the bound's UTC date (the 9th, 05:00).
        ("2026-12-08 23:00:00-14:00", "2026-12-09 06:00:00"),
        # Y's local date is the bound's; Z's, a later date, is an earlier instant.
        ("2026-12-09 23:00:00-14:00", "2026-12-10 00:00:00+14:00"),
    ],
)
def test_limited_listing_keeps_a_newest_row_whose_local_date_is_earlier(db_path, monkeypatch, y_z):
    # The bound comes from the last three rowids (W, B, A): A, 2026-12-09 05:00 UTC.
    # Y is the newest instant (UTC 13:00 on the 9th or the 10th) but has the earliest
    # local date of the rows at or past the bound: the date pre-filter must keep it.
    y, z = y_z
    w = "2026-12-09 07:00:00" if y.startswith("2026-12-08") else "2026-12-10 01:00:00+14:00"
    rows = [y, z, w, "2026-12-09 00:00:00", "2026-12-09 05:00:00"]
    store(db_path, [(v, None, "f") for v in rows])
    monkeypatch.setattr(bsreader, "_SAMPLE_ROWS", 0)
    with TaskReader(db_path) as reader:
        assert full_order(reader, sql.RowFilter())[:2] == [1, 3]
        assert [r.rowid for r in reader.list_tasks(sql.RowFilter(), 2)] == [1, 3]


def plain_summary(reader: TaskReader, now: int) -> tuple[int, str | None, str | None]:
    cond, params = sql.RowFilter(expired_before=now).where(reader.schema)
    key = sql.order_key_sql("updated_at")
    expired, lo, hi = reader.conn.execute(
        f"SELECT total(CASE WHEN {cond} THEN 1 END), strftime('%Y-%m-%d %H:%M:%S', min({key})),"
        f" strftime('%Y-%m-%d %H:%M:%S', max({key})) FROM tasks",
        params,
    ).fetchone()
    return int(expired), lo, hi


@PROPERTY
@given(rows_strategy, st.integers(0, 5))
def test_summary_matches_the_plain_scan(db_path, rows, sample):
    store(db_path, rows)
    saved = bsreader._SAMPLE_ROWS
    bsreader._SAMPLE_ROWS = sample
    try:
        with TaskReader(db_path) as reader:
            summary = reader.summary(NOW)
            assert summary == plain_summary(reader, NOW)
    finally:
        bsreader._SAMPLE_ROWS = saved
    expired = sum(1 for _, exp, _ in rows if (p := tu.parse_instant(exp)) is not None and p < NOW)
    assert summary[0] == expired


@pytest.mark.parametrize("sample", [0, 1, 1_000])
def test_summary_edges_away_from_the_first_and_last_rowids(db_path, monkeypatch, sample):
    # With sample=1 the bounds come from rows 2 and 6; the oldest and newest instants
    # are rows 3 and 5, whose local dates lie a day after and before their UTC ones.
    # Garbage with extreme raw text at both ends.
    rows = [
        "0000-01-01 00:00:00",
        "2026-01-01 23:00:00",
        "2026-01-02 12:00:00+14:00",  # 2026-01-01 22:00 UTC: the oldest
        "2026-06-01 12:00:00",
        "2026-12-09 23:00:00-14:00",  # 2026-12-10 13:00 UTC: the newest
        "2026-12-10 00:30:00",
        "9999-99-99 99:99:99",
    ]
    store(db_path, [(v, None, "f") for v in rows])
    monkeypatch.setattr(bsreader, "_SAMPLE_ROWS", sample)
    with TaskReader(db_path) as reader:
        assert reader.summary(NOW) == (0, "2026-01-01 22:00:00", "2026-12-10 13:00:00")
