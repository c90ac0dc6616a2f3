"""PostgresTaskDB against a real PostgreSQL server: what only this backend has.

Schema types and indexes (and that the planner uses them), migration of an older table,
concurrency of init_schema, input validation, timeouts, the cross-machine maintenance
lock, bulk loading, and several writer processes racing ``delete_expired``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pg_server import PgServer, new_database_name, pg_server_fixture, pg_url_fixture  # noqa: F401

from beautyspot.errors import DBBusyError, DBError, LockHeldError
from beautyspot.postgres import INDEXES, PostgresTaskDB

try:
    import psycopg
except ImportError:  # the pg_server fixture then skips (or, in CI, fails) every test
    psycopg = None  # type: ignore[assignment]

# Every test here needs the server: without it (or psycopg) they skip, or fail in CI.
pytestmark = pytest.mark.usefixtures("pg_server")

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: dt.datetime = T0):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def save(db: PostgresTaskDB, key: str, func: str = "f", **kw: Any) -> None:
    kw.setdefault("result_data", b"x")
    db.save(key, func, kw.pop("ident", None), "in", None, kw.pop("rt", "DIRECT_BLOB"), None, **kw)


def row(key: str, **kw: Any) -> tuple:
    """A save_many row: save()'s arguments plus updated_at."""
    return (
        key,
        kw.get("func", "f"),
        kw.get("ident"),
        "in",
        None,
        kw.get("rt", "DIRECT_BLOB"),
        None,
        kw.get("value"),
        kw.get("data", b"x"),
        kw.get("expires"),
        kw.get("updated", T0),
    )


@pytest.fixture
def db(pg_url: str) -> Iterator[PostgresTaskDB]:
    d = PostgresTaskDB(pg_url, clock=Clock(), timeout=5.0)
    yield d
    d.shutdown()


@pytest.fixture
def sql(pg_url: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit connection to the test's database, for looking behind the API."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def icu_url(pg_server: PgServer) -> Iterator[str]:
    """A database whose default collation is ICU en-US (linguistic, not byte order)."""
    name = new_database_name()
    with pg_server.admin() as conn:
        conn.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0'
            " LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
        )
    yield pg_server.url(name)
    pg_server.drop_database(name)


def plan_of(conn: psycopg.Connection, query: str, params: Any = None) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params))


# --------------------------------------------------------------------------- schema


