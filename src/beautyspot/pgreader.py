"""The maintenance tool's access to a PostgreSQL task DB (``--db postgresql://…``).

:class:`PostgresReader` is to :class:`~beautyspot.postgres.PostgresTaskDB` what
:class:`~beautyspot.reader.TaskReader` is to ``SQLiteTaskDB``: one plain connection, no
pool, no migration, and it never creates the table (``ls``, ``show`` or a ``gc`` pointed
at the wrong database must not turn it into a cache).  Read-only unless ``writable``
(the session's transactions are ``READ ONLY``, so the server refuses any write).  The
SQL of ``ls``/``show``/``gc``/``prune``/``clear``/``rm`` on PostgreSQL lives here; the
policy (plans, safety rules) is in :mod:`beautyspot.remote`.

Row filters are the SQLite side's :class:`~beautyspot.sql.RowFilter`, fixed at planning
time, translated by :func:`predicate`; ``timestamptz`` columns hold instants, so every
comparison is a plain (indexed) range.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import DBError, UsageError
from .postgres import (
    LOCK_CLASS,
    LOCK_MAINTENANCE,
    _one_line,
    _psycopg,
    _storable,
    acquire_maintenance_lock,
    configure_session,
    connection_options,
    prefix_query,
    updated_at_of,
)
from .sql import RowFilter, TaskRow
from .timeutil import format_ts, from_instant, utc_text

_FUNCTION = "coalesce(func_identifier, func_name)"
_ROW = (
    f"cache_key, func_name, {_FUNCTION}, result_type, result_value, octet_length(result_data),"
    " expires_at, updated_at, version"
)
_LOCK_POLL = 0.1


def predicate(rfilter: RowFilter, written_before: int | None = None) -> tuple[str, dict]:
    """SQL and parameters selecting *rfilter*'s rows (and, with *written_before* (µs),
    only rows last written at or before that instant: rows saved after a plan was made
    are not the plan's)."""
    if rfilter.live_at is not None or rfilter.order_at_or_before is not None:
        raise UsageError("--max-size/--max-entries are not supported on a PostgreSQL task DB")
    terms, params = [], {}
    if rfilter.expired_before is not None:
        terms.append("expires_at < %(expired_before)s")
        params["expired_before"] = from_instant(rfilter.expired_before)
    if rfilter.updated_before is not None:
        terms.append("updated_at < %(updated_before)s")
        params["updated_before"] = from_instant(rfilter.updated_before)
    if rfilter.func is not None:
        if isinstance(rfilter.func, str) and _storable(rfilter.func):
            terms.append("(func_name = %(func)s OR func_identifier = %(func)s)")
            params["func"] = rfilter.func
        else:
            terms.append("FALSE")  # no stored name holds NUL or a lone surrogate
    if rfilter.keys is not None:
        terms.append("cache_key = ANY(%(keys)s)")
        params["keys"] = [k for k in rfilter.keys if isinstance(k, str) and _storable(k)]
    if written_before is not None:
        terms.append("updated_at <= %(written_before)s")
        params["written_before"] = from_instant(written_before)
    return (" AND ".join(terms) or "TRUE"), params


def _driving(rfilter: RowFilter) -> str:
    """The indexed column a deletion walks, so each batch starts where the last ended
    (dead rows are not walked again before the next vacuum)."""
    if rfilter.expired_before is not None:
        return "expires_at"
    if rfilter.updated_before is not None:
        return "updated_at"
    return 'cache_key COLLATE "C"'


