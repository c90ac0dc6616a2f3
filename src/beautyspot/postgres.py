"""A task DB on PostgreSQL, for caches shared by workers on several machines (issue 8).

``PostgresTaskDB`` has the methods and semantics of :class:`beautyspot.db.SQLiteTaskDB`
(SPEC §4) over psycopg 3 and a ``psycopg_pool.ConnectionPool``; it is thread-safe.

Decisions:

* **Types.** ``expires_at``/``updated_at`` are ``timestamptz`` and ``result_data`` is
  ``bytea``, so the server compares instants, not strings: expiry and prune are plain
  indexed range predicates.  A ``str`` expiry handed to :meth:`save` is parsed with
  :func:`beautyspot.timeutil.parse_datetime` (naive = UTC); one that does not parse raises
  ``ValueError`` and writes nothing (a SQLite DB would keep the text, never expiring it; a
  ``timestamptz`` column cannot hold it).  Timestamps come back as upstream's text form
  (:func:`~beautyspot.timeutil.format_ts`), so ``TaskRecord["expires_at"]`` is a ``str``
  as with SQLite, normalised to UTC.
* **``cache_key text COLLATE "C"``.**  Byte order (= code-point order in UTF-8), whatever
  the database's default collation: key ordering matches SQLite's, and a prefix is the
  index range ``cache_key >= p AND cache_key < next(p)``.  Under a linguistic collation
  that range is not "starts with p" (``aB`` sorts between ``ab`` and ``ac``).  On an older
  table whose key column has another collation, prefix queries and key order say
  ``COLLATE "C"`` explicitly: still correct, but no longer answered by the index.
* **Text limits.** PostgreSQL ``text`` cannot hold NUL, and UTF-8 cannot hold lone
  surrogates: :meth:`save`/:meth:`save_many` raise ``ValueError`` for such a field (nothing
  written); :meth:`get`, :meth:`delete` and :meth:`get_keys_start_with` answer "no such
  key".  Non-UTF-8 bytes cannot reach this backend (Python ``str`` only).
* **Writes are synchronous.**  Each call checks a connection out of the pool, runs, and
  commits (autocommit: one statement is one transaction) before returning; there is no
  writer thread and no queue, so :meth:`flush` has nothing to wait for.
* **``timeout``** bounds (1) the wait for a free pool connection, raising
  ``TimeoutError``, (2) any lock wait on the server (``lock_timeout``), raising
  :class:`~beautyspot.errors.DBBusyError` (the statement was rolled back: nothing was
  written), and (3) connecting (``connect_timeout``, whole seconds).  A statement that
  is merely slow is not cut off: as with SQLite, a write that has started is awaited.
* **Errors.** Connection failures are :class:`~beautyspot.errors.DBError` with libpq's
  first line (no password: it is redacted from any message).  Other server errors
  (``psycopg.Error`` subclasses, e.g. ``UndefinedTable``) propagate as they are.
* **Bounded deletes.** prune/delete_expired/delete_all delete ``delete_batch`` rows per
  committed statement, in the order of the index that drives them, each batch starting
  where the previous one ended.  Rows locked by an in-flight write are skipped
  (``FOR UPDATE SKIP LOCKED``): that write decides their fate, and a deleter never waits
  behind it; the next run sees them.  A crash between batches leaves whole batches done.
* **Maintenance lock.** :meth:`maintenance_lock` is a session advisory lock held on a
  dedicated connection: one maintenance run per database, across machines.  Should that
  connection drop, the server releases the lock (the run is then unprotected; release
  logs a warning).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .db import MAX_PREFIX_RESULTS, TaskDBBase, TaskRecord, log
from .errors import DBBusyError, DBError, LockHeldError
from .readonly import next_prefix
from .sql import TASK_COLUMNS
from .timeutil import UTC, format_ts, now_utc, parse_datetime

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

DEFAULT_DELETE_BATCH = 5000
_CLOSED_MESSAGE = "PostgresTaskDB is shutting down"
_INSTALL_HINT = "PostgreSQL support needs: pip install 'beautyspot[scaleout]'"
# Advisory lock keys (two int4 form: pg_locks.classid, objid; objsubid = 2).
LOCK_CLASS = 0x62737074  # "bspt"
LOCK_SCHEMA = 1  # init_schema, transaction-scoped
LOCK_MAINTENANCE = 2  # maintenance runs, session-scoped
_LOCK_POLL = 0.1

# (column, type) in upstream's order; every column but the key may be added by migration.
COLUMNS = (
    ("cache_key", 'text COLLATE "C" PRIMARY KEY'),
    ("func_name", "text"),
    ("func_identifier", "text"),
    ("input_id", "text"),
    ("result_type", "text"),
    ("result_value", "text"),
    ("result_data", "bytea"),
    ("content_type", "text"),
    ("version", "text"),
    ("expires_at", "timestamptz"),
    ("updated_at", "timestamptz NOT NULL DEFAULT now()"),
)
INDEXES = {
    "idx_func_identifier": "ON tasks (func_identifier)",
    "idx_func_name": "ON tasks (func_name)",
    "idx_expires_at": "ON tasks (expires_at)",
    "idx_updated_at": "ON tasks (updated_at)",
    "idx_result_value": "ON tasks (result_value) WHERE result_value IS NOT NULL",
}
# save() argument order, then updated_at.
SAVE_COLUMNS = (
    "cache_key",
    "func_name",
    "func_identifier",
    "input_id",
    "version",
    "result_type",
    "content_type",
    "result_value",
    "result_data",
    "expires_at",
    "updated_at",
)
_TEXT_FIELDS = tuple(i for i, c in enumerate(SAVE_COLUMNS) if c not in ("result_data",))
_UPSERT_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in SAVE_COLUMNS[1:])
_SAVE_SQL = (
    f"INSERT INTO tasks ({', '.join(SAVE_COLUMNS)})"
    f" VALUES ({', '.join(['%s'] * len(SAVE_COLUMNS))})"
    f" ON CONFLICT (cache_key) DO UPDATE SET {_UPSERT_SET}"
)
_HISTORY_COLUMNS = tuple(c for c in TASK_COLUMNS if c != "result_data")
_FUNC_PRED = "(func_name = %(func)s OR func_identifier = %(func)s)"

_mods: SimpleNamespace | None = None


def _psycopg() -> SimpleNamespace:
    """psycopg and psycopg_pool, imported on first use (``beautyspot.db`` never does)."""
    global _mods
    if _mods is None:
        try:
            import psycopg
            import psycopg.conninfo
            import psycopg.errors
            import psycopg_pool
        except ImportError:
            raise DBError(_INSTALL_HINT) from None
        _mods = SimpleNamespace(
            psycopg=psycopg,
            errors=psycopg.errors,
            conninfo=psycopg.conninfo,
            pool=psycopg_pool,
        )
    return _mods


# --------------------------------------------------------------------------- helpers


def _secrets(url: str) -> list[str]:
    """Password forms that may appear in *url* (raw and decoded), longest first."""
    found: set[str] = set()
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            found.add(parts.password)
            found.add(urllib.parse.unquote(parts.password))
        for key, value in urllib.parse.parse_qsl(parts.query):
            if key == "password" and value:
                found.add(value)
    except ValueError:
        pass
    # Also when the URL does not parse: whatever sits between "user:" and "@".
    found.update(m for m in re.findall(r"://[^/:@?#]*:([^@]+)@", url) if m)
    for word in url.replace("?", " ").replace("&", " ").split():
        if word.startswith("password=") and len(word) > 9:
            found.add(word[9:].strip("'\""))
    return sorted(found, key=len, reverse=True)


def _one_line(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    for secret in secrets:
        line = line.replace(secret, "***")
    return line


def _describe(params: dict[str, Any]) -> str:
    """``database 'x' on host:port`` for messages (never the password)."""
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    name = params.get("dbname") or params.get("user") or "?"
    return f"PostgreSQL database {name!r} on {host}:{port}"


def check_text(field: str, value: object) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{field} contains a NUL character: PostgreSQL text cannot hold it")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{field} is not valid Unicode (lone surrogate)") from None


def _storable(text: str) -> bool:
    """Whether *text* can be a stored key at all (else no row can match it)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _to_datetime(value: object, field: str) -> dt.datetime | None:
    """An expiry or update time as an aware datetime: datetime (naive = UTC) or text."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _aware(value)
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"unparsable {field} {value!r}")
        return parsed
    raise TypeError(f"{field} must be a datetime, a str or None, not {type(value).__name__}")


def _text_ts(value: dt.datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def connection_options(url: str, timeout: float, app: str) -> tuple[list[str], str, dict]:
    """(password forms to redact, ``where`` for messages, psycopg.connect keyword args) of
    *url*: autocommit, an ``application_name`` of *app*@host:pid naming this process in
    pg_stat_activity (and in a LockHeldError message), a ``connect_timeout`` from
    *timeout* (each unless the URL sets it).  An invalid URL is a one-line DBError."""
    pg = _psycopg()
    secrets = _secrets(url)
    try:
        params = pg.conninfo.conninfo_to_dict(url)
    except pg.psycopg.Error as exc:
        raise DBError(f"invalid PostgreSQL URL: {_one_line(exc, secrets)}") from None
    kwargs: dict[str, Any] = {"autocommit": True}
    if "application_name" not in params:
        kwargs["application_name"] = f"{app}@{socket.gethostname()}:{os.getpid()}"
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = max(2, math.ceil(timeout))
    return secrets, _describe(params), kwargs


def configure_session(
    conn: psycopg.Connection, timeout: float, read_only: bool | None = None
) -> None:
    """Every connection's settings: lock waits bounded by *timeout*, UTC; with *read_only*
    True (False) the session's transactions are (are not) read-only, None leaves the
    server's default."""
    sql = "SELECT set_config('lock_timeout', %s, false), set_config('TimeZone', 'UTC', false)"
    params: tuple = (f"{max(1, int(timeout * 1000))}ms",)
    if read_only is not None:
        sql += ", set_config('default_transaction_read_only', %s, false)"
        params += ("on" if read_only else "off",)
    conn.execute(sql, params)


