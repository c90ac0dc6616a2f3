"""Query plans (``EXPLAIN QUERY PLAN``, not timings): on a DB with the library's indexes,
prune (``updated_before``), expiry (``expired_before``) and prefix lookups SEARCH an
index instead of scanning the table.

The SQL checked is the SQL the code really runs: statements are recorded, with their
parameters, by wrapping the connection a real ``TaskReader`` / maintenance run /
``SQLiteTaskDB`` uses, then explained on the same connection (so the Python SQL
functions are registered and bound parameters are planned exactly as at run time).

No ``ANALYZE`` is run: real DBs have no ``sqlite_stat1``, so the plans here are the
plans a million-row DB gets.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from pathlib import Path

import pytest

from beautyspot import maintenance as mt
from beautyspot import reader as bdb
from beautyspot import sql as q
from beautyspot.db import SQLiteTaskDB, TaskReader
from beautyspot.timeutil import format_ts, to_instant
from beautyspot.workspace import discover

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 10, tzinfo=UTC)
CUTOFF = NOW - dt.timedelta(days=30)
PK_INDEX = "sqlite_autoindex_tasks_1"  # upstream's `cache_key TEXT PRIMARY KEY`


class Recorder:
    """A connection stand-in that records (sql, params) and forwards everything."""

    def __init__(self, conn: sqlite3.Connection, log: list[tuple[str, object]]):
        self._conn = conn
        self._log = log

    def execute(self, sql, params=()):
        self._log.append((sql, params))
        return self._conn.execute(sql, params)

    def executemany(self, sql, seq):
        seq = list(seq)
        self._log.append((sql, seq[0] if seq else ()))
        return self._conn.executemany(sql, seq)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def explain(conn, sql: str, params=()) -> list[str]:
    real = conn._conn if isinstance(conn, Recorder) else conn
    return [str(r[3]) for r in real.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()]


def table_scans(details: list[str]) -> list[str]:
    """Plan lines that read all of `tasks` (its table or a whole index of it)."""
    return [d for d in details if re.match(r"SCAN tasks\b", d)]


def assert_search(conn, sql: str, params, index: str) -> None:
    details = explain(conn, sql, params)
    assert any(
        d.startswith("SEARCH tasks USING") and re.search(rf"\b{index}\b", d) for d in details
    ), f"expected SEARCH via {index}\n  sql: {sql}\n  plan: {details}"
    assert not table_scans(details), f"table scan\n  sql: {sql}\n  plan: {details}"


def _rows(n: int = 60) -> list[tuple]:
    out = []
    for i in range(n):
        updated = NOW - dt.timedelta(days=i)
        expires = None if i % 5 == 0 else NOW + dt.timedelta(days=10 - i)
        file_row = i % 10 == 0
        key = f"{i:02x}" + "ab" * 31
        out.append(
            (
                key,
                f"fn{i % 4}",
                f"app.mod.fn{i % 4}",
                f"in{i}",
                "FILE" if file_row else "DIRECT_BLOB",
                f"{key}.bin" if file_row else None,
                None if file_row else b"\x90",
                None,
                "v1",
                None if expires is None else format_ts(expires),
                # a few rows in the other stored forms (T separator, offset, naive)
                format_ts(updated).replace(" ", "T") if i % 7 == 3 else format_ts(updated),
            )
        )
    return out


def make_db(path: Path, *, indexes: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(q.CREATE_TABLE)
    conn.executemany(
        "INSERT INTO tasks (cache_key, func_name, func_identifier, input_id, result_type,"
        " result_value, result_data, content_type, version, expires_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _rows(),
    )
    if indexes:
        q.ensure_indexes(conn, q.read_schema(conn))
    conn.close()
    return path


@pytest.fixture
def ws_root(tmp_path: Path) -> Path:
    root = tmp_path / ".beautyspot"
    make_db(root / "cache.db")
    blobs = root / "blobs" / "cache"
    blobs.mkdir(parents=True)
    for row in _rows():
        if row[5]:
            (blobs / row[5]).write_bytes(b"\x90")
    return root


@pytest.fixture
def recorded(monkeypatch) -> list[tuple[str, object]]:
    """Every statement run on a read-only connection or a maintenance write connection."""
    log: list[tuple[str, object]] = []
    real_ro = bdb.connect_readonly

    def connect_ro(*args, **kwargs):
        return Recorder(real_ro(*args, **kwargs), log)

    monkeypatch.setattr(bdb, "connect_readonly", connect_ro)
    if hasattr(mt, "_open_writer"):
        real_rw = mt._open_writer
        monkeypatch.setattr(mt, "_open_writer", lambda *a, **k: Recorder(real_rw(*a, **k), log))
    return log


PRUNE = q.RowFilter(updated_before=to_instant(CUTOFF))
EXPIRY = q.RowFilter(expired_before=to_instant(NOW))
FILTERS = [
    pytest.param(PRUNE, "idx_updated_at", id="prune"),
    pytest.param(EXPIRY, "idx_expires_at", id="expiry"),
    pytest.param(
        q.RowFilter(updated_before=to_instant(CUTOFF), func="fn1"),
        # Not a MULTI-INDEX OR over the function indexes: a keyset walk would then
        # re-read and sort all of the function's rows for every batch.
        "idx_updated_at",
        id="prune-func",
    ),
]


def test_fixture_db_has_the_library_indexes(ws_root: Path) -> None:
    conn = sqlite3.connect(ws_root / "cache.db")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert {name for name, _col, _body in q.INDEXES} <= names


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(("rfilter", "index"), FILTERS)
def test_row_filter_where_searches_its_index(ws_root: Path, rfilter, index) -> None:
    with TaskReader(ws_root / "cache.db") as reader:
        cond, params = rfilter.where(reader.schema)
        assert_search(reader.conn, f"SELECT rowid FROM tasks WHERE {cond}", params, index)


@pytest.mark.parametrize(("rfilter", "index"), FILTERS)
def test_select_batch_searches_its_index_on_every_batch(ws_root: Path, rfilter, index) -> None:
    with TaskReader(ws_root / "cache.db") as reader:
        log: list = []
        rec = Recorder(reader.conn, log)
        after = None
        for _ in range(3):  # first batch, then keyset continuations
            _rows_, after = q.select_batch(rec, reader.schema, rfilter, after, 2)
        assert len(log) == 3
        for sql, params in log:
            assert_search(reader.conn, sql, params, index)


@pytest.mark.parametrize(("rfilter", "index"), FILTERS)
@pytest.mark.parametrize("method", ["iter_matching", "iter_rows"])
def test_reader_queries_search_their_index(
    ws_root: Path, recorded: list, rfilter, index, method: str
) -> None:
    with TaskReader(ws_root / "cache.db") as reader:
        del recorded[:]
        list(getattr(reader, method)(rfilter))
    queries = [(s, p) for s, p in recorded if "FROM tasks" in s]
    assert queries, f"{method} ran no query"
    with TaskReader(ws_root / "cache.db") as reader:
        for sql, params in queries:
            assert_search(reader.conn, sql, params, index)


def test_limited_listing_searches_the_updated_at_index(ws_root: Path, recorded: list) -> None:
    """ls DB --limit ranks only the rows past the newest rows' bound: an index range."""
    with TaskReader(ws_root / "cache.db") as reader:
        del recorded[:]
        assert len(reader.list_tasks(q.RowFilter(), 5)) == 5
    windows = [(s, p) for s, p in recorded if ":newest_date" in s]
    assert len(windows) == 1, recorded  # the window answered: no full ranking after it
    with TaskReader(ws_root / "cache.db") as reader:
        assert_search(reader.conn, *windows[0], "idx_updated_at")


