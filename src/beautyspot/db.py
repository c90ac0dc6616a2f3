"""The task database: protocols, a base class for custom backends, and SQLite.

``SQLiteTaskDB`` is what applications write the cache through.  One writer thread
owns the only write connection; every write is a job on its queue, and the writer
commits whatever is queued in one transaction (group commit) with a savepoint per
job, so each caller still gets its own result or exception.  Reads use per-thread
read-only connections.

``TaskReader`` is the read-only side used by the maintenance tool: no thread, no
migration, no file created, a mistyped path is an error (never a new empty DB).  It
lives in :mod:`beautyspot.reader` and is re-exported here.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import sqlite3
import threading
import time
from _thread import allocate_lock as _allocate_lock
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

from . import readonly as ro
from . import sql as q
from .errors import DBBusyError, DBError, DBNotFoundError  # noqa: F401 (re-export)
from .reader import (  # noqa: F401 (re-export: the read-only side lives in reader.py)
    TaskReader,
    TaskRow,
    connect_readonly,
    describe_sqlite_error,
)
from .timeutil import format_ts, now_utc, parse_instant, to_instant

if TYPE_CHECKING:  # pandas is imported lazily, inside get_history only
    import pandas as pd


class _Log:
    """``logging.getLogger("beautyspot.db")``, imported on first use: read-only paths
    (``show``, completion) never log and should not pay for importing logging."""

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger("beautyspot.db"), name)


log = _Log()

WRITER_THREAD_NAME = "BeautySpot-SQLiteWriter"
DEFAULT_DB_PATH = Path(".beautyspot") / "beautyspot.db"
MAX_PREFIX_RESULTS = ro.MAX_PREFIX_RESULTS
DELETE_BATCH = 2000  # rows per delete transaction: a few ms of write lock each
_GROUP_MAX = 1000  # jobs committed together at most
_POLL = 0.05  # seconds between a waiting caller's checks on the writer and its timeout
# Pages of WAL between the writer's checkpoints (SQLite's default is 1000): see _open_writer.
WAL_AUTOCHECKPOINT = 16000


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


# --------------------------------------------------------------------------- writer


class _Job:
    """One unit of work for the writer thread.

    ``done`` is a bare lock, taken at creation and released by the writer once the
    job has committed or failed; the caller blocks on ``acquire``.  That is one C
    call on each side, where ``threading.Event`` costs a Condition, a waiter lock
    and a notify loop per wakeup (a third of the writer's time in bench_db).
    A group of saves is woken as a chain: ``next`` is the job whose caller this
    job's caller wakes in turn (see ``SQLiteTaskDB._wait``).
    """

    __slots__ = ("fn", "stepper", "sql", "params", "done", "state", "result", "error", "next")
    PENDING, RUNNING, CANCELLED, DONE = 0, 1, 2, 3

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
        self.done = _allocate_lock()
        self.done.acquire()
        self.state = _Job.PENDING
        self.result: Any = None
        self.error: BaseException | None = None
        self.next: _Job | None = None


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
            # Checkpoint (and fsync) every ~64 MB of WAL rather than every 4 MB.  A group
            # commit of 8 random-key rows writes ~40 frames (every index gets its own
            # leaf pages), and each checkpoint copies back most of the DB and fsyncs
            # twice; inside COMMIT, with every caller of the group waiting.  The WAL
            # file keeps its largest size while the DB is open (a journal_size_limit
            # truncating it at each reset cost most of the gain) and goes at close.
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
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
        carry: list = []  # taken off the queue by a group they could not join: next
        while True:
            if carry:
                batch, carry = carry, []
            elif stopping:
                # Past the stop marker only re-queued steps of big deletes remain:
                # finish them, then leave.
                try:
                    batch = [self._queue.get_nowait()]
                except queue.Empty:
                    return
            else:
                batch = [self._queue.get()]
            self._drain(batch)
            i, n = 0, len(batch)
            while i < n:
                # Everything up to the next stepper (or the stop marker) is one group.
                j = i
                while j < n and batch[j] is not _STOP and not batch[j].stepper:
                    j += 1
                group = self._claim(batch[i:j])
                if group:
                    # Only the last group of a batch may take in writes queued since.
                    carry = self._commit_group(conn, group, extend=j == n and not stopping)
                if j < n:
                    if batch[j] is _STOP:
                        stopping = True
                    elif self._claim(batch[j : j + 1]):
                        self._run_step(conn, batch[j])
                i = j + 1

    def _drain(self, batch: list) -> None:
        while len(batch) < _GROUP_MAX:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _claim(self, jobs: list[_Job]) -> list[_Job]:
        """Mark *jobs* running, dropping those their callers cancelled (one lock for all)."""
        with self._lock:
            claimed = [job for job in jobs if job.state != _Job.CANCELLED]
            for job in claimed:
                job.state = _Job.RUNNING
        return claimed

    def _commit_group(
        self, conn: sqlite3.Connection, group: list[_Job], extend: bool = False
    ) -> list:
        """Commit *group* in one transaction, each job with its own result or error.

        With *extend*, a group of saves also takes in the saves queued while it runs
        (see ``_commit_saves``); returns what it took off the queue but could not take
        in, to run next, in order.
        """
        carry: list = []
        if all(job.sql is _SAVE_SQL for job in group):
            if self._commit_saves(conn, group, carry if extend else None):
                return carry
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail_group(group, exc)
            return carry
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
            job.done.release()
        return carry

    def _commit_saves(
        self, conn: sqlite3.Connection, group: list[_Job], carry: list | None
    ) -> bool:
        """The common group, saves only: BEGIN, executemany, COMMIT; False if a row failed.

        Every call into SQLite hands the GIL to the waiting callers and back, so few
        calls per commit matter.  While the transaction is open, the callers released
        by the previous commit queue their next saves; with *carry* (a list) those are
        bound in the same transaction until the queue is empty, so one commit (and its
        WAL frames) serves as many rows as possible.  If anything fails, the whole
        transaction is rolled back and False returned: the careful path then redoes the
        group (as extended) job by job, so one bad row fails alone.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # busy past the timeout: nothing was written
            self._fail_group(group, exc)
            return True
        try:
            conn.executemany(_SAVE_SQL, [job.params for job in group])
            if carry is not None:
                self._take_in_saves(conn, group, carry)
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return False
        # Wake the callers as a chain, the writer only the first: waking a thread can
        # hand it the CPU at once, and a writer descheduled for each of eight wakeups
        # stalls the next group (a quarter of its time in py-spy). DONE lets a caller
        # whose predecessor never passed the wakeup on (interrupted) find out anyway.
        prev = None
        for job in group:
            job.state = _Job.DONE
            if prev is not None:
                prev.next = job
            prev = job
        group[0].done.release()
        return True

    def _take_in_saves(self, conn: sqlite3.Connection, group: list[_Job], carry: list) -> None:
        """Bind the saves queued meanwhile into the open transaction, until none are.

        Stops at the first queued job that is not a save; it and what follows it go to
        *carry*, so the queue order is kept.
        """
        get_nowait = self._queue.get_nowait
        while len(group) < _GROUP_MAX:
            more: list = []
            try:
                while len(group) + len(more) < _GROUP_MAX:
                    more.append(get_nowait())
            except queue.Empty:
                pass
            k = 0
            while k < len(more) and more[k] is not _STOP and more[k].sql is _SAVE_SQL:
                k += 1
            carry.extend(more[k:])
            joined = self._claim(more[:k])
            if joined:
                group.extend(joined)  # first: if this fails, the careful path redoes them
                conn.executemany(_SAVE_SQL, [job.params for job in joined])
            if not k or k < len(more):
                return

    @staticmethod
    def _fail_group(group: list[_Job], exc: BaseException) -> None:
        for job in group:
            job.error = exc
            job.done.release()

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
            job.done.release()
            return
        if done:
            job.result = result
            job.done.release()
        else:
            self._queue.put(job)  # let the writes queued meanwhile go first

    def _fail_pending(self) -> None:
        self._dead = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            # Nothing on the queue has been released: done jobs never go back on it.
            if job is not _STOP:
                job.error = RuntimeError("beautyspot writer thread stopped; write not committed")
                job.done.release()

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
        # Almost always the writer releases the job within the first poll interval.
        if not job.done.acquire(True, _POLL):
            self._wait_long(job)
        if job.next is not None:  # pass the wakeup on along the group
            job.next.done.release()
        if job.error is not None:
            raise job.error
        return job.result

    def _wait_long(self, job: _Job) -> None:
        """Wait for a job past the first poll: watch the writer, cancel on timeout."""
        deadline = time.monotonic() + self.timeout - _POLL
        warned = False
        while not job.done.acquire(True, _POLL):
            if job.state == _Job.DONE:  # committed; the wakeup chain broke before us
                return
            if not self._writer.is_alive():
                if job.done.acquire(False):  # released just before the writer ended
                    return
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

    # -- reading -----------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = ro.file_uri(str(self.db_path.absolute()), "ro")
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
        while not job.done.acquire(True, _POLL):
            if not self._writer.is_alive():
                return job.done.acquire(False) and job.error is None
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