def acquire_maintenance_lock(conn: psycopg.Connection, wait: float, where: str) -> None:
    """Take the database's maintenance lock (a session advisory lock) on *conn*, retrying
    for *wait* seconds; then LockHeldError naming the holder."""
    deadline = time.monotonic() + max(0.0, wait)
    while not conn.execute(
        "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, LOCK_MAINTENANCE)
    ).fetchone()[0]:
        if time.monotonic() >= deadline:
            raise LockHeldError(
                f"another maintenance run holds the lock on {where}: "
                f"{PostgresTaskDB._lock_holder(conn)}"
            )
        time.sleep(_LOCK_POLL)


def prefix_query(prefix: str, limit: int, key: str) -> tuple[str, tuple]:
    """SQL and parameters of the keys starting with *prefix* (*key*: the key column in
    byte order), an index range; at most *limit*, sorted."""
    end = next_prefix(prefix)
    if end is None:  # empty, or only U+10FFFF characters: no upper bound exists
        return (
            f"SELECT cache_key FROM tasks WHERE {key} >= %s ORDER BY {key} LIMIT %s",
            (prefix, limit),
        )
    return (
        f"SELECT cache_key FROM tasks WHERE {key} >= %s AND {key} < %s ORDER BY {key} LIMIT %s",
        (prefix, end, limit),
    )