# --------------------------------------------------------------------------- prefixes


def assert_bounded_range(conn, sql: str, params, col: str) -> None:
    """A prefix lookup must bound its index range on both sides: with only the lower
    bound SQLite walks the index from the prefix to its end whenever fewer keys than
    the LIMIT match (a unique prefix of a random key: half the index on average)."""
    details = explain(conn, sql, params)
    assert any(f"{col}>? AND {col}<?" in d for d in details), (
        f"prefix range on {col} not bounded above (walks to the end of the index)\n"
        f"  sql: {sql}\n  plan: {details}"
    )


def test_key_prefix_lookup_searches_the_primary_key(ws_root: Path, recorded: list) -> None:
    with TaskReader(ws_root / "cache.db") as reader:
        del recorded[:]
        assert reader.keys_with_prefix("0a") == ["0a" + "ab" * 31]
        sql, params = next((s, p) for s, p in recorded if "cache_key" in s)
        assert_search(reader.conn, sql, params, PK_INDEX)


@pytest.mark.parametrize("prefix", ["0a", "0", "ff", "ab" * 32])
def test_key_prefix_range_is_bounded_on_both_sides(ws_root: Path, recorded: list, prefix) -> None:
    with TaskReader(ws_root / "cache.db") as reader:
        del recorded[:]
        reader.keys_with_prefix(prefix)
        sql, params = next((s, p) for s, p in recorded if "cache_key" in s)
        assert_bounded_range(reader.conn, sql, params, "cache_key")


def test_exact_key_lookup_searches_the_primary_key(ws_root: Path, recorded: list) -> None:
    with TaskReader(ws_root / "cache.db") as reader:
        del recorded[:]
        assert reader.get_row("0a" + "ab" * 31) is not None
        for sql, params in [(s, p) for s, p in recorded if "FROM tasks" in s]:
            assert_search(reader.conn, sql, params, PK_INDEX)


def test_show_prefix_resolution_searches_the_primary_key(ws_root: Path, recorded: list) -> None:
    ws = discover(ws_root)
    matches, failures = mt.find_tasks(ws, "0a")
    assert not failures and [k for _e, k in matches] == ["0a" + "ab" * 31]
    queries = [(s, p) for s, p in recorded if "FROM tasks" in s]
    assert queries
    with TaskReader(ws_root / "cache.db") as reader:
        for sql, params in queries:
            assert_search(reader.conn, sql, params, PK_INDEX)


