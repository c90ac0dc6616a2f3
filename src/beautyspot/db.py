"""The task database: protocols, a base class for custom backends, and SQLite.

``SQLiteTaskDB`` is what applications write the cache through.  One writer thread
owns the only write connection; every write is a job on its queue, and the writer
commits whatever is queued in one transaction (group commit) with a savepoint per
job, so each caller still gets its own result or exception.  Reads use per-thread
read-only connections.

``TaskReader`` is the read-only side used by the maintenance tool: no thread, no
migration, no file created, a mistyped path is an error (never a new empty DB).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

from . import readonly as ro
from . import sql as q
from .errors import DBBusyError, DBError, DBNotFoundError  # noqa: F401 (re-export)
from .timeutil import format_ts, now_utc, parse_instant, to_instant

if TYPE_CHECKING:  # pandas is imported lazily, inside get_history only
    import pandas as pd

log = logging.getLogger("beautyspot.db")

WRITER_THREAD_NAME = "BeautySpot-SQLiteWriter"
DEFAULT_DB_PATH = Path(".beautyspot") / "beautyspot.db"
MAX_PREFIX_RESULTS = ro.MAX_PREFIX_RESULTS
DELETE_BATCH = 2000  # rows per delete transaction: a few ms of write lock each
_GROUP_MAX = 1000  # jobs committed together at most


class TaskRecord(TypedDict):
    result_type: str
    result_value: str | None
    result_data: bytes | None
    expires_at: str | None


# --------------------------------------------------------------------------- protocols


@runtime_checkable
class TaskDBCore(Protocol):
    def init_schema(self) -> None: ...

    def get(self, cache_key: str, *, include_expired: bool = False) -> TaskRecord | None: ...

    def save(
        self,
        cache_key: str,
        func_name: str,
        func_identifier: str | None,
        input_id: str,
        version: str | None,
        result_type: str,
        content_type: str | None,
        result_value: str | None = None,
        result_data: bytes | None = None,
        expires_at: dt.datetime | str | None = None,
    ) -> None: ...

    def delete(self, cache_key: str) -> bool: ...


@runtime_checkable
class Flushable(Protocol):
    def flush(self, timeout: float | None = None) -> bool: ...


@runtime_checkable
class Shutdownable(Protocol):
    def shutdown(self, wait: bool = True) -> None: ...


@runtime_checkable
class Maintenable(Protocol):
    def delete_expired(self) -> int: ...

    def prune(self, older_than: dt.datetime, func_name: str | None = None) -> int: ...

    def get_outdated_tasks(
        self, older_than: dt.datetime, func_name: str | None = None
    ) -> list[tuple[str, str, str]]: ...

    def get_blob_refs(self) -> set[str] | None: ...

    def delete_all(self, func_name: str | None = None) -> int: ...

    def get_keys_start_with(self, prefix: str) -> list[str]: ...

    def get_history(self, limit: int = 1000) -> pd.DataFrame: ...


@runtime_checkable
class TaskDBMaintenable(TaskDBCore, Maintenable, Protocol):
    """A backend that both stores tasks and supports maintenance."""


class TaskDBBase(ABC):
    """Base for custom backends (PostgreSQL, Redis...).

    Subclasses implement the four core methods; the maintenance methods default to
    harmless answers (nothing deleted, nothing found).  ``get_blob_refs`` returning
    None means "unknown", and maintenance then never treats a blob as an orphan.
    Backends are called from several threads and must be thread-safe.
    """

    @abstractmethod
    def init_schema(self) -> None: ...

    @abstractmethod
    def get(self, cache_key: str, *, include_expired: bool = False) -> TaskRecord | None: ...

    @abstractmethod
    def save(
        self,
        cache_key: str,
        func_name: str,
        func_identifier: str | None,
        input_id: str,
        version: str | None,
        result_type: str,
        content_type: str | None,
        result_value: str | None = None,
        result_data: bytes | None = None,
        expires_at: dt.datetime | str | None = None,
    ) -> None: ...

    @abstractmethod
    def delete(self, cache_key: str) -> bool: ...

    def delete_expired(self) -> int:
        return 0

    def prune(self, older_than: dt.datetime, func_name: str | None = None) -> int:
        return 0

    def get_outdated_tasks(
        self, older_than: dt.datetime, func_name: str | None = None
    ) -> list[tuple[str, str, str]]:
        return []

    def get_blob_refs(self) -> set[str] | None:
        return None

    def delete_all(self, func_name: str | None = None) -> int:
        return 0

    def get_keys_start_with(self, prefix: str) -> list[str]:
        return []

    def get_history(self, limit: int = 1000) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame()

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def shutdown(self, wait: bool = True) -> None:
        return None


# --------------------------------------------------------------------------- read-only


_is_wal_without_log = ro.is_wal_without_log


def connect_readonly(path: str | os.PathLike, timeout: float = 5.0) -> sqlite3.Connection:
    """Open *path* read-only; create nothing; raise DBError subclasses on failure."""
    conn = ro.open_readonly(path, timeout)
    q.register_functions(conn)
    return conn


def describe_sqlite_error(path: object, exc: sqlite3.Error) -> DBError:
    """Map an sqlite3 error on *path* to the library's exception, one line."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "locked" in text or "busy" in text:
        return DBBusyError(f"{path}: database is locked (still busy after the timeout)")
    if "not a database" in text or "malformed" in text or "file is" in text:
        return DBError(f"{path}: not a valid SQLite database ({text})")
    return DBError(f"{path}: {text}")