def updated_at_of(fetch: Callable[[str, Any], list[tuple]], keys: Sequence[str]) -> dict[str, str]:
    """``updated_at`` (text) of those of *keys* the table holds, through *fetch*."""
    wanted = [k for k in keys if _storable(k)]
    if not wanted:
        return {}
    rows = fetch("SELECT cache_key, updated_at FROM tasks WHERE cache_key = ANY(%s)", (wanted,))
    return {key: format_ts(updated) for key, updated in rows}


# --------------------------------------------------------------------------- backend


class PostgresTaskDB(TaskDBBase):
    """The task DB on a PostgreSQL server (see the module docstring for the decisions).

    *url* is a libpq URL or conninfo (``postgresql://user@host/db``, ``?host=/socket/dir``).
    *pool_size* caps the connections this instance opens (one is kept open); *clock*
    gives ``updated_at`` and the default "now" of expiry checks.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        *,
        clock: Callable[[], dt.datetime] = now_utc,
        pool_size: int = 8,
        delete_batch: int = DEFAULT_DELETE_BATCH,
    ):
        pg = _psycopg()
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if pool_size < 1 or delete_batch < 1:
            raise ValueError("pool_size and delete_batch must be at least 1")
        self.timeout = float(timeout)
        self.pool_size = pool_size
        self.delete_batch = delete_batch
        self._clock = clock
        self._url = url
        self._closed = False
        self._lock = threading.Lock()
        self._key_in_c = True  # cache_key's collation is byte order (see init_schema)
        self._secrets, self.where, self._kwargs = connection_options(
            url, self.timeout, "beautyspot"
        )
        # A direct connection first: a wrong URL, host or password fails here with libpq's
        # own reason, where the pool would only report a timeout.
        self._connect().close()
        self._pool = pg.pool.ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=self._kwargs,
            configure=self._configure,
            timeout=self.timeout,
            name="beautyspot-pg",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=self.timeout)
            self.init_schema()
        except pg.pool.PoolTimeout:
            self._pool.close()
            raise DBError(f"cannot connect to {self.where}: no connection within timeout") from None
        except BaseException:
            self._pool.close()
            raise

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        """A configured connection outside the pool (probe, maintenance lock)."""
        pg = _psycopg()
        try:
            conn = pg.psycopg.connect(self._url, **self._kwargs)
        except pg.psycopg.Error as exc:
            raise DBError(
                f"cannot connect to {self.where}: {_one_line(exc, self._secrets)}"
            ) from None
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _configure(self, conn: psycopg.Connection) -> None:
        configure_session(conn, self.timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(_CLOSED_MESSAGE)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pool connection, with psycopg's failures mapped to this module's errors."""
        self._check_open()
        pg = _psycopg()
        try:
            with self._pool.connection(timeout=self.timeout) as conn:
                yield conn
        except pg.pool.PoolClosed:
            raise RuntimeError(_CLOSED_MESSAGE) from None
        except pg.pool.PoolTimeout as exc:
            if self._closed:
                raise RuntimeError(_CLOSED_MESSAGE) from None
            raise TimeoutError(
                f"no connection to {self.where} free within {self.timeout}s"
            ) from exc
        except pg.errors.LockNotAvailable as exc:
            raise DBBusyError(
                f"{self.where}: a lock was held past the timeout ({self.timeout}s);"
                " nothing was written"
            ) from exc
        except pg.psycopg.OperationalError as exc:
            raise DBError(f"{self.where}: {_one_line(exc, self._secrets)}") from exc

    def _fetch(self, sql: str, params: Any = None) -> list[tuple]:
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _key(self, column: str = "cache_key") -> str:
        """*column* in byte order (explicit only on an older table of another collation)."""
        return column if self._key_in_c else f'{column} COLLATE "C"'

    # -- schema --------------------------------------------------------------------------

    def init_schema(self) -> None:
        """Create the table and indexes, and add the columns an older table lacks.

        Concurrent callers (other processes or machines) are serialized by a transaction
        advisory lock; a migration racing with code that does not take it fails with a
        duplicate error, and is retried (it then finds the work done).  Catalog lookups
        come first, so a DB already up to date takes no table lock at all.
        """
        pg = _psycopg()
        duplicates = (
            pg.errors.DuplicateColumn,
            pg.errors.DuplicateTable,
            pg.errors.DuplicateObject,
            pg.errors.UniqueViolation,
        )
        for attempt in range(3):
            try:
                with self._connection() as conn, conn.transaction():
                    self._migrate(conn)
                return
            except duplicates:
                if attempt == 2:
                    raise

    def _migrate(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, LOCK_SCHEMA))
        if conn.execute("SELECT to_regclass('tasks')").fetchone()[0] is None:
            columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
            conn.execute(f"CREATE TABLE IF NOT EXISTS tasks ({columns})")
        present = {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'tasks'::regclass"
                " AND attnum > 0 AND NOT attisdropped"
            )
        }
        for name, kind in COLUMNS[1:]:
            if name not in present:
                conn.execute(f"ALTER TABLE tasks ADD COLUMN IF NOT EXISTS {name} {kind}")
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = 'tasks'::regclass"
            )
        }
        for name, spec in INDEXES.items():
            if name not in indexes:
                conn.execute(f"CREATE INDEX IF NOT EXISTS {name} {spec}")
        self._key_in_c = self._key_is_byte_ordered(conn)
        if not self._key_in_c:
            log.warning(
                '%s: tasks.cache_key is not COLLATE "C": prefix lookups cannot use its index',
                self.where,
            )

    @staticmethod
    def _key_is_byte_ordered(conn: psycopg.Connection) -> bool:
        """Whether tasks.cache_key compares bytewise (collation C/POSIX, own or default)."""
        oid, name = conn.execute(
            "SELECT a.attcollation::int, c.collname FROM pg_attribute a"
            " LEFT JOIN pg_collation c ON c.oid = a.attcollation"
            " WHERE a.attrelid = 'tasks'::regclass AND a.attname = 'cache_key'"
        ).fetchone()
        if oid != 100:  # not the database default: the column's own collation
            return name in ("C", "POSIX")
        if conn.info.server_version >= 150000:  # the default may be an ICU collation
            provider, collate = conn.execute(
                "SELECT datlocprovider::text, datcollate FROM pg_database"
                " WHERE datname = current_database()"
            ).fetchone()
            return provider == "c" and collate in ("C", "POSIX")
        collate = conn.execute(
            "SELECT datcollate FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
        return collate in ("C", "POSIX")

    # -- core API ------------------------------------------------------------------------

    def get(
        self,
        cache_key: str,
        *,
        include_expired: bool = False,
        now: dt.datetime | None = None,
    ) -> TaskRecord | None:
        """The task of *cache_key*; an expired one reads as a miss unless *include_expired*."""
        self._check_open()
        if not _storable(cache_key):
            return None
        rows = self._fetch(
            "SELECT result_type, result_value, result_data, expires_at FROM tasks"
            " WHERE cache_key = %s",
            (cache_key,),
        )
        if not rows:
            return None
        result_type, result_value, result_data, expires_at = rows[0]
        if not include_expired and expires_at is not None:
            if expires_at < _aware(now or self._clock()):
                return None
        return TaskRecord(
            result_type=result_type,
            result_value=result_value,
            result_data=bytes(result_data) if result_data is not None else None,
            expires_at=_text_ts(expires_at),
        )

    def _row(self, values: Sequence[Any]) -> tuple:
        """A save()/save_many() row, validated and converted (updated_at last)."""
        if len(values) == 10:
            values = (*values, None)
        if len(values) != 11:
            raise ValueError(f"a task row has 10 or 11 fields, not {len(values)}")
        row = list(values)
        key = row[0]
        if not isinstance(key, str):
            raise TypeError(f"cache_key must be a str, not {type(key).__name__}")
        for i in _TEXT_FIELDS:
            check_text(SAVE_COLUMNS[i], row[i])
        if row[2] is None:
            row[2] = row[1]
        try:
            row[9] = _to_datetime(row[9], "expires_at")
            row[10] = _to_datetime(row[10], "updated_at")
        except ValueError as exc:
            raise ValueError(f"task {key!r}: {exc}") from None
        if row[10] is None:
            row[10] = _aware(self._clock())
        return tuple(row)

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
        """Insert or replace the task (upsert); ``updated_at`` is the clock's now."""
        self._check_open()
        row = self._row(
            (
                cache_key,
                func_name,
                func_identifier,
                input_id,
                version,
                result_type,
                content_type,
                result_value,
                result_data,
                expires_at,
                None,
            )
        )
        with self._connection() as conn:
            conn.execute(_SAVE_SQL, row)

    def save_many(self, rows: Iterable[Sequence[Any]], *, newer_only: bool = False) -> int:
        """Upsert many tasks in one transaction, keeping each row's own ``updated_at``.

        Each row is save()'s arguments in order plus ``updated_at`` (a datetime, text, or
        None for now).  Every row is validated before anything is sent: one bad row raises
        (naming its key) and writes nothing.  The rows are COPYed into a temporary table and
        upserted from it in one statement; of repeated keys the last row wins.  With
        *newer_only*, a stored row is replaced only by one with a later ``updated_at``
        (decided by the server, row by row: a worker's write that lands while the batch is
        on its way is never overwritten by an older copy).  Returns the number of tasks
        written.
        """
        self._check_open()
        prepared = [self._row(r) for r in rows]
        if not prepared:
            return 0
        columns = ", ".join(SAVE_COLUMNS)
        with self._connection() as conn, conn.transaction():
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _bs_load (ord bigint, cache_key text"
                ' COLLATE "C", func_name text, func_identifier text, input_id text,'
                " version text, result_type text, content_type text, result_value text,"
                " result_data bytea, expires_at timestamptz, updated_at timestamptz)"
                " ON COMMIT DELETE ROWS"
            )
            with conn.cursor() as cur:
                with cur.copy(f"COPY _bs_load (ord, {columns}) FROM STDIN") as copy:
                    for i, row in enumerate(prepared):
                        copy.write_row((i, *row))
                cur.execute(
                    f"INSERT INTO tasks ({columns})"
                    f" SELECT DISTINCT ON (cache_key) {columns} FROM _bs_load"
                    " ORDER BY cache_key, ord DESC"
                    f" ON CONFLICT (cache_key) DO UPDATE SET {_UPSERT_SET}"
                    + (" WHERE tasks.updated_at < EXCLUDED.updated_at" if newer_only else "")
                )
                return cur.rowcount

    def delete(self, cache_key: str) -> bool:
        self._check_open()
        if not _storable(cache_key):
            return False
        with self._connection() as conn:
            return conn.execute("DELETE FROM tasks WHERE cache_key = %s", (cache_key,)).rowcount > 0

    # -- maintenance ---------------------------------------------------------------------

    def _batch_sql(self, pred: str, order: str, first: bool) -> str:
        """One bounded delete: lock up to ``limit`` matching rows in *order*, delete them.

        Returns (rows locked, rows deleted, last *order* value).  The DELETE finds the
        locked keys through the primary key (``= ANY(ARRAY(...))``: never a scan of the
        whole predicate range, which would make a large delete quadratic) and checks the
        predicate again: a row rewritten by a writer between the statement's snapshot and
        its lock is judged on its new version.  Later batches start at the previous
        batch's last value (``>=`` for timestamps, which may tie; ``>`` for the unique
        key), so no batch re-walks what earlier ones deleted.
        """
        bound = ""
        if not first:
            bound = f" AND {order} {'>' if order.startswith('cache_key') else '>='} %(after)s"
        return (
            f"WITH batch AS (SELECT cache_key, {order} AS ord FROM tasks"
            f" WHERE {pred}{bound} ORDER BY {order} LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
            " gone AS (DELETE FROM tasks WHERE cache_key = ANY (ARRAY(SELECT cache_key FROM batch))"
            f" AND {pred} RETURNING 1)"
            " SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM gone),"
            " (SELECT ord FROM batch ORDER BY ord DESC LIMIT 1)"
        )

    def _delete_where(self, pred: str, order: str, params: dict[str, Any]) -> int:
        """Delete every row matching *pred*, ``delete_batch`` rows per transaction."""
        self._check_open()
        first_sql = self._batch_sql(pred, order, first=True)
        next_sql = self._batch_sql(pred, order, first=False)
        params = dict(params, limit=self.delete_batch, after=None)
        total = 0
        first = True
        while True:
            with self._connection() as conn:
                locked, deleted, last = conn.execute(
                    first_sql if first else next_sql, params
                ).fetchone()
            total += deleted
            if locked < self.delete_batch:
                return total
            first = False
            params["after"] = last

    def _cutoff(self, older_than: dt.datetime | dt.timedelta) -> dt.datetime:
        if isinstance(older_than, dt.timedelta):
            return _aware(self._clock()) - older_than
        return _aware(older_than)

    def delete_expired(self, now: dt.datetime | None = None) -> int:
        """Delete rows whose expiry is before *now* (default: the clock); returns count."""
        moment = _aware(now or self._clock())
        return self._delete_where("expires_at < %(now)s", "expires_at", {"now": moment})

    def prune(self, older_than: dt.datetime | dt.timedelta, func_name: str | None = None) -> int:
        """Delete rows last updated before *older_than* (a cutoff, or an age)."""
        pred = "updated_at < %(cutoff)s"
        if func_name is not None:
            pred += f" AND {_FUNC_PRED}"
        return self._delete_where(
            pred, "updated_at", {"cutoff": self._cutoff(older_than), "func": func_name}
        )

    def delete_all(self, func_name: str | None = None) -> int:
        """Delete every row (of *func_name*: func_name or func_identifier); returns count."""
        pred = _FUNC_PRED if func_name is not None else "true"
        return self._delete_where(pred, self._key(), {"func": func_name})

    def get_outdated_tasks(
        self, older_than: dt.datetime | dt.timedelta, func_name: str | None = None
    ) -> list[tuple[str, str, str]]:
        """(cache_key, function, updated_at) of rows prune() would delete, oldest first."""
        pred = "updated_at < %(cutoff)s"
        if func_name is not None:
            pred += f" AND {_FUNC_PRED}"
        rows = self._fetch(
            "SELECT cache_key, COALESCE(func_identifier, func_name), updated_at FROM tasks"
            f" WHERE {pred} ORDER BY updated_at, {self._key()}",
            {"cutoff": self._cutoff(older_than), "func": func_name},
        )
        return [(key, function, format_ts(updated)) for key, function, updated in rows]

    def get_blob_refs(self) -> set[str]:
        return {
            r[0]
            for r in self._fetch(
                "SELECT DISTINCT result_value FROM tasks WHERE result_value IS NOT NULL"
            )
        }

    def prefix_query(self, prefix: str, limit: int = MAX_PREFIX_RESULTS) -> tuple[str, tuple]:
        """The SQL and parameters of :meth:`get_keys_start_with` (an index range)."""
        return prefix_query(prefix, limit, self._key())

    def get_keys_start_with(self, prefix: str) -> list[str]:
        """Up to 50 keys starting with *prefix*, in byte order; wildcards are literal."""
        self._check_open()
        if not _storable(prefix):
            return []
        sql, params = self.prefix_query(prefix)
        return [r[0] for r in self._fetch(sql, params)]

    def get_history(self, limit: int = 1000) -> pd.DataFrame:
        """The latest *limit* tasks, newest first, timestamps as upstream's text."""
        import pandas as pd

        rows = self._fetch(
            f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM tasks"
            f" ORDER BY updated_at DESC, {self._key()} DESC LIMIT %s",
            (int(limit),),
        )
        ts = [i for i, c in enumerate(_HISTORY_COLUMNS) if c in ("expires_at", "updated_at")]
        out = []
        for row in rows:
            row = list(row)
            for i in ts:
                row[i] = _text_ts(row[i])
            out.append(row)
        return pd.DataFrame(out, columns=list(_HISTORY_COLUMNS))

    def updated_at_of(self, keys: Sequence[str]) -> dict[str, str]:
        """``updated_at`` (text) of those of *keys* the table holds."""
        self._check_open()
        return updated_at_of(self._fetch, keys)

    def iter_keys_updated(
        self, after: str | None = None, batch: int = 5000
    ) -> Iterator[tuple[str, str]]:
        """(cache_key, updated_at text) of every row, in byte order of the key.

        Keyset pages of *batch* rows, one short query each: no transaction or connection is
        held between pages, and *after* resumes after a given key.
        """
        key = self._key()
        while True:
            if after is None:
                rows = self._fetch(
                    f"SELECT cache_key, updated_at FROM tasks ORDER BY {key} LIMIT %s", (batch,)
                )
            else:
                rows = self._fetch(
                    f"SELECT cache_key, updated_at FROM tasks WHERE {key} > %s"
                    f" ORDER BY {key} LIMIT %s",
                    (after, batch),
                )
            for cache_key, updated in rows:
                yield cache_key, format_ts(updated)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    # -- maintenance lock ----------------------------------------------------------------

    @contextmanager
    def maintenance_lock(self, wait: float = 10.0) -> Iterator[None]:
        """Hold the database's maintenance lock (a session advisory lock) for the block.

        Retries for *wait* seconds, then raises :class:`LockHeldError` naming the holder
        (backend pid, application name, client address, since when).  The lock lives on a
        dedicated connection, closed (and so released) at the end of the block.
        """
        self._check_open()
        conn = self._connect()
        try:
            acquire_maintenance_lock(conn, wait, self.where)
            try:
                yield
            finally:
                try:
                    released = conn.execute(
                        "SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, LOCK_MAINTENANCE)
                    ).fetchone()[0]
                    if not released:
                        log.warning("%s: the maintenance lock was lost meanwhile", self.where)
                except _psycopg().psycopg.Error as exc:
                    log.warning(
                        "%s: maintenance lock connection lost: %s",
                        self.where,
                        _one_line(exc, self._secrets),
                    )
        finally:
            conn.close()

    @staticmethod
    def _lock_holder(conn: psycopg.Connection) -> str:
        row = conn.execute(
            "SELECT l.pid, a.application_name, a.client_addr::text, a.client_hostname,"
            " a.usename, a.backend_start"
            " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s"
            " AND l.objid = %s AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " LIMIT 1",
            (LOCK_CLASS, LOCK_MAINTENANCE),
        ).fetchone()
        if row is None:
            return "holder unknown (it may just have finished)"
        pid, app, addr, hostname, user, since = row
        client = hostname or addr or "local socket"
        parts = [f"server pid {pid}"]
        if app:
            parts.append(f"application {app!r}")
        parts.append(f"client {client}")
        if user:
            parts.append(f"user {user!r}")
        if since is not None:
            parts.append(f"connected since {format_ts(since)}")
        return ", ".join(parts)

    # -- life cycle ----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """True while open: every write has committed by the time its call returned."""
        return not self._closed

    def shutdown(self, wait: bool = True) -> None:
        """Close the pool (idempotent); every later call raises ``RuntimeError``.

        With *wait*, waits (up to ``timeout``) for the pool's workers; connections in use
        by a call still running are closed when that call returns them.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close(timeout=self.timeout if wait else 0.0)

    @staticmethod
    def count_tasks(url: str, timeout: float = 5.0) -> int:
        """Row count over a short-lived connection of its own; -1 on any error."""
        try:
            pg = _psycopg()
            with pg.psycopg.connect(
                url, autocommit=True, connect_timeout=max(2, math.ceil(timeout))
            ) as conn:
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false),"
                    " set_config('lock_timeout', %s, false)",
                    (f"{max(1, int(timeout * 1000))}ms",) * 2,
                )
                return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])
        except Exception:
            return -1

    def __enter__(self) -> PostgresTaskDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"PostgresTaskDB({self.where})"
