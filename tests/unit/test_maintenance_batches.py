"""Deletion batches and plan storage of the maintenance core, on real SQLite files.

* write transactions are sized by time but always bounded (rows per batch);
* a plan covers the rows that existed when it was made: rows saved afterwards (new
  keys, or re-saves of planned keys) survive ``clear``;
* a plan's files are stored column by column: a few hundred bytes per planned file.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import tracemalloc
from pathlib import Path

import pytest

from beautyspot import maintenance as mt
from beautyspot import sql as q
from beautyspot.timeutil import format_ts
from beautyspot.workspace import discover

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 10, tzinfo=UTC)
INSERT = (
    "INSERT OR REPLACE INTO tasks (cache_key, func_name, func_identifier, input_id,"
    " result_type, result_value, result_data, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def make_ws(tmp_path: Path, n: int, *, file_every: int = 4) -> Path:
    """A workspace with one upstream-format DB (no indexes) of *n* rows, every
    *file_every*-th a FILE row with its blob; rows i < n/2 are 60 days old."""
    root = tmp_path / ".beautyspot"
    blobs = root / "blobs" / "cache"
    blobs.mkdir(parents=True)
    conn = sqlite3.connect(root / "cache.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(q.CREATE_TABLE)
    rows = []
    for i in range(n):
        key = f"{i:08x}" + "ab" * 28
        old = i < n // 2
        updated = format_ts(NOW - dt.timedelta(days=60 if old else 1, seconds=i))
        if i % file_every == 0:
            (blobs / f"{key}.bin").write_bytes(b"\x90" * (i % 50 + 1))
            rows.append(
                (key, f"f{i % 3}", f"app.f{i % 3}", "in", "FILE", f"{key}.bin", None, updated)
            )
        else:
            rows.append(
                (key, f"f{i % 3}", f"app.f{i % 3}", "in", "DIRECT_BLOB", None, b"x" * 9, updated)
            )
    conn.executemany(INSERT, rows)
    conn.close()
    return root


def count_rows(root: Path) -> int:
    conn = sqlite3.connect(root / "cache.db")
    try:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        conn.close()


def test_batch_sizer_stays_bounded_and_moves_by_at_most_two() -> None:
    sizer = mt._BatchSizer(2000, 0.25)
    for _ in range(100):  # instant batches: grows, but never past MAX_ROWS
        before = sizer.rows
        sizer.update(0.0)
        assert before <= sizer.rows <= min(2 * before, mt._BatchSizer.MAX_ROWS)
    assert sizer.rows == mt._BatchSizer.MAX_ROWS
    for _ in range(100):  # very slow batches: shrinks by half a step, down to MIN_ROWS
        before = sizer.rows
        sizer.update(100.0)
        assert sizer.rows >= max(before // 2, mt._BatchSizer.MIN_ROWS)
    assert sizer.rows == mt._BatchSizer.MIN_ROWS
    sizer.update(0.25)  # on target: unchanged
    assert sizer.rows == mt._BatchSizer.MIN_ROWS


def test_a_shorter_target_shrinks_the_batch_at_once() -> None:
    sizer = mt._BatchSizer(40_000, 1.0)
    sizer.retarget(0.25)  # a writer showed up: a quarter of the batch, now
    assert (sizer.rows, sizer.span) == (10_000, 80_000)
    sizer.retarget(1.0)  # alone again: it grows back only through update(), by <= 2x
    assert sizer.rows == 10_000
    sizer.update(0.25)
    assert sizer.rows == 20_000


def test_batches_are_short_only_while_another_connection_writes(tmp_path: Path) -> None:
    """The target is batch_seconds for WRITER_BATCHES batches after someone else's
    commit, alone_batch_seconds otherwise; our own commits do not count."""
    db = tmp_path / "t.db"
    ours = sqlite3.connect(db, isolation_level=None)
    ours.execute("PRAGMA journal_mode=WAL")
    ours.execute("CREATE TABLE t (x)")
    other = sqlite3.connect(db, isolation_level=None)
    ctx = mt._RunContext({}, [], None, None, 100, 0.25, alone_batch_seconds=1.0)
    ctx.start_db(ours)
    targets = []
    for step in range(3 + mt.WRITER_BATCHES):
        ours.execute("INSERT INTO t VALUES (1)")  # our batch
        if step == 2:
            other.execute("INSERT INTO t VALUES (2)")  # a writer's save meanwhile
        ctx.between_batches(ours, 1)
        targets.append(ctx.batch_target())
    other.close()
    ours.close()
    assert targets == [1.0, 1.0] + [0.25] * mt.WRITER_BATCHES + [1.0]


@pytest.mark.parametrize("command", ["prune", "clear"])
def test_time_sized_batches_are_bounded_and_match_the_plan(
    tmp_path: Path, monkeypatch, command: str
) -> None:
    root = make_ws(tmp_path, 600)
    ws = discover(root)
    if command == "prune":
        plan = mt.plan_prune(ws, NOW, NOW - dt.timedelta(days=30))
    else:
        plan = mt.plan_clear(ws, NOW)
    seen: list[tuple[int, int]] = []
    real = q.delete_rowid_range

    def recording(conn, schema, rfilter, lo, hi, limit):
        rows, done = real(conn, schema, rfilter, lo, hi, limit)
        seen.append((len(rows), limit))
        return rows, done

    monkeypatch.setattr(q, "delete_rowid_range", recording)
    # Targets of 0 s: every batch is "too slow", so batches shrink to the minimum.
    # truncate_bytes=0: a clear goes in batches too (else it is one statement).
    result = mt.execute(
        plan, ws, batch=50, batch_seconds=0.0, alone_batch_seconds=0.0, truncate_bytes=0
    )
    assert result.truncated == ()
    assert len(seen) > 3
    assert all(n <= limit <= 50 for n, limit in seen)
    assert seen[-1][1] == mt._BatchSizer.MIN_ROWS
    assert (result.rows, result.files, result.bytes) == (plan.rows, plan.files, plan.bytes)
    assert sum(n for n, _ in seen) == plan.rows
    assert count_rows(root) == 600 - plan.rows
    log = [json.loads(x) for x in (root / "maintenance.log.jsonl").read_text().splitlines()]
    assert sum(1 for e in log if "path" not in e) == plan.rows
    assert sum(1 for e in log if "path" in e) == plan.files


def test_clear_leaves_rows_saved_after_the_plan(tmp_path: Path) -> None:
    root = make_ws(tmp_path, 40)
    ws = discover(root)
    plan = mt.plan_clear(ws, NOW)
    assert plan.rows == 40
    conn = sqlite3.connect(root / "cache.db", isolation_level=None)
    resaved = f"{5:08x}" + "ab" * 28  # an inline row of the plan, saved again
    conn.execute(INSERT, (resaved, "f2", "app.f2", "in", "DIRECT_BLOB", None, b"new", "x"))
    conn.execute(INSERT, ("fresh", "f1", "app.f1", "in", "DIRECT_BLOB", None, b"new", "x"))
    conn.close()
    result = mt.execute(plan, ws)
    conn = sqlite3.connect(root / "cache.db")
    left = {r[0] for r in conn.execute("SELECT cache_key FROM tasks")}
    conn.close()
    assert left == {resaved, "fresh"}
    assert result.rows == 39  # the re-saved row's old version was gone already
    assert result.truncated == ()  # rows newer than the plan: batches, not a truncate


def _audit_rows(root: Path) -> list[tuple]:
    lines = (root / "maintenance.log.jsonl").read_text().splitlines()
    return sorted(
        (e["db"], e["key"], e["function"], e["reason"], e["bytes"])
        for e in map(json.loads, lines)
        if "path" not in e
    )


def test_plain_clear_is_one_truncate_with_the_same_outcome_as_batches(tmp_path: Path) -> None:
    """Same rows, files, totals and audit lines whether the pass is one DELETE (the
    default for a plain clear of a small enough DB) or batches."""
    outcomes = []
    for name, truncate_bytes in (("one", mt.TRUNCATE_MAX_BYTES), ("batches", 0)):
        root = make_ws(tmp_path / name, 900)
        ws = discover(root)
        plan = mt.plan_clear(ws, NOW)
        result = mt.execute(plan, ws, truncate_bytes=truncate_bytes)
        assert result.truncated == (("cache",) if truncate_bytes else ())
        assert (result.rows, result.files, result.bytes) == (plan.rows, plan.files, plan.bytes)
        assert count_rows(root) == 0
        left = sorted(p.name for p in (root / "blobs" / "cache").iterdir())
        outcomes.append((result.groups, left, _audit_rows(root)))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][2]) == 900


def test_clear_with_a_filter_or_a_big_db_goes_in_batches(tmp_path: Path) -> None:
    root = make_ws(tmp_path, 300)
    ws = discover(root)
    plan = mt.plan_clear(ws, NOW, func="f1")
    result = mt.execute(plan, ws)
    assert result.truncated == () and result.rows == 100 and count_rows(root) == 200
    plan = mt.plan_clear(ws, NOW)
    size = (root / "cache.db").stat().st_size
    result = mt.execute(plan, ws, truncate_bytes=size // 2)
    assert result.truncated == () and result.rows == 200 and count_rows(root) == 0


def test_clear_of_a_rollback_journal_db_goes_in_batches(tmp_path: Path) -> None:
    """Without WAL a read snapshot would block the truncate's own commit."""
    root = make_ws(tmp_path, 50)
    conn = sqlite3.connect(root / "cache.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    ws = discover(root)
    plan = mt.plan_clear(ws, NOW)
    result = mt.execute(plan, ws, timeout=2.0)
    assert result.failures == () and result.truncated == ()
    assert result.rows == 50 and count_rows(root) == 0


def test_data_version_sees_a_commit_made_before_the_write_lock(tmp_path: Path) -> None:
    """The premise of the truncate's guard, on this SQLite: a commit by another
    connection between two reads of ``PRAGMA data_version`` changes it, also when the
    second read is the first thing inside BEGIN IMMEDIATE; none leaves it alone."""
    root = make_ws(tmp_path, 5)
    db = root / "cache.db"
    conn = sqlite3.connect(db, isolation_level=None)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        for commit in (False, True):
            before = conn.execute("PRAGMA data_version").fetchone()[0]
            if commit:
                other.execute(INSERT, ("w", "f", "app.f", "in", "DIRECT_BLOB", None, b"1", "x"))
            conn.execute("BEGIN IMMEDIATE")
            after = conn.execute("PRAGMA data_version").fetchone()[0]
            conn.execute("ROLLBACK")
            assert (after != before) is commit
    finally:
        conn.close()
        other.close()


def test_planned_files_are_compact_and_found_by_location(tmp_path: Path) -> None:
    root = make_ws(tmp_path, 2000, file_every=2)
    ws = discover(root)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plan = mt.plan_clear(ws, NOW)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    (dbp,) = plan.dbs
    files = dbp.files
    assert isinstance(files, mt.PlannedFiles) and len(files) == plan.files == 1000
    # A location string (~120 bytes) and four numbers each: no object per file.
    assert held / len(files) < 400, f"{held / len(files):.0f} bytes per planned file"
    assert list(files.locations) == sorted(files.locations)
    first = files[0]
    assert files.find(first.location) == 0 and files.find("nope.bin") == -1
    assert Path(first.path) == root / "blobs" / "cache" / first.location
    assert first.size == (root / "blobs" / "cache" / first.location).stat().st_size
    assert (first.function, first.reason) in files.kind_table
    assert sum(f.size for f in files) == plan.bytes - 1000 * 9  # minus the inline rows


def test_a_live_writer_gets_gaps_and_checkpoints_until_it_goes_quiet(
    tmp_path: Path, monkeypatch
) -> None:
    root = make_ws(tmp_path, 10)
    monkeypatch.setattr(mt, "WRITER_GAP", 0.0)
    ctx = mt._RunContext({}, [], mt.AuditLog(root, "gc", NOW, enabled=False), lambda n: None, 10)
    conn = mt._open_writer(str(root / "cache.db"), 5.0)
    other = sqlite3.connect(root / "cache.db", isolation_level=None)
    try:
        ctx.start_db(conn)

        def autocheckpoint() -> int:
            return conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]

        assert autocheckpoint() == 0
        ctx.between_batches(conn, 5)  # alone: no checkpoint per commit
        assert autocheckpoint() == 0 and not ctx._writer_batches
        other.execute(INSERT, ("w1", "f", "app.f", "in", "DIRECT_BLOB", None, b"1", "x"))
        ctx.between_batches(conn, 5)  # another connection committed: a writer
        assert autocheckpoint() == mt.SQLITE_AUTOCHECKPOINT
        assert ctx._writer_batches == mt.WRITER_BATCHES
        other.execute(INSERT, ("w2", "f", "app.f", "in", "DIRECT_BLOB", None, b"2", "x"))
        ctx.between_batches(conn, 5)
        assert ctx._writer_batches == mt.WRITER_BATCHES  # still writing: still polite
        for _ in range(mt.WRITER_BATCHES):
            ctx.between_batches(conn, 5)  # quiet again
        assert autocheckpoint() == 0 and not ctx._writer_batches
    finally:
        other.close()
        conn.close()
