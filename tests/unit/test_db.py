"""SQLiteTaskDB, TaskReader and count_tasks against real SQLite files."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from beautyspot import db as bsdb
from beautyspot.db import (
    Flushable,
    Maintenable,
    Shutdownable,
    SQLiteTaskDB,
    TaskDBBase,
    TaskDBCore,
    TaskDBMaintenable,
    TaskReader,
)
from beautyspot.errors import DBError, DBNotFoundError
from conftest import FIXTURE_NOW, UPSTREAM

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: dt.datetime = T0):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make_db(tmp_path: Path, clock: Clock | None = None, **kw) -> SQLiteTaskDB:
    return SQLiteTaskDB(tmp_path / "ws" / "t.db", clock=clock or Clock(), **kw)


def save(db: SQLiteTaskDB, key: str, func: str = "f", **kw) -> None:
    kw.setdefault("result_data", b"\xa1x")
    db.save(
        key,
        func,
        kw.pop("ident", f"mod.{func}"),
        "in",
        None,
        kw.pop("rt", "DIRECT_BLOB"),
        None,
        **kw,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db(tmp_path: Path):
    d = make_db(tmp_path)
    yield d
    d.shutdown()


def test_protocols_are_satisfied(db: SQLiteTaskDB) -> None:
    for proto in (TaskDBCore, Flushable, Shutdownable, Maintenable, TaskDBMaintenable):
        assert isinstance(db, proto)


def test_base_class_defaults_are_harmless() -> None:
    class Minimal(TaskDBBase):
        def init_schema(self): ...
        def get(self, cache_key, *, include_expired=False):
            return None

        def save(self, *a, **k): ...
        def delete(self, cache_key):
            return False

    m = Minimal()
    assert isinstance(m, TaskDBMaintenable)
    assert (m.delete_expired(), m.prune(T0), m.delete_all()) == (0, 0, 0)
    assert m.get_outdated_tasks(T0) == [] and m.get_keys_start_with("a") == []
    assert m.get_blob_refs() is None and m.get_history().empty
    assert m.flush() is True and m.shutdown() is None
    with pytest.raises(TypeError):
        TaskDBBase()  # abstract


def test_constructor_creates_workspace_with_gitignore(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    try:
        assert (tmp_path / "ws" / ".gitignore").read_text().strip() == "*"
        names = [t.name for t in threading.enumerate()]
        assert bsdb.WRITER_THREAD_NAME in names
        mode = sqlite3.connect(tmp_path / "ws" / "t.db").execute("PRAGMA journal_mode").fetchone()
        assert mode[0] == "wal"
    finally:
        d.shutdown()


def test_constructor_raises_writer_startup_error(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "t.db").mkdir()  # a directory where the DB should be
    with pytest.raises(sqlite3.Error):
        SQLiteTaskDB(tmp_path / "ws" / "t.db")


def test_save_get_roundtrip_and_defaults(db: SQLiteTaskDB) -> None:
    db.save("k1", "f", None, "in", "v1", "FILE", "application/json", result_value="k1.bin")
    rec = db.get("k1")
    assert rec == {
        "result_type": "FILE",
        "result_value": "k1.bin",
        "result_data": None,
        "expires_at": None,
    }
    row = (
        sqlite3.connect(db.db_path)
        .execute("SELECT func_identifier, updated_at, version FROM tasks")
        .fetchone()
    )
    assert row == ("f", "2026-06-01 12:00:00+00:00", "v1")  # identifier falls back to name
    assert db.get("missing") is None


def test_save_replaces(db: SQLiteTaskDB) -> None:
    save(db, "k", result_data=b"1")
    save(db, "k", result_data=b"2")
    assert db.get("k")["result_data"] == b"2"
    assert SQLiteTaskDB.count_tasks(db.db_path) == 1


def test_lazy_expiry_and_include_expired(tmp_path: Path) -> None:
    clock = Clock()
    d = make_db(tmp_path, clock)
    try:
        save(d, "soon", expires_at=T0 + dt.timedelta(hours=1))
        save(d, "naive", expires_at="2026-06-01 12:30:00")  # naive = UTC
        save(d, "tokyo", expires_at="2026-06-01T21:30:00+09:00")  # = 12:30 UTC
        save(d, "junk", expires_at="not a date")
        assert all(d.get(k) for k in ("soon", "naive", "tokyo", "junk"))
        clock.now = T0 + dt.timedelta(minutes=45)
        assert d.get("naive") is None and d.get("tokyo") is None
        assert d.get("soon") is not None
        assert d.get("junk") is not None  # unparsable never counts as expired
        assert d.get("naive", include_expired=True)["expires_at"] == "2026-06-01 12:30:00"
        assert d.get("soon", now=T0 + dt.timedelta(hours=2)) is None
    finally:
        d.shutdown()


def test_delete(db: SQLiteTaskDB) -> None:
    save(db, "k")
    assert db.delete("k") is True
    assert db.delete("k") is False


def test_delete_expired_exact_across_formats(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    try:
        values = {
            "utc_past": "2026-06-01 11:59:59.999999+00:00",
            "utc_now": "2026-06-01 12:00:00+00:00",  # not strictly before now
            "t_past": "2026-06-01T11:00:00+00:00",
            "z_past": "2026-06-01T11:59:59Z",
            "plus9_past": "2026-06-01 20:59:00+09:00",  # 11:59 UTC, string looks later
            "minus5_future": "2026-06-01 07:30:00-05:00",  # 12:30 UTC, string looks earlier
            "naive_past": "2026-06-01 11:00:00",
            "garbage": "yesterday",
            "feb30": "2026-02-30 00:00:00",
        }
        for key, value in values.items():
            save(d, key, expires_at=value)
        save(d, "never")
        assert d.delete_expired(now=T0) == 5
        left = {r[0] for r in sqlite3.connect(d.db_path).execute("SELECT cache_key FROM tasks")}
        assert left == {"utc_now", "minus5_future", "garbage", "feb30", "never"}
    finally:
        d.shutdown()


def test_prune_and_outdated_tasks_compare_instants(tmp_path: Path) -> None:
    clock = Clock(dt.datetime(2026, 1, 1, tzinfo=UTC))
    d = make_db(tmp_path, clock)
    try:
        for i in range(5):
            save(d, f"old{i}", func="a" if i % 2 else "b")
        clock.now = T0
        save(d, "new", func="a")
        con = sqlite3.connect(d.db_path)
        # Rewrite formats the way other writers do.
        con.execute(
            "UPDATE tasks SET updated_at='2026-05-31T23:00:00-05:00' WHERE cache_key='old0'"
        )
        con.execute("UPDATE tasks SET updated_at='garbage' WHERE cache_key='old1'")
        con.commit()
        cutoff = dt.datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # old0 is 04:00 UTC: kept
        outdated = d.get_outdated_tasks(cutoff)
        assert [k for k, _, _ in outdated] == ["old2", "old3", "old4"]
        assert outdated[0][1] == "mod.b"
        assert [k for k, _, _ in d.get_outdated_tasks(cutoff, func_name="a")] == ["old3"]
        assert d.prune(cutoff, func_name="mod.a") == 1  # identifier matches too
        assert d.prune(cutoff) == 2
        assert d.prune(dt.timedelta(days=400)) == 0
        assert sorted(d.get_keys_start_with("")) == ["new", "old0", "old1"]
    finally:
        d.shutdown()


def test_delete_all_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bsdb, "DELETE_BATCH", 7)
    d = make_db(tmp_path)
    try:
        for i in range(50):
            save(d, f"k{i:03}", func="a" if i < 20 else "b")
        assert d.delete_all(func_name="a") == 20
        assert d.delete_all() == 30
        assert SQLiteTaskDB.count_tasks(d.db_path) == 0
    finally:
        d.shutdown()


def test_batched_delete_lets_other_writes_in(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bsdb, "DELETE_BATCH", 10)
    d = make_db(tmp_path)
    try:
        for i in range(300):
            save(d, f"k{i:04}", func="old")
        t = threading.Thread(target=d.delete_all, kwargs={"func_name": "old"})
        t.start()
        save(d, "fresh", func="new")
        t.join()
        assert d.get("fresh") is not None
        assert SQLiteTaskDB.count_tasks(d.db_path) == 1
    finally:
        d.shutdown()


def test_keys_start_with_is_literal_and_bounded(db: SQLiteTaskDB) -> None:
    for key in ["ab%", "ab%c", "abc", "abd", "aB", "ab_", "ab\\", "b"]:
        save(db, key)
    assert db.get_keys_start_with("ab%") == ["ab%", "ab%c"]
    assert db.get_keys_start_with("ab_") == ["ab_"]
    assert db.get_keys_start_with("ab") == ["ab%", "ab%c", "ab\\", "ab_", "abc", "abd"]
    assert db.get_keys_start_with("\udcff") == []  # unstorable prefix: no match, no crash
    for i in range(80):
        save(db, f"z{i:03}")
    assert db.get_keys_start_with("z") == [f"z{i:03}" for i in range(50)]


def test_prefix_query_uses_index(db: SQLiteTaskDB) -> None:
    con = sqlite3.connect(db.db_path)
    from beautyspot import sql as q

    plan = con.execute(
        "EXPLAIN QUERY PLAN SELECT cache_key FROM tasks WHERE " + q.prefix_range_sql("cache_key"),
        q.prefix_params("ab"),
    ).fetchall()
    assert "SEARCH" in plan[0][3] and "cache_key" in plan[0][3]


def test_get_blob_refs_and_history_order(tmp_path: Path) -> None:
    clock = Clock()
    d = make_db(tmp_path, clock)
    try:
        save(d, "a", rt="FILE", result_value="a.bin", result_data=None)
        save(d, "b")
        clock.now = T0 + dt.timedelta(hours=1)
        save(d, "c", rt="FILE", result_value="c.bin", result_data=None)
        con = sqlite3.connect(d.db_path)
        # 'b' as 11:30 UTC written with +09:00: by string it would be the newest.
        con.execute("UPDATE tasks SET updated_at='2026-06-01 20:30:00+09:00' WHERE cache_key='b'")
        con.commit()
        assert d.get_blob_refs() == {"a.bin", "c.bin"}
        hist = d.get_history()
        assert list(hist["cache_key"]) == ["c", "a", "b"]
        assert "result_data" not in hist.columns
        assert list(d.get_history(limit=1)["cache_key"]) == ["c"]
    finally:
        d.shutdown()


def test_eight_threads_thousand_saves_each(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(1000):
                save(d, f"t{t}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.flush() is True
    d.shutdown()
    assert not errors
    assert SQLiteTaskDB.count_tasks(d.db_path) == 8000


def test_failing_write_in_a_batch_fails_alone(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    gate = threading.Event()
    results: dict[str, object] = {}
    # Hold the writer so the next writes queue up and are committed as one group.
    blocker = threading.Thread(target=d._submit, args=(lambda conn: gate.wait(5),))
    blocker.start()
    time.sleep(0.1)

    def attempt(name: str, data: object) -> None:
        try:
            save(d, name, result_data=data)
            results[name] = "ok"
        except Exception as exc:
            results[name] = exc

    threads = [
        threading.Thread(target=attempt, args=("good1", b"1")),
        threading.Thread(target=attempt, args=("bad", object())),  # cannot be bound
        threading.Thread(target=attempt, args=("good2", b"2")),
    ]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in [blocker, *threads]:
        t.join()
    d.shutdown()
    assert results["good1"] == "ok" and results["good2"] == "ok"
    assert isinstance(results["bad"], sqlite3.Error)
    assert SQLiteTaskDB.count_tasks(d.db_path) == 2


def _save_job(key: str, data: object = b"x") -> bsdb._Job:
    row = (key, "f", "mod.f", "in", None, "DIRECT_BLOB", None, None, data, None, "2026-06-01")
    return bsdb._Job(None, sql=bsdb._SAVE_SQL, params=row)


def test_open_group_takes_in_queued_saves_in_queue_order(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    d.shutdown()  # drive one group commit by hand, on a writer connection of our own
    conn = d._open_writer()
    first, b, bad, c, cancelled = (
        _save_job("a"),
        _save_job("b"),
        _save_job("bad", object()),  # cannot be bound: fails alone
        _save_job("c"),
        _save_job("cancelled"),
    )
    cancelled.state = bsdb._Job.CANCELLED  # its caller timed out: must never run
    barrier, d_job = bsdb._Job(None), _save_job("d")
    for job in (b, bad, c, cancelled, barrier, d_job):
        d._queue.put(job)
    carry = d._commit_group(conn, [first], extend=True)
    # Saves up to the first other job joined the open transaction; the rest waits, in order.
    assert carry == [barrier, d_job]
    assert d._queue.empty()
    for job in (first, b, c):
        assert job.done.acquire(False) and job.error is None
    assert bad.done.acquire(False) and isinstance(bad.error, sqlite3.Error)
    assert not cancelled.done.acquire(False) and cancelled.state == bsdb._Job.CANCELLED
    assert not barrier.done.acquire(False) and barrier.state == bsdb._Job.PENDING
    assert {r[0] for r in conn.execute("SELECT cache_key FROM tasks")} == {"a", "b", "c"}
    conn.close()


def test_group_wakes_as_a_chain_that_heals_if_a_caller_drops_out(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    d.shutdown()
    conn = d._open_writer()
    jobs = [_save_job(k) for k in "abc"]
    assert d._commit_group(conn, jobs) == []
    assert jobs[0].done.acquire(False)  # the writer woke the first caller only
    assert not jobs[1].done.acquire(False) and not jobs[2].done.acquire(False)
    # The caller of "a" never passes the wakeup on (say it was interrupted): the caller
    # of "b" still returns, within a poll interval, and wakes the caller of "c".
    started = time.monotonic()
    assert d._wait(jobs[1]) is None
    assert time.monotonic() - started < 1.0
    assert jobs[2].done.acquire(False)
    assert {r[0] for r in conn.execute("SELECT cache_key FROM tasks")} == {"a", "b", "c"}
    conn.close()


def test_busy_database_fails_the_waiting_saves(tmp_path: Path) -> None:
    d = make_db(tmp_path, timeout=0.2)
    other = sqlite3.connect(d.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock past the writer's busy timeout
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            save(d, "x")
    finally:
        other.execute("ROLLBACK")
        other.close()
    save(d, "y")
    d.shutdown()
    keys = {r[0] for r in sqlite3.connect(d.db_path).execute("SELECT cache_key FROM tasks")}
    assert keys == {"y"}


def test_queued_write_times_out_but_running_one_is_awaited(tmp_path: Path, caplog) -> None:
    d = make_db(tmp_path, timeout=0.3)
    gate = threading.Event()
    outcome: dict[str, object] = {}

    def slow(conn: sqlite3.Connection) -> str:
        gate.wait(1.0)
        conn.execute("INSERT INTO tasks (cache_key) VALUES ('slow')")
        return "committed"

    def run_slow() -> None:
        outcome["slow"] = d._submit(slow)

    t = threading.Thread(target=run_slow)
    t.start()
    time.sleep(0.05)
    with pytest.raises(TimeoutError):
        save(d, "queued")  # never started within 0.3 s: cancelled
    gate.set()
    t.join()
    assert outcome["slow"] == "committed"  # started before the timeout: awaited, not failed
    d.flush()
    d.shutdown()
    keys = {r[0] for r in sqlite3.connect(d.db_path).execute("SELECT cache_key FROM tasks")}
    assert keys == {"slow"}  # the cancelled write never ran


def test_flush_and_shutdown_semantics(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    save(d, "a")
    assert d.flush(timeout=5) is True
    d.shutdown()
    d.shutdown()  # idempotent
    assert d.flush() is False
    for call in (lambda: save(d, "b"), lambda: d.get("a"), lambda: d.delete("a")):
        with pytest.raises(RuntimeError, match="shutting down"):
            call()
    assert not any(
        t.name == bsdb.WRITER_THREAD_NAME and t.is_alive()
        for t in threading.enumerate()
        if t is d._writer
    )
    assert not (tmp_path / "ws" / "t.db-wal").exists()  # clean close checkpoints the WAL


def test_flush_times_out_while_writer_is_busy(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    gate = threading.Event()
    t = threading.Thread(target=d._submit, args=(lambda conn: gate.wait(5),))
    t.start()
    time.sleep(0.05)
    assert d.flush(timeout=0.2) is False
    gate.set()
    t.join()
    d.shutdown()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dead_writer_gives_runtime_error_not_hang(tmp_path: Path) -> None:
    d = make_db(tmp_path)

    def kill(conn: sqlite3.Connection) -> None:
        raise SystemExit("writer killed")  # not an Exception: escapes the job, ends the thread

    started = time.monotonic()
    with pytest.raises(RuntimeError):
        d._submit(kill)
    d._writer.join(2)
    assert not d._writer.is_alive()
    with pytest.raises(RuntimeError):
        save(d, "after")
    assert d.flush(timeout=1) is False
    assert time.monotonic() - started < 3
    d.shutdown()


def test_shutdown_drains_pending_writes(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    threads = [threading.Thread(target=save, args=(d, f"k{i}")) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    d.shutdown(wait=True)
    assert SQLiteTaskDB.count_tasks(d.db_path) == 50


def test_reader_connection_reopened_after_error(db: SQLiteTaskDB) -> None:
    save(db, "a")
    with pytest.raises(sqlite3.Error):
        db._read("SELECT no_such_column FROM tasks")
    assert db.get("a") is not None


def test_count_tasks_starts_no_thread_and_changes_nothing(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    for i in range(10):
        save(d, f"k{i}")
    d.shutdown()
    path = d.db_path
    before = (digest(path), sorted(p.name for p in path.parent.iterdir()))
    threads_before = threading.active_count()
    assert SQLiteTaskDB.count_tasks(path) == 10
    assert threading.active_count() == threads_before
    assert (digest(path), sorted(p.name for p in path.parent.iterdir())) == before


def test_count_tasks_errors_are_minus_one(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    (tmp_path / "empty.db").write_bytes(b"")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE x(a)").connection.commit()
    for name in ("junk.db", "empty.db", "other.db", "missing.db"):
        assert SQLiteTaskDB.count_tasks(tmp_path / name) == -1
    assert not (tmp_path / "missing.db").exists()


LEGACY = """CREATE TABLE tasks (cache_key TEXT PRIMARY KEY, func_name TEXT, input_id TEXT,
result_type TEXT, result_value TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"""


def make_legacy(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute(LEGACY)
    con.execute(
        "INSERT INTO tasks (cache_key, func_name, input_id, result_type, result_value)"
        " VALUES ('old', 'f', 'i', 'FILE', 'old.bin')"
    )
    con.commit()
    con.close()


def test_legacy_schema_migration_twice(tmp_path: Path) -> None:
    path = tmp_path / "ws" / "legacy.db"
    make_legacy(path)
    for _ in range(2):
        d = SQLiteTaskDB(path)
        d.init_schema()  # again, explicitly: must be a no-op
        assert d.get("old")["result_value"] == "old.bin"
        d.shutdown()
    cols = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(tasks)")}
    assert {"func_identifier", "result_data", "content_type", "version", "expires_at"} <= cols
    idx = {r[1] for r in sqlite3.connect(path).execute("PRAGMA index_list(tasks)")}
    assert {"idx_func_identifier", "idx_expires_at", "idx_updated_at"} <= idx


def test_concurrent_migration_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "ws" / "legacy.db"
    make_legacy(path)
    errors: list[BaseException] = []

    def open_db() -> None:
        try:
            SQLiteTaskDB(path).shutdown()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=open_db) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_reader_reads_legacy_schema_without_migrating(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    make_legacy(path)
    before = digest(path)
    with TaskReader(path) as r:
        row = r.get_row("old")
        assert (row.function, row.expires_at, row.data_size) == ("f", None, None)
        assert r.blob_refs() == {"old.bin"}
        assert r.keys_with_prefix("o") == ["old"]
        assert r.functions_with_prefix("") == ["f"]
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.db"]


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(DBNotFoundError):
        TaskReader(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(DBError):
        TaskReader(tmp_path / "dir.db")
    (tmp_path / "junk.db").write_bytes(b"\x00garbage" * 512)
    with pytest.raises(DBError):
        TaskReader(tmp_path / "junk.db")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE x(a)").connection.commit()
    with pytest.raises(DBError, match="no 'tasks' table"):
        TaskReader(tmp_path / "other.db")


def test_reader_on_wal_db_creates_no_files(tmp_path: Path) -> None:
    d = make_db(tmp_path)
    save(d, "a")
    d.shutdown()
    ws = tmp_path / "ws"
    before = sorted(p.name for p in ws.iterdir())
    with TaskReader(ws / "t.db") as r:
        assert r.count() == 1
    assert SQLiteTaskDB.count_tasks(ws / "t.db") == 1
    assert sorted(p.name for p in ws.iterdir()) == before


def test_upstream_fixture_is_read_correctly(upstream_ws: Path) -> None:
    assert SQLiteTaskDB.count_tasks(upstream_ws / "llm.db") == 60
    assert SQLiteTaskDB.count_tasks(UPSTREAM / "etl.db") == 6  # read-only original works
    from beautyspot import sql as q
    from beautyspot.timeutil import to_instant

    with TaskReader(upstream_ws / "llm.db") as r:
        expired = list(r.iter_rows(q.RowFilter(expired_before=to_instant(FIXTURE_NOW))))
        assert len(expired) == 15 and {x.function for x in expired} == {"__main__.ephemeral"}
        cutoff = to_instant(FIXTURE_NOW - dt.timedelta(days=30))
        old = list(r.iter_rows(q.RowFilter(updated_before=cutoff)))
        assert len(old) == 20  # the rows moved back 40 days, stored with a 'T'
        assert all(str(x.updated_at).startswith("2026-10-24T") for x in old)
        files = [x for x in r.iter_rows(q.RowFilter(func="embed"))]
        assert len(files) == 6 and all(x.result_type == "FILE" for x in files)
        assert r.blob_refs() == {x.result_value for x in files}


def test_upstream_fixture_writable_by_library_and_still_upstream_shaped(upstream_ws) -> None:
    d = SQLiteTaskDB(upstream_ws / "llm.db", clock=Clock(FIXTURE_NOW))
    try:
        assert d.get("missing") is None
        assert d.delete_expired() == 15
        assert d.prune(dt.timedelta(days=30)) == 15  # 5 of the 20 old rows were expired
        assert len(d.get_history()) == 30
    finally:
        d.shutdown()
    con = sqlite3.connect(upstream_ws / "llm.db")
    cols = [r[1] for r in con.execute("PRAGMA table_info(tasks)")]
    assert cols[:3] == ["cache_key", "func_name", "func_identifier"]
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