def _text(value: dt.datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def _minute(value: dt.datetime | None) -> str | None:
    """A plan group's oldest row, as a SQLite plan has it: UTC, to the second."""
    return None if value is None else utc_text(value)


def task_row(values: tuple) -> TaskRow:
    key, func_name, function, rtype, location, size, expires, updated, version = values
    return TaskRow(
        None,
        key,
        func_name,
        function,
        rtype,
        location,
        size,
        _text(expires),
        _text(updated),
        version,
    )


class PostgresReader:
    """One connection to a PostgreSQL task DB for the maintenance tool (see module doc)."""

    def __init__(
        self, url: str, timeout: float = 30.0, *, writable: bool = False, require_table=True
    ):
        pg = _psycopg()
        self.url = url
        self.timeout = timeout
        self._secrets, self.where, kwargs = connection_options(url, timeout, "beautyspot-cli")
        try:
            self.conn = pg.psycopg.connect(url, **kwargs)
        except pg.psycopg.Error as exc:
            raise DBError(
                f"cannot connect to {self.where}: {_one_line(exc, self._secrets)}"
            ) from None
        try:
            configure_session(self.conn, timeout, read_only=not writable)
            self.has_table = self._one("SELECT to_regclass('tasks')") is not None
            if require_table and not self.has_table:
                raise DBError(f"{self.where}: no 'tasks' table (not a beautyspot task DB)")
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> PostgresReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------

    def _run(self, sql: str, params: Any = None) -> list[tuple]:
        pg = _psycopg()
        try:
            return self.conn.execute(sql, params).fetchall()
        except pg.errors.LockNotAvailable:
            raise DBError(f"{self.where}: locked past the timeout ({self.timeout}s)") from None
        except pg.psycopg.Error as exc:
            raise DBError(f"{self.where}: {_one_line(exc, self._secrets)}") from None

    def _one(self, sql: str, params: Any = None) -> Any:
        rows = self._run(sql, params)
        return rows[0][0] if rows else None

    # -- reports -------------------------------------------------------------------------

    def get_row(self, key: str) -> TaskRow | None:
        if not _storable(key):
            return None
        rows = self._run(f"SELECT {_ROW} FROM tasks WHERE cache_key = %s", (key,))
        return task_row(rows[0]) if rows else None

    def updated_at_of(self, keys: list[str]) -> dict[str, str]:
        """``updated_at`` (text) of those of *keys* the table holds (none without one):
        what ``migrate --dry-run`` compares against, reading only."""
        return updated_at_of(self._run, keys) if self.has_table else {}

    def get_payload(self, key: str) -> bytes | None:
        value = self._one("SELECT result_data FROM tasks WHERE cache_key = %s", (key,))
        return None if value is None else bytes(value)

    def keys_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Keys starting with *prefix*, sorted (byte order), by a PK range."""
        if not _storable(prefix):
            return []
        return [r[0] for r in self._run(*prefix_query(prefix, limit, 'cache_key COLLATE "C"'))]

    def list_tasks(self, rfilter: RowFilter, limit: int | None) -> list[TaskRow]:
        """Matching rows, newest first."""
        cond, params = predicate(rfilter)
        sql = f"SELECT {_ROW} FROM tasks WHERE {cond} ORDER BY updated_at DESC, cache_key DESC"
        if limit is not None and limit >= 0:
            sql += " LIMIT %(limit)s"
            params = dict(params, limit=int(limit))
        return [task_row(r) for r in self._run(sql, params)]

    # -- plans ---------------------------------------------------------------------------

    def groups(self, cond: str, params: dict) -> list[tuple[str, int, int, str | None]]:
        """(function, rows, inline bytes, oldest updated_at as UTC text to the second, as
        a SQLite plan's groups have it) per function."""
        rows = self._run(
            f"SELECT {_FUNCTION}, count(*), coalesce(sum(octet_length(result_data)), 0),"
            f" min(updated_at) FROM tasks WHERE {cond} GROUP BY 1",
            params,
        )
        return [(f or "", int(n), int(b), _minute(o)) for f, n, b, o in rows]

    def oldest(self, cond: str, params: dict, n: int) -> list[tuple[str, str, str]]:
        rows = self._run(
            f"SELECT cache_key, {_FUNCTION}, updated_at FROM tasks WHERE {cond}"
            " ORDER BY updated_at, cache_key LIMIT %(n)s",
            dict(params, n=n),
        )
        return [(k, f or "", _text(u) or "") for k, f, u in rows]

    def matched_locations(self, cond: str, params: dict) -> Iterator[tuple[str, str, int]]:
        """(location, function, rows) of the matching rows that name a blob."""
        rows = self._run(
            f"SELECT result_value, min({_FUNCTION}), count(*) FROM tasks"
            f" WHERE result_value IS NOT NULL AND {cond} GROUP BY result_value",
            params,
        )
        return ((loc, f or "", int(n)) for loc, f, n in rows)

    def location_counts(self) -> dict[str, int]:
        """Rows naming each blob location (as stored), over the whole table."""
        return {
            loc: int(n)
            for loc, n in self._run(
                "SELECT result_value, count(*) FROM tasks WHERE result_value IS NOT NULL"
                " GROUP BY result_value"
            )
        }

    # -- deletion ------------------------------------------------------------------------

    def delete_batches(
        self, rfilter: RowFilter, written_before: int | None, batch: int
    ) -> Iterator[list[tuple[str, str, int | None, str | None]]]:
        """Delete the matching rows, *batch* per committed statement, walking the
        filter's index; yield each batch's (cache_key, function, inline bytes, location).

        Each statement locks up to *batch* matching rows in index order (rows locked by
        an in-flight write are skipped: that write decides them), deletes them through
        the primary key, re-checking the predicate on the row's latest version, and the
        next one starts at the last value (``>=`` for a timestamp, which may tie), so no
        statement walks again what an earlier one deleted.  (An ORDER BY the index can
        not give, or a DELETE over the whole predicate range, made a 250k-row gc at 1M
        rows take ~50 s.)
        """
        cond, params = predicate(rfilter, written_before)
        order = _driving(rfilter)
        step = ">" if order.startswith("cache_key") else ">="
        params = dict(params, limit=batch)
        first = True
        while True:
            bound = "" if first else f" AND {order} {step} %(after)s"
            rows = self._run(
                f"WITH batch AS (SELECT cache_key, {order} AS ord FROM tasks"
                f" WHERE {cond}{bound} ORDER BY {order} LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
                " gone AS (DELETE FROM tasks WHERE cache_key = ANY (ARRAY(SELECT cache_key"
                f" FROM batch)) AND {cond} RETURNING cache_key, {_FUNCTION} AS function,"
                " octet_length(result_data) AS size, result_value)"
                " SELECT (SELECT count(*) FROM batch), (SELECT max(ord) FROM batch),"
                " g.cache_key, g.function, g.size, g.result_value FROM (SELECT 1) AS one"
                " LEFT JOIN gone AS g ON TRUE",
                params,
            )
            locked, last = rows[0][0], rows[0][1]
            deleted = [(k, f or "", size, loc) for _n, _l, k, f, size, loc in rows if k is not None]
            if deleted:
                yield deleted
            if locked < batch:
                return
            first = False
            params["after"] = last

    @contextmanager
    def maintenance_lock(self, wait: float) -> Iterator[None]:
        """The database's maintenance lock (the one PostgresTaskDB.maintenance_lock takes):
        one gc/prune/clear at a time per database, whichever machine runs it."""
        try:
            acquire_maintenance_lock(self.conn, wait, self.where)
        except _psycopg().psycopg.Error as exc:
            raise DBError(f"{self.where}: {_one_line(exc, self._secrets)}") from None
        try:
            yield
        finally:
            try:
                self._run("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, LOCK_MAINTENANCE))
            except DBError:
                pass  # the connection is gone, and the server released the lock with it