def test_library_get_keys_start_with_searches_the_primary_key(tmp_path: Path, monkeypatch):
    path = make_db(tmp_path / "ws" / "lib.db")
    log: list = []
    real_with_reader = SQLiteTaskDB._with_reader

    def with_reader(self, query):
        return real_with_reader(self, lambda conn: query(Recorder(conn, log)))

    monkeypatch.setattr(SQLiteTaskDB, "_with_reader", with_reader)
    db = SQLiteTaskDB(path)
    try:
        assert db.get_keys_start_with("0a") == ["0a" + "ab" * 31]
    finally:
        db.shutdown()
    ((sql, params),) = [(s, p) for s, p in log if "cache_key" in s]
    with TaskReader(path) as reader:
        assert_search(reader.conn, sql, params, PK_INDEX)


def _function_lookups(recorded: list, col: str) -> list[tuple[str, object]]:
    return [(s, p) for s, p in recorded if f"{col} >" in s and "FROM tasks" in s]


def test_qualified_function_prefix_searches_its_index(ws_root: Path, recorded: list) -> None:
    with TaskReader(ws_root / "cache.db") as reader:
        del recorded[:]
        assert "app.mod.fn1" in reader.functions_with_prefix("app.mod.f")
        queries = _function_lookups(recorded, "func_identifier")
        assert queries
        for sql, params in queries:
            assert_search(reader.conn, sql, params, "idx_func_identifier")
            assert_bounded_range(reader.conn, sql, params, "func_identifier")


@pytest.mark.skipif(
    "func_name" not in {col for _n, col, _b in q.INDEXES},
    reason="the library defines no index on func_name",
)
def test_short_function_prefix_searches_its_index(ws_root: Path, recorded: list) -> None:
    with TaskReader(ws_root / "cache.db") as reader:
        del recorded[:]
        assert "fn1" in reader.functions_with_prefix("fn")
        queries = _function_lookups(recorded, "func_name")
        assert queries
        for sql, params in queries:
            assert_search(reader.conn, sql, params, "idx_func_name")
            assert_bounded_range(reader.conn, sql, params, "func_name")


def _filtered(recorded: list, marker: str) -> list[tuple[str, object]]:
    return [
        (s, p) for s, p in recorded if isinstance(p, dict) and marker in p and "FROM tasks" in s
    ]


def test_plan_prune_filters_only_by_index(ws_root: Path, recorded: list) -> None:
    ws = discover(ws_root)
    plan = mt.plan_prune(ws, NOW, CUTOFF)
    assert plan.rows > 0 and not plan.failures
    queries = _filtered(recorded, "upd_hi")
    assert queries, "no prune-filtered query recorded"
    with TaskReader(ws_root / "cache.db") as reader:
        for sql, params in queries:
            assert_search(reader.conn, sql, params, "idx_updated_at")


def test_plan_gc_filters_only_by_index(ws_root: Path, recorded: list) -> None:
    ws = discover(ws_root)
    plan = mt.plan_gc(ws, NOW)
    assert plan.rows > 0 and not plan.failures
    queries = _filtered(recorded, "exp_hi")
    assert queries, "no expiry-filtered query recorded"
    with TaskReader(ws_root / "cache.db") as reader:
        for sql, params in queries:
            assert_search(reader.conn, sql, params, "idx_expires_at")


def test_prune_execution_deletes_by_index(ws_root: Path, recorded: list) -> None:
    """The real run: keyset batches by idx_updated_at, deletes by rowid, blob checks by index."""
    ws = discover(ws_root)
    plan = mt.plan_prune(ws, NOW, CUTOFF)
    del recorded[:]
    result = mt.execute(plan, ws)
    assert result.rows == plan.rows > 0 and not result.failures
    with TaskReader(ws_root / "cache.db") as reader:
        batches = _filtered(recorded, "upd_hi")
        assert batches
        for sql, params in batches:
            assert_search(reader.conn, sql, params, "idx_updated_at")
        deletes = [(s, p) for s, p in recorded if s.lstrip().upper().startswith("DELETE")]
        assert deletes
        for sql, params in deletes:
            details = explain(reader.conn, sql, params)
            assert not table_scans(details), f"{sql}\n{details}"


@pytest.mark.parametrize("rfilter", [PRUNE, EXPIRY, q.RowFilter(func="fn1")], ids=str)
def test_batches_without_indexes_walk_rowids_and_never_sort(tmp_path: Path, rfilter) -> None:
    """An upstream DB has no index on the filter column: each batch must resume by rowid.

    A plan with ``USE TEMP B-TREE FOR ORDER BY`` would sort every candidate row again
    for each 2,000-row batch (quadratic at a million rows).
    """
    path = make_db(tmp_path / "up.db", indexes=False)
    with TaskReader(path) as reader:
        log: list = []
        rec = Recorder(reader.conn, log)
        after = None
        for _ in range(3):
            _rows_, after = q.select_batch(rec, reader.schema, rfilter, after, 2)
        for sql, params in log:
            details = explain(reader.conn, sql, params)
            assert not any("TEMP B-TREE" in d for d in details), f"{sql}\n{details}"