def test_column_types_collation_and_indexes(db: PostgresTaskDB, sql: psycopg.Connection) -> None:
    cols = {
        r[0]: r[1:]
        for r in sql.execute(
            "SELECT column_name, data_type, collation_name, is_nullable"
            " FROM information_schema.columns WHERE table_name = 'tasks'"
        )
    }
    assert {c: t[0] for c, t in cols.items()} == {
        "cache_key": "text",
        "func_name": "text",
        "func_identifier": "text",
        "input_id": "text",
        "version": "text",
        "result_type": "text",
        "content_type": "text",
        "result_value": "text",
        "result_data": "bytea",
        "expires_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
    }
    assert cols["cache_key"][1] == "C"
    assert cols["updated_at"][2] == "NO"
    pk = sql.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = 'tasks'::regclass AND i.indisprimary"
    ).fetchall()
    assert pk == [("cache_key",)]
    defs = dict(sql.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename='tasks'"))
    assert set(defs) == {"tasks_pkey", *INDEXES}
    assert defs["idx_result_value"].endswith("WHERE (result_value IS NOT NULL)")
    assert "(expires_at)" in defs["idx_expires_at"] and "(updated_at)" in defs["idx_updated_at"]


def _fill(db: PostgresTaskDB, n: int) -> None:
    rows = []
    for i in range(n):
        expires = T0 + dt.timedelta(minutes=i - 100) if i % 4 else None  # first 100 expired
        rows.append(
            row(
                f"{i * 7919 % n:08x}",
                func=f"fn{i % 20}",
                ident=f"mod.fn{i % 20}",
                rt="FILE" if i % 10 == 0 else "DIRECT_BLOB",
                value=f"{i:08x}.bin" if i % 10 == 0 else None,
                expires=expires,
                updated=T0 - dt.timedelta(minutes=n - i),  # the first 100: a day older
            )
        )
    assert db.save_many(rows) == n


def test_planner_uses_the_indexes(db: PostgresTaskDB, sql: psycopg.Connection) -> None:
    _fill(db, 20_000)
    sql.execute("ANALYZE tasks")
    query, params = db.prefix_query("00001a")
    plan = plan_of(sql, query, params)
    assert "Index" in plan and "tasks_pkey" in plan and "Seq Scan" not in plan, plan
    assert db.get_keys_start_with("00001a") == [f"00001a{i:02x}" for i in range(50)]

    # One batch of each bounded delete, first and later batches.
    limits = {"limit": db.delete_batch, "after": T0 - dt.timedelta(days=30)}
    cases = [
        ("expires_at < %(now)s", "expires_at", {"now": T0 - dt.timedelta(minutes=50)}, "expires"),
        ("updated_at < %(cutoff)s", "updated_at", {"cutoff": T0 - dt.timedelta(days=13.8)}, "upd"),
    ]
    for pred, order, params, _ in cases:
        for first in (True, False):
            plan = plan_of(sql, db._batch_sql(pred, order, first), {**params, **limits})
            assert f"idx_{order}" in plan and "Seq Scan" not in plan, plan
            # The DELETE itself goes by primary key: no second walk of the range.
            assert "Index Scan using tasks_pkey on tasks" in plan.split("CTE gone")[1], plan
    plan = plan_of(sql, "SELECT DISTINCT result_value FROM tasks WHERE result_value IS NOT NULL")
    with sql.transaction():
        sql.execute("SET LOCAL enable_seqscan = off")  # usable, whatever the planner prefers
        plan = plan_of(
            sql, "SELECT DISTINCT result_value FROM tasks WHERE result_value IS NOT NULL"
        )
        assert "idx_result_value" in plan, plan
        plan = plan_of(
            sql,
            "SELECT cache_key FROM tasks WHERE func_name = %(f)s OR func_identifier = %(f)s",
            {"f": "fn3"},
        )
        assert "idx_func_name" in plan and "idx_func_identifier" in plan, plan
    assert db.delete_expired(now=T0 - dt.timedelta(minutes=50)) == 37  # i < 50, i % 4 != 0


def test_byte_order_keys_in_a_linguistic_database(icu_url: str) -> None:
    with psycopg.connect(icu_url) as conn:  # the database itself sorts linguistically
        words = [
            r[0]
            for r in conn.execute(
                "SELECT x FROM unnest(%s::text[]) x ORDER BY x", (["aB", "ab", "Ab", "ac"],)
            )
        ]
    assert words == ["ab", "aB", "Ab", "ac"]
    d = PostgresTaskDB(icu_url)
    try:
        for key in ["ab", "aB", "Ab", "ac", "a_", "abc"]:
            save(d, key)
        assert d.get_keys_start_with("a") == ["aB", "a_", "ab", "abc", "ac"]
        assert d.get_keys_start_with("ab") == ["ab", "abc"]
        assert [k for k, _ in d.iter_keys_updated()] == ["Ab", "aB", "a_", "ab", "abc", "ac"]
    finally:
        d.shutdown()


LEGACY = """
CREATE TABLE tasks (
    cache_key text PRIMARY KEY,
    func_name text,
    input_id text,
    result_type text,
    result_value text,
    updated_at timestamptz DEFAULT now()
);
INSERT INTO tasks VALUES ('old', 'f', 'in', 'FILE', 'old.bin', '2025-01-01 00:00:00+00');
INSERT INTO tasks VALUES ('aB', 'f', 'in', 'FILE', 'aB.bin', '2025-01-02 00:00:00+00');
INSERT INTO tasks VALUES ('ab', 'f', 'in', 'FILE', 'ab.bin', '2025-01-03 00:00:00+00');
"""


@pytest.mark.parametrize("where", ["c_locale", "icu"])
def test_legacy_table_is_migrated(where: str, pg_url: str, request: pytest.FixtureRequest) -> None:
    url = pg_url if where == "c_locale" else request.getfixturevalue("icu_url")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LEGACY)
    d = PostgresTaskDB(url, clock=Clock())
    try:
        with psycopg.connect(url) as conn:
            cols = dict(
                conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_name = 'tasks'"
                )
            )
            indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
        assert cols["func_identifier"] == "text" and cols["version"] == "text"
        assert cols["result_data"] == "bytea" and cols["content_type"] == "text"
        assert cols["expires_at"] == "timestamp with time zone"
        assert set(INDEXES) <= indexes
        assert d.get("old") == {
            "result_type": "FILE",
            "result_value": "old.bin",
            "result_data": None,
            "expires_at": None,
        }
        assert d.get_outdated_tasks(T0)[0] == ("old", "f", "2025-01-01 00:00:00+00:00")
        assert d._key_in_c is (where == "c_locale")
        # Byte order either way: an old key column of a linguistic collation is compared
        # with an explicit COLLATE "C" (correct, no longer by index).
        save(d, "abc", expires_at=T0 + dt.timedelta(days=1))
        assert d.get_keys_start_with("a") == ["aB", "ab", "abc"]
        assert d.get_keys_start_with("ab") == ["ab", "abc"]
        assert d.delete_all() == 4
    finally:
        d.shutdown()