def _torn_tail(path: Path) -> str | None:
    """Why *path* is shorter than its own header says (its end was lost), else None.

    SQLite reads missing pages as zeros and only fails on a query that touches one, so
    a torn tail can look healthy.  Not checked while a ``-wal`` or ``-journal`` exists:
    recovery may still change the size legitimately.
    """
    if any(os.path.exists(f"{path}{s}") for s in ("-wal", "-journal")):
        return None
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if len(header) < 100 or header[:16] != b"SQLite format 3\x00":
        return None
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count is valid only if its change counter matches (offset 92).
    if pages and header[24:28] == header[92:96] and size < pages * page:
        return f"truncated: {size} bytes, its header says {pages * page}"
    return None


class TaskReader:
    """Read-only access to one task DB, for the maintenance tool and completion.

    Works on old schemas (missing columns read as NULL) and read-only files.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 5.0):
        self.path = Path(path)
        torn = _torn_tail(self.path)
        if torn is not None:
            raise DBError(f"{self.path}: not a valid SQLite database ({torn})")
        self.conn = connect_readonly(self.path, timeout)
        try:
            schema = q.read_schema(self.conn)
        except sqlite3.Error as exc:
            self.conn.close()
            raise describe_sqlite_error(self.path, exc) from None
        if schema is None:
            self.conn.close()
            raise DBError(f"{self.path}: no 'tasks' table (not a beautyspot task DB)")
        self.schema = schema

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> TaskReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, sql: str, params: Any = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise describe_sqlite_error(self.path, exc) from None

    def count(self) -> int:
        return self._run("SELECT count(*) FROM tasks")[0][0]

    def max_rowid(self) -> int:
        """The highest rowid (0 for an empty table): rows saved later get higher ones."""
        return self._run("SELECT coalesce(max(rowid), 0) FROM tasks")[0][0]

    def get_row(self, cache_key: str) -> TaskRow | None:
        rows = self._run(
            f"SELECT {q.row_select(self.schema)} FROM tasks WHERE cache_key = CAST(? AS TEXT)",
            (q.text_param(cache_key),),
        )
        return q.TaskRow.from_sql(rows[0]) if rows else None

    def get_payload(self, cache_key: str) -> bytes | None:
        rows = self._run(
            f"SELECT {self.schema.col('result_data')} FROM tasks WHERE cache_key = CAST(? AS TEXT)",
            (q.text_param(cache_key),),
        )
        return rows[0][0] if rows else None

    def keys_with_prefix(self, prefix: str, limit: int = MAX_PREFIX_RESULTS) -> list[str]:
        """Keys starting with *prefix* (case-sensitive, wildcards literal), sorted."""
        try:
            return ro.keys_with_prefix(self.conn, prefix, limit)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(self.path, exc) from None

    def functions_with_prefix(self, prefix: str, limit: int = MAX_PREFIX_RESULTS) -> list[str]:
        """Distinct function names (short and qualified) starting with *prefix*."""
        try:
            return ro.functions_with_prefix(self.conn, self.schema.columns, prefix, limit)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(self.path, exc) from None

    def iter_rows(self, rfilter: q.RowFilter, batch: int = 5000) -> Iterator[q.TaskRow]:
        try:
            yield from q.iter_rows(self.conn, self.schema, rfilter, batch)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(self.path, exc) from None

    def iter_blob_locations(self) -> Iterator[object]:
        """result_value of every row that has one (one row each: counts matter)."""
        if not self.schema.has("result_value"):
            return
        try:
            cur = self.conn.execute("SELECT result_value FROM tasks WHERE result_value IS NOT NULL")
            for (location,) in cur:
                yield location
        except sqlite3.Error as exc:
            raise describe_sqlite_error(self.path, exc) from None

    def blob_refs(self) -> set[str]:
        """Every blob location any row names (conservative: any non-NULL result_value)."""
        col = self.schema.col("result_value")
        return {
            r[0]
            for r in self._run(f"SELECT DISTINCT {col} FROM tasks WHERE {col} IS NOT NULL")
            if isinstance(r[0], str)
        }

    def _stream(self, sql: str, params: Any = ()) -> Iterator[tuple]:
        try:
            yield from self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(self.path, exc) from None

    def iter_matching(self, rfilter: q.RowFilter) -> Iterator[tuple]:
        """(cache_key, function, inline bytes, julianday of updated_at or None,
        result_value, updated_at) of every matching row, streamed: one scan."""
        cond, params = rfilter.where(self.schema)
        s = self.schema
        return self._stream(
            f"SELECT cache_key, {s.function}, length({s.col('result_data')}),"
            f" {q.order_key_sql(s.col('updated_at'))}, {s.col('result_value')},"
            f" {s.col('updated_at')} FROM tasks WHERE {cond}",
            params,
        )

    def integrity_check(self, full: bool = False) -> list[str]:
        """``PRAGMA quick_check`` (or ``integrity_check``): ['ok'] when healthy."""
        pragma = "integrity_check" if full else "quick_check"
        return [str(r[0]) for r in self._run(f"PRAGMA {pragma}")]

    def unparsable_timestamps(self) -> tuple[int, int]:
        """Rows whose updated_at, and rows whose (non-NULL) expires_at, is not a timestamp."""
        s = self.schema
        upd = s.col("updated_at")
        exp = s.col("expires_at")
        row = self._run(
            f"SELECT total(NOT coalesce({q.valid_ts_sql(upd)}, 0)),"
            f" total({exp} IS NOT NULL AND NOT coalesce({q.valid_ts_sql(exp)}, 0)) FROM tasks"
        )[0]
        return int(row[0]), int(row[1])

    def iter_payloads(self) -> Iterator[tuple[str, object, bytes | None]]:
        """(cache_key, result_value, result_data) of every row, streamed."""
        s = self.schema
        return self._stream(
            f"SELECT cache_key, {s.col('result_value')}, {s.col('result_data')} FROM tasks"
        )

    def iter_by_recency(self, live_at: int) -> Iterator[tuple[int, float | None, int, int, object]]:
        """Rows not expired at *live_at*, most recently updated first, for size budgets.

        Yields (unparsable, julianday, rowid, inline bytes, result_value).  Rows whose
        updated_at is unparsable come first: never old, they are evicted last.
        """
        s = self.schema
        cond, params = q.RowFilter(live_at=live_at).where(s)
        key = q.order_key_sql(s.col("updated_at"))
        return self._stream(
            f"SELECT {key} IS NULL, {key}, rowid, length({s.col('result_data')}),"
            f" {s.col('result_value')} FROM tasks WHERE {cond}"
            f" ORDER BY {key} IS NULL DESC, {key} DESC, rowid DESC",
            params,
        )

    def summary(self, now_instant: int) -> tuple[int, str | None, str | None]:
        """(expired rows, oldest, newest updated_at as UTC text) in one scan."""
        s = self.schema
        cond, params = q.RowFilter(expired_before=now_instant).where(s)
        key = q.order_key_sql(s.col("updated_at"))
        expired, lo, hi = self._run(
            # CASE, not a bare boolean: SQLite short-circuits AND only in jump code.
            f"SELECT total(CASE WHEN {cond} THEN 1 END),"
            f" strftime('%Y-%m-%d %H:%M:%S', min({key})),"
            f" strftime('%Y-%m-%d %H:%M:%S', max({key})) FROM tasks",
            params,
        )[0]
        return int(expired), lo, hi

    def list_tasks(self, rfilter: q.RowFilter, limit: int | None) -> list[q.TaskRow]:
        """Matching rows, newest first (by instant; unparsable timestamps last)."""
        cond, params = rfilter.where(self.schema)
        s = self.schema
        lim = "" if limit is None else f" LIMIT {int(limit)}"
        return [
            q.TaskRow.from_sql(r)
            for r in self._run(
                f"SELECT {q.row_select(s)} FROM tasks WHERE {cond}"
                f" ORDER BY {q.order_key_sql(s.col('updated_at'))} DESC, rowid DESC{lim}",
                params,
            )
        ]


TaskRow = q.TaskRow


# --------------------------------------------------------------------------- writer


class _Job:
    """One unit of work for the writer thread."""

    __slots__ = ("fn", "stepper", "sql", "params", "event", "state", "result", "error")
    PENDING, RUNNING, CANCELLED = 0, 1, 2

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any] | None,
        stepper: bool = False,
        sql: str | None = None,
        params: tuple = (),
    ):
        self.fn = fn
        # A stepper runs one bounded transaction per turn and is re-queued until it
        # returns (True, result): big deletes let other writes in between batches.
        self.stepper = stepper
        # A plain statement job (fn None, sql set): consecutive ones with the same SQL
        # are bound in one executemany call; SQLite undoes a failed statement by itself.
        self.sql = sql
        self.params = params
        self.event = threading.Event()
        self.state = _Job.PENDING
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()

_SAVE_SQL = (
    "INSERT OR REPLACE INTO tasks (cache_key, func_name, func_identifier, input_id, version,"
    " result_type, content_type, result_value, result_data, expires_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SQLiteTaskDB(TaskDBBase):
    """The default backend: one SQLite file in WAL mode, written by one thread.

    ``timeout`` bounds both SQLite's busy wait and how long a queued write may wait
    to start; a write that has started is always awaited to the end, because
    reporting failure for a write that then commits would be a lie.
    """

    def __init__(
        self,
        db_path: str | os.PathLike | None = None,
        timeout: float = 30.0,
        *,
        clock: Callable[[], dt.datetime] = now_utc,
    ):
        self.db_path = Path(db_path) if db_path is not None else DEFAULT_DB_PATH
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = False
        self._dead = False
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._ensure_parent()
        ready = threading.Event()
        startup: list[BaseException] = []
        self._writer = threading.Thread(
            target=self._writer_main, args=(ready, startup), name=WRITER_THREAD_NAME, daemon=True
        )
        self._writer.start()
        ready.wait()
        if startup:
            self._writer.join()
            raise startup[0]
        self.init_schema()

    # -- setup -----------------------------------------------------------------------

    def _ensure_parent(self) -> None:
        parent = self.db_path.parent
        if not parent.exists():
            parent.mkdir(parents=True, exist_ok=True)
            (parent / ".gitignore").write_text("*\n")

    def _open_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint (and fsync) every ~16 MB of WAL rather than every 4 MB: small
            # group commits otherwise spend much of their time in checkpoints.
            conn.execute("PRAGMA wal_autocheckpoint=4000")
            q.register_functions(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- writer thread -----------------------------------------------------------------

    def _writer_main(self, ready: threading.Event, startup: list[BaseException]) -> None:
        try:
            conn = self._open_writer()
        except BaseException as exc:  # reported to the constructor
            startup.append(exc)
            self._dead = True
            ready.set()
            return
        ready.set()
        try:
            self._writer_loop(conn)
        finally:
            conn.close()
            self._fail_pending()

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while True:
            if stopping:
                # Past the stop marker only re-queued steps of big deletes remain:
                # finish them, then leave.
                try:
                    first = self._queue.get_nowait()
                except queue.Empty:
                    return
            else:
                first = self._queue.get()
            batch = [first]
            self._drain(batch)
            group: list[_Job] = []
            for job in batch:
                if job is _STOP:
                    stopping = True
                    continue
                with self._lock:
                    if job.state == _Job.CANCELLED:
                        continue
                    job.state = _Job.RUNNING
                if job.stepper:
                    self._commit_group(conn, group)
                    group = []
                    self._run_step(conn, job)
                else:
                    group.append(job)
            self._commit_group(conn, group)

    def _drain(self, batch: list) -> None:
        while len(batch) < _GROUP_MAX:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        if not group:
            return
        if self._commit_fast(conn, group):
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for job in group:
                job.error = exc
                job.event.set()
            return
        i = 0
        while i < len(group):
            job = group[i]
            if job.sql is not None:
                j = i + 1
                while j < len(group) and group[j].sql == job.sql:
                    j += 1
                self._run_statements(conn, group[i:j])
                i = j
                continue
            i += 1
            if job.fn is None:  # a flush barrier
                job.result = True
                continue
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.fn(conn)
            except Exception as exc:  # the job's own failure: undo it alone
                conn.execute("ROLLBACK TO job")
                job.error = exc
            conn.execute("RELEASE job")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in group:
                if job.error is None:
                    job.error, job.result = exc, None
        for job in group:
            job.event.set()

    @staticmethod
    def _commit_fast(conn: sqlite3.Connection, group: list[_Job]) -> bool:
        """The common group, saves only: BEGIN, one executemany, COMMIT.

        Every call into SQLite hands the GIL to the waiting callers and back, so
        three calls instead of five per commit matter.  If anything fails, the whole
        transaction is rolled back and False returned: the careful path then redoes
        the group job by job, so one bad row fails alone.
        """
        # Saves only: their callers need no per-row result (a delete needs its rowcount).
        if len(group) < 2 or any(job.sql is not _SAVE_SQL for job in group):
            return False
        sql = _SAVE_SQL
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, [job.params for job in group])
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return False
        for job in group:
            job.event.set()
        return True

    @staticmethod
    def _run_statements(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Run statement jobs sharing one SQL: all at once, or one by one if any fails."""
        if len(jobs) > 1:
            conn.execute("SAVEPOINT many")
            try:
                conn.executemany(jobs[0].sql, [job.params for job in jobs])
            except Exception:
                conn.execute("ROLLBACK TO many")  # find the culprit below
            else:
                conn.execute("RELEASE many")
                return
            conn.execute("RELEASE many")
        for job in jobs:
            try:  # one statement: SQLite undoes it alone if it fails
                job.result = conn.execute(job.sql, job.params).rowcount
            except Exception as exc:
                job.error = exc

    def _run_step(self, conn: sqlite3.Connection, job: _Job) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            done, result = job.fn(conn)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            job.error = exc
            job.event.set()
            return
        if done:
            job.result = result
            job.event.set()
        else:
            self._queue.put(job)  # let the writes queued meanwhile go first

    def _fail_pending(self) -> None:
        self._dead = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and not job.event.is_set():
                job.error = RuntimeError("beautyspot writer thread stopped; write not committed")
                job.event.set()

    # -- submitting --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("SQLiteTaskDB is shutting down")
        if self._dead:
            raise RuntimeError("beautyspot writer thread is dead")

    def _submit(
        self,
        fn: Callable | None,
        *,
        stepper: bool = False,
        sql: str | None = None,
        params: tuple = (),
    ) -> Any:
        job = _Job(fn, stepper, sql, params)
        with self._lock:
            self._check_open()
            self._queue.put(job)
        return self._wait(job)

    def _wait(self, job: _Job) -> Any:
        deadline = time.monotonic() + self.timeout
        warned = False
        while not job.event.wait(0.05):
            if not self._writer.is_alive() and not job.event.is_set():
                raise RuntimeError("beautyspot writer thread died; the write was not committed")
            if time.monotonic() >= deadline:
                with self._lock:
                    if job.state == _Job.PENDING:
                        job.state = _Job.CANCELLED
                        raise TimeoutError(
                            f"write to {self.db_path} did not start within {self.timeout}s"
                        )
                if not warned:
                    log.warning("write to %s is slow; waiting for it to commit", self.db_path)
                    warned = True
        if job.error is not None:
            raise job.error
        return job.result

    # -- reading -----------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = "file:" + ro.uri_quote(str(self.db_path.absolute())) + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            q.register_functions(conn)
            with self._lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def _read(self, sql: str, params: Any = ()) -> list[tuple]:
        return self._with_reader(lambda conn: conn.execute(sql, params).fetchall())

    def _with_reader(self, query: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run *query* on this thread's read connection."""
        conn = self._reader()
        try:
            return query(conn)
        except sqlite3.Error:
            # A connection that failed may be in a bad state: drop it, reopen next time.
            self._local.conn = None
            with self._lock:
                if conn in self._readers:
                    self._readers.remove(conn)
            conn.close()
            raise

    # -- core API ----------------------------------------------------------------------

    def init_schema(self) -> None:
        """Create the table, add columns an old DB lacks, create the indexes."""

        def migrate(conn: sqlite3.Connection) -> None:
            conn.execute(q.CREATE_TABLE)
            present = q.read_schema(conn)
            for name, kind in q.MIGRATED_COLUMNS:
                if present is not None and present.has(name):
                    continue
                try:
                    conn.execute(f"ALTER TABLE tasks ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column name" not in str(exc):
                        raise  # another process migrating at once is fine; the rest is not
            q.ensure_indexes(conn, q.read_schema(conn))

        self._submit(migrate)

    def get(
        self,
        cache_key: str,
        *,
        include_expired: bool = False,
        now: dt.datetime | None = None,
    ) -> TaskRecord | None:
        rows = self._read(
            "SELECT result_type, result_value, result_data, expires_at FROM tasks"
            " WHERE cache_key = ?",
            (cache_key,),
        )
        if not rows:
            return None
        result_type, result_value, result_data, expires_at = rows[0]
        if not include_expired and expires_at is not None:
            expiry = parse_instant(expires_at)
            if expiry is not None and expiry < to_instant(now or self._clock()):
                return None
        return TaskRecord(
            result_type=result_type,
            result_value=result_value,
            result_data=result_data,
            expires_at=expires_at,
        )

    def save(
        self,
        cache_key: str,
        func_name: str,
        func_identifier: str | None,
        input_id: str,
        version: str | None,
        result_type: str,
        content_type: str | None,
        result_value: str | None = None,
        result_data: bytes | None = None,
        expires_at: dt.datetime | str | None = None,
    ) -> None:
        if isinstance(expires_at, dt.datetime):
            expires_at = format_ts(expires_at)
        row = (
            cache_key,
            func_name,
            func_identifier if func_identifier is not None else func_name,
            input_id,
            version,
            result_type,
            content_type,
            result_value,
            result_data,
            expires_at,
            format_ts(self._clock()),
        )

        self._submit(None, sql=_SAVE_SQL, params=row)

    def delete(self, cache_key: str) -> bool:
        rowcount = self._submit(
            None, sql="DELETE FROM tasks WHERE cache_key = ?", params=(cache_key,)
        )
        return bool(rowcount)

    # -- maintenance ---------------------------------------------------------------------

    def _delete_matching(self, rfilter: q.RowFilter) -> int:
        """Delete every row matching *rfilter*, DELETE_BATCH rows per transaction."""
        state: dict[str, Any] = {"after": None, "total": 0}

        def step(conn: sqlite3.Connection) -> tuple[bool, int]:
            schema = q.read_schema(conn)
            rows, state["after"] = q.select_batch(
                conn, schema, rfilter, state["after"], DELETE_BATCH
            )
            state["total"] += q.delete_rowids(conn, [r.rowid for r in rows])
            return len(rows) < DELETE_BATCH, state["total"]

        return int(self._submit(step, stepper=True))

    def _cutoff(self, older_than: dt.datetime | dt.timedelta) -> int:
        if isinstance(older_than, dt.timedelta):
            return to_instant(self._clock() - older_than)
        return to_instant(older_than)

    def delete_expired(self, now: dt.datetime | None = None) -> int:
        """Delete rows whose expiry is before *now* (default: the clock); returns count."""
        return self._delete_matching(q.RowFilter(expired_before=to_instant(now or self._clock())))

    def prune(self, older_than: dt.datetime | dt.timedelta, func_name: str | None = None) -> int:
        """Delete rows last updated before *older_than* (a cutoff, or an age)."""
        return self._delete_matching(
            q.RowFilter(updated_before=self._cutoff(older_than), func=func_name)
        )

    def delete_all(self, func_name: str | None = None) -> int:
        return self._delete_matching(q.RowFilter(func=func_name))

    def get_outdated_tasks(
        self, older_than: dt.datetime | dt.timedelta, func_name: str | None = None
    ) -> list[tuple[str, str, str]]:
        """(cache_key, function, updated_at) of rows prune() would delete, oldest first."""
        rfilter = q.RowFilter(updated_before=self._cutoff(older_than), func=func_name)
        conn = self._reader()
        schema = q.read_schema(conn)
        rows = list(q.iter_rows(conn, schema, rfilter))
        rows.sort(key=lambda r: parse_instant(r.updated_at) or 0)
        return [(r.cache_key, r.function, r.updated_at) for r in rows]

    def get_blob_refs(self) -> set[str]:
        return {
            r[0]
            for r in self._read(
                "SELECT DISTINCT result_value FROM tasks WHERE result_value IS NOT NULL"
            )
            if isinstance(r[0], str)
        }

    def get_keys_start_with(self, prefix: str) -> list[str]:
        """Up to 50 keys starting with *prefix*, sorted; ``%`` and ``_`` are literal."""
        return self._with_reader(lambda conn: ro.keys_with_prefix(conn, prefix))

    def get_history(self, limit: int = 1000) -> pd.DataFrame:
        """The latest *limit* tasks, newest first (by instant, not by string)."""
        import pandas as pd

        columns = [c for c in q.TASK_COLUMNS if c != "result_data"]
        rows = self._read(
            f"SELECT {', '.join(columns)} FROM tasks"
            f" ORDER BY {q.order_key_sql('updated_at')} DESC, updated_at DESC LIMIT ?",
            (int(limit),),
        )
        return pd.DataFrame(rows, columns=columns)

    def flush(self, timeout: float | None = None) -> bool:
        """True once every write queued before this call has committed."""
        job = _Job(None)
        with self._lock:
            if self._closing or self._dead:
                return False
            self._queue.put(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not job.event.wait(0.05):
            if not self._writer.is_alive():
                return job.event.is_set() and job.error is None
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return job.error is None

    def shutdown(self, wait: bool = True) -> None:
        """Drain pending writes, stop the writer, close readers. Idempotent."""
        with self._lock:
            first = not self._closing
            self._closing = True
            readers, self._readers = self._readers, []
        # Readers first: the writer, closing last, then checkpoints and removes -wal/-shm.
        for conn in readers:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        if first:
            self._queue.put(_STOP)
        if wait:
            self._writer.join()

    @staticmethod
    def count_tasks(db_path: str | os.PathLike, timeout: float = 5.0) -> int:
        """Row count read without a writer thread or any write; -1 on any error."""
        try:
            conn = connect_readonly(db_path, timeout)
        except DBError:
            return -1
        try:
            return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])
        except sqlite3.Error:
            return -1
        finally:
            conn.close()

    def __enter__(self) -> SQLiteTaskDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