def test_init_schema_twice_and_from_threads_at_once(pg_url: str, sql: psycopg.Connection) -> None:
    errors: list[BaseException] = []
    made: list[PostgresTaskDB] = []
    start = threading.Barrier(4)

    def construct() -> None:
        try:
            start.wait()
            made.append(PostgresTaskDB(pg_url, pool_size=2))  # each runs init_schema
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=construct) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(made) == 4
    d = made[0]
    save(d, "k")
    d.init_schema()
    d.init_schema()
    # Drop a column and an index: init_schema from several threads restores each once.
    sql.execute("ALTER TABLE tasks DROP COLUMN version; DROP INDEX idx_updated_at")
    start = threading.Barrier(4)

    def migrate(m: PostgresTaskDB) -> None:
        try:
            start.wait()
            m.init_schema()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(m,)) for m in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = {r[0] for r in sql.execute("SELECT indexname FROM pg_indexes WHERE tablename='tasks'")}
    assert "idx_updated_at" in names
    ncols = sql.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'tasks'"
    ).fetchone()[0]
    assert ncols == 11
    assert d.get("k") is not None
    for m in made:
        m.shutdown()


# --------------------------------------------------------------------------- validation


def test_unstorable_values_raise_and_write_nothing(db: PostgresTaskDB) -> None:
    with pytest.raises(ValueError, match="unparsable expires_at"):
        save(db, "k", expires_at="next tuesday")
    with pytest.raises(ValueError, match="NUL"):
        save(db, "k", func="f\x00g")
    with pytest.raises(ValueError, match="NUL"):
        save(db, "k\x00")
    with pytest.raises(ValueError, match="surrogate"):
        save(db, "k\udcff")
    with pytest.raises(ValueError, match="'bad'.*unparsable updated_at"):
        db.save_many([row("good"), row("bad", updated="garbage")])
    assert PostgresTaskDB.count_tasks(db._url) == 0
    # Text expiries in any accepted form are stored as instants.
    save(db, "tokyo", expires_at="2026-06-01T21:30:00+09:00")
    assert db.get("tokyo", include_expired=True)["expires_at"] == "2026-06-01 12:30:00+00:00"
    # No key with NUL or a lone surrogate can exist: lookups say so, without an error.
    assert db.get("a\x00") is None and db.delete("a\x00") is False
    assert db.get_keys_start_with("a\x00") == [] and db.get("\udcff") is None


def test_bad_url_is_a_one_line_db_error_without_password() -> None:
    cases = [
        "postgresql://alice:s3cr3t-pw@/nodb?host=/nonexistent-dir&port=1",
        "postgresql://alice:s3cr3t-pw@localhost:notaport/db",
        "postgresql://alice:s3cr3t-pw@[broken",
        "postgresql:///db?host=/nonexistent-dir&password=s3cr3t-pw&sslmode=bogus",
    ]
    for url in cases:
        started = time.monotonic()
        with pytest.raises(DBError) as info:
            PostgresTaskDB(url, timeout=2)
        message = str(info.value)
        assert "\n" not in message and message.strip() == message, message
        assert "s3cr3t" not in message, message
        assert "PostgreSQL" in message
        assert time.monotonic() - started < 10


def test_psycopg_is_imported_only_by_the_postgres_backend() -> None:
    code = textwrap.dedent(
        """
        import sys
        import beautyspot.db, beautyspot.backends, beautyspot.postgres
        assert "psycopg" not in sys.modules and "psycopg_pool" not in sys.modules
        sys.modules["psycopg"] = None  # as if not installed
        from beautyspot.errors import DBError
        try:
            beautyspot.backends.open_task_db("postgresql://u@/db?host=/nowhere")
        except DBError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "PostgreSQL support needs: pip install 'beautyspot[scaleout]'"


# --------------------------------------------------------------------------- timeouts


def test_write_stuck_on_a_lock_fails_within_timeout(pg_url: str) -> None:
    d = PostgresTaskDB(pg_url, timeout=0.5)
    try:
        save(d, "k", result_data=b"before")
        with psycopg.connect(pg_url) as other:
            other.execute("SELECT 1 FROM tasks WHERE cache_key = 'k' FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(DBBusyError, match="nothing was written"):
                save(d, "k", result_data=b"after")
            assert 0.4 < time.monotonic() - started < 3
            # Deletes skip the locked row instead of waiting for it.
            started = time.monotonic()
            assert d.delete_all() == 0
            assert time.monotonic() - started < 0.4
            other.rollback()
        assert d.get("k")["result_data"] == b"before"
        save(d, "k", result_data=b"after")
        assert d.get("k")["result_data"] == b"after"
    finally:
        d.shutdown()


def test_no_free_pool_connection_is_a_timeout_error(pg_url: str) -> None:
    d = PostgresTaskDB(pg_url, timeout=0.5, pool_size=1)
    try:
        with d._connection():  # the pool's only connection, busy
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                d.get("k")
            assert 0.4 < time.monotonic() - started < 3
        assert d.get("k") is None
    finally:
        d.shutdown()


def test_deletes_skip_rows_locked_by_a_writer(db: PostgresTaskDB, pg_url: str) -> None:
    for i in range(20):
        save(db, f"e{i:02}", expires_at=T0 - dt.timedelta(hours=1))
    with psycopg.connect(pg_url) as writer:
        writer.execute("SELECT 1 FROM tasks WHERE cache_key IN ('e03', 'e17') FOR UPDATE")
        assert db.delete_expired() == 18
        writer.rollback()
    assert db.get_keys_start_with("e") == ["e03", "e17"]
    assert db.delete_expired() == 2


def test_deletes_run_in_batches(pg_url: str) -> None:
    d = PostgresTaskDB(pg_url, clock=Clock(), delete_batch=7)
    statements = 0
    real = d._connection

    def counting():
        nonlocal statements
        statements += 1
        return real()

    try:
        d.save_many([row(f"k{i:03}", expires=T0 - dt.timedelta(seconds=i)) for i in range(1, 51)])
        d._connection = counting  # type: ignore[method-assign]
        assert d.delete_expired() == 50
        assert statements == math.ceil(50 / 7)  # 7 full batches, then one of 1
        statements = 0
        d._connection = real  # type: ignore[method-assign]
        d.save_many([row(f"k{i:03}") for i in range(49)])
        d._connection = counting  # type: ignore[method-assign]
        assert d.delete_all() == 49
        assert statements == 49 // 7 + 1  # the 8th finds nothing left
    finally:
        d._connection = real  # type: ignore[method-assign]
        d.shutdown()


# --------------------------------------------------------------------------- maintenance lock


def test_maintenance_lock_is_exclusive_across_instances(pg_url: str, pg_server: PgServer) -> None:
    first = PostgresTaskDB(pg_url)
    second = PostgresTaskDB(pg_url)
    other_db = pg_server.create_database(new_database_name())
    third = PostgresTaskDB(other_db)
    try:
        with first.maintenance_lock():
            with psycopg.connect(pg_url) as conn:
                holder = conn.execute(
                    "SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                    " USING (pid) WHERE l.locktype = 'advisory' AND l.objid = 2 AND l.granted"
                ).fetchall()
            assert len(holder) == 1
            pid, app = holder[0]
            assert app == f"beautyspot@{socket.gethostname()}:{os.getpid()}"
            started = time.monotonic()
            with pytest.raises(LockHeldError) as info:
                with second.maintenance_lock(wait=0.5):
                    pytest.fail("second run entered while the first holds the lock")
            assert time.monotonic() - started >= 0.5
            message = str(info.value)
            assert f"server pid {pid}" in message and repr(app) in message, message
            with third.maintenance_lock(wait=0):  # another database: its own lock
                pass
        with second.maintenance_lock(wait=0):  # released with the block
            with pytest.raises(LockHeldError):
                with first.maintenance_lock(wait=0):
                    pass
        # A lock that frees up while waiting is taken.
        release = threading.Event()

        def hold() -> None:
            with first.maintenance_lock():
                release.wait(5)

        t = threading.Thread(target=hold)
        t.start()
        time.sleep(0.3)
        threading.Timer(0.3, release.set).start()
        with second.maintenance_lock(wait=5):
            assert release.is_set()
        t.join()
    finally:
        for d in (first, second, third):
            d.shutdown()


# --------------------------------------------------------------------------- bulk


def test_save_many_keeps_updated_at_and_last_duplicate_wins(db: PostgresTaskDB) -> None:
    old = dt.datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
    rows = [
        row("a", updated=old, func="g", ident="mod.g"),
        row("b", updated="2024-03-02T09:00:00+09:00", expires="2030-01-01 00:00:00"),
        row("c", updated=dt.datetime(2024, 3, 3)),  # naive = UTC
        row("a", updated=old + dt.timedelta(days=1), data=b"second"),
    ]
    assert db.save_many(rows) == 3
    assert db.save_many([]) == 0
    assert db.get_outdated_tasks(T0) == [
        ("b", "f", "2024-03-02 00:00:00+00:00"),
        ("a", "f", "2024-03-02 08:30:15.123456+00:00"),
        ("c", "f", "2024-03-03 00:00:00+00:00"),
    ]
    assert db.get("a")["result_data"] == b"second"
    assert db.get("b")["expires_at"] == "2030-01-01 00:00:00+00:00"
    # A second load of the same keys upserts (a resumed migration).
    assert db.save_many([row("c", updated=old, data=b"again")]) == 1
    assert db.get("c")["result_data"] == b"again"
    assert PostgresTaskDB.count_tasks(db._url) == 3


def test_iter_keys_updated_sorted_and_resumable(db: PostgresTaskDB) -> None:
    keys = ["b", "a", "B", "a_", "a%", "\u00e9", "z", "\U0001f600"]
    db.save_many([row(k, updated=T0 - dt.timedelta(minutes=i)) for i, k in enumerate(keys)])
    pairs = list(db.iter_keys_updated(batch=3))
    assert [k for k, _ in pairs] == sorted(keys)  # code-point order, as Python sorts
    assert dict(pairs)["a"] == "2026-06-01 11:59:00+00:00"
    assert [k for k, _ in db.iter_keys_updated(after="a_", batch=2)] == sorted(keys)[4:]


# --------------------------------------------------------------------------- processes

WRITER = textwrap.dedent(
    """
    import datetime as dt, sys, threading
    from beautyspot.postgres import PostgresTaskDB

    url, wid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    db = PostgresTaskDB(url, pool_size=2, timeout=30)
    now = dt.datetime.now(dt.timezone.utc)
    past, future = now - dt.timedelta(hours=1), now + dt.timedelta(days=1)

    def work(part):
        for i in range(part, n, 2):
            key = f"w{wid}-{i:04d}"
            if i % 3 == 1:
                db.save(key, "f", None, "in", None, "DIRECT_BLOB", None, result_data=b"l",
                        expires_at=future)
                continue
            db.save(key, "f", None, "in", None, "DIRECT_BLOB", None, result_data=b"e",
                    expires_at=past)
            if i % 3 == 2:  # expired, then saved again live: must survive gc
                db.save(key, "f", None, "in", None, "DIRECT_BLOB", None, result_data=b"r",
                        expires_at=future)

    threads = [threading.Thread(target=work, args=(p,)) for p in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.shutdown()
    print("done", wid)
    """
)


def test_writer_processes_racing_delete_expired(pg_url: str) -> None:
    gc = PostgresTaskDB(pg_url, delete_batch=25)
    n, writers = 300, 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, pg_url, str(w), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    deleted = runs = 0
    try:
        while any(p.poll() is None for p in procs):
            deleted += gc.delete_expired()
            runs += 1
        outputs = [p.communicate(timeout=60) for p in procs]
        for w, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
            assert p.returncode == 0 and out.strip() == f"done {w}", err
            assert "Traceback" not in err and "Error" not in err, err
        during = deleted
        deleted += gc.delete_expired()
        live = {f"w{w}-{i:04d}" for w in range(writers) for i in range(n) if i % 3}
        present = set()
        for key, _ in gc.iter_keys_updated():
            present.add(key)
        assert present == live
        # Every expired-only row once, plus any re-saved row caught between its two saves.
        assert writers * n // 3 <= deleted <= 2 * writers * n // 3
        assert gc.delete_expired() == 0
        assert all(gc.get(k)["result_data"] in (b"l", b"r") for k in sorted(live)[::50])
        assert runs >= 2 and during > 0  # gc really deleted while the writers wrote
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        gc.shutdown()
