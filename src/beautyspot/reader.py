"""Read-only access to a task DB: what ``ls``, ``show``, dry runs and completion use.

No writer thread, no migration, no file or directory created; a mistyped path is an
error, never a new empty DB.  Kept apart from :mod:`beautyspot.db` (which re-exports
these names) so ``show`` does not import ``typing``, ``queue`` and the writer
machinery it never uses.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from . import readonly as ro
from . import sql as q
from .errors import DBBusyError, DBError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms)
if TYPE_CHECKING:
    from typing import Any

MAX_PREFIX_RESULTS = ro.MAX_PREFIX_RESULTS


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

    def has_file_rows(self) -> bool:
        """Whether any row keeps its result in a blob file."""
        col = self.schema.col("result_type")
        return bool(self._run(f"SELECT 1 FROM tasks WHERE {col} = 'FILE' LIMIT 1"))

    def iter_for_copy(self) -> Iterator[tuple]:
        """Every row in save() argument order plus updated_at (11 values; a column an
        old DB lacks reads as NULL), by cache_key: for ``beautyspot migrate``."""
        c = self.schema.col
        return self._stream(
            f"SELECT cache_key, {c('func_name')}, {c('func_identifier')}, {c('input_id')},"
            f" {c('version')}, {c('result_type')}, {c('content_type')}, {c('result_value')},"
            f" {c('result_data')}, {c('expires_at')}, {c('updated_at')}"
            " FROM tasks ORDER BY cache_key"
        )

    def iter_matching(self, rfilter: q.RowFilter) -> Iterator[tuple]:
        """(cache_key, function, inline bytes, julianday of updated_at or None,
        result_value, updated_at) of every matching row, streamed: one scan."""
        cond, params = rfilter.where(self.schema)
        s = self.schema
        key = q.order_key_sql(s.col("updated_at"))
        if rfilter.updated_before is not None and s.has("updated_at"):
            key = "julianday(updated_at)"  # the filter selects parsable values only
        return self._stream(
            f"SELECT cache_key, {s.function}, length({s.col('result_data')}),"
            f" {key}, {s.col('result_value')},"
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
            f"SELECT total(CASE WHEN {q.valid_ts_sql(upd)} THEN 0 ELSE 1 END),"
            f" total(CASE WHEN {exp} IS NULL OR {q.valid_ts_sql(exp)} THEN 0 ELSE 1 END)"
            " FROM tasks"
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
        """(expired rows, oldest, newest updated_at as UTC text) in one scan.

        Computing every row's sort key would cost most of the scan.  The oldest and
        newest keys among the first and last rows inserted (usually the oldest and
        newest rows: a save writes a new rowid) bound the answer, so the scan computes
        a key only where the raw text is within two days of those bounds (a local date
        is at most 14 hours off its UTC one).  Exact whatever the insertion order: the
        bounds only decide how many keys it computes.
        """
        s = self.schema
        cond, params = q.RowFilter(expired_before=now_instant).where(s)
        key = q.order_key_sql(s.col("updated_at"))
        upd = s.col("updated_at")
        first, last = self._run(
            f"SELECT (SELECT min({key}) FROM tasks"
            " WHERE rowid <= (SELECT min(rowid) FROM tasks) + :sample),"
            f" (SELECT max({key}) FROM tasks"
            " WHERE rowid >= (SELECT max(rowid) FROM tasks) - :sample)",
            {"sample": _SAMPLE_ROWS},
        )[0]
        params = dict(
            params,
            # A valid text sorts below '~' and at or above '': no bound, every key.
            oldest_below=_day_text(first, 3, "~"),
            newest_from=_day_text(last, -2, ""),
        )
        expired, lo, hi = self._run(
            # CASE, not a bare boolean: SQLite short-circuits AND only in jump code.
            f"SELECT total(CASE WHEN {cond} THEN 1 END),"
            f" strftime('%Y-%m-%d %H:%M:%S', min(CASE WHEN +{upd} < :oldest_below THEN {key} END)),"
            f" strftime('%Y-%m-%d %H:%M:%S', max(CASE WHEN +{upd} >= :newest_from THEN {key} END))"
            " FROM tasks",
            params,
        )[0]
        return int(expired), lo, hi

    def list_tasks(self, rfilter: q.RowFilter, limit: int | None) -> list[q.TaskRow]:
        """Matching rows, newest first (by instant; unparsable timestamps last)."""
        cond, params = rfilter.where(self.schema)
        s = self.schema
        key = q.order_key_sql(s.col("updated_at"))
        order = f"ORDER BY {key} DESC, rowid DESC"
        if limit is None or limit < 0:
            return self._task_rows(f"WHERE {cond} {order}", params)
        limit = int(limit)
        bound = self._newest_bound(cond, params, key, limit)
        if bound is not None:
            # Exact whenever it returns `limit` rows: every row it skips has a key below
            # the bound (or none), so it ranks after all of them.  The raw-text test is
            # a cheap pre-filter (no julianday; an idx_updated_at range where the index
            # exists): a value at or past the bound's instant has a local date at most
            # a day before the bound's UTC date (offsets stay within 14 hours); the
            # bound allows two.  The date text is no number, so the column's NUMERIC
            # affinity leaves this a text comparison.
            upd = s.col("updated_at")
            window = f"{upd} >= :newest_date AND {key} >= :newest_key AND {cond}"
            rows = self._top_rows(window, dict(params, **bound), order, limit)
            if len(rows) == limit:
                return rows
        return self._top_rows(cond, params, order, limit)

    def _task_rows(self, clause: str, params: Any) -> list[q.TaskRow]:
        return [
            q.TaskRow.from_sql(r)
            for r in self._run(f"SELECT {q.row_select(self.schema)} FROM tasks {clause}", params)
        ]

    def _top_rows(self, cond: str, params: Any, order: str, limit: int) -> list[q.TaskRow]:
        # Rank rowids alone, then read the few winners: sorting whole rows would build
        # every row's columns for the sorter.
        ranked = f"SELECT rowid FROM tasks WHERE {cond} {order} LIMIT {limit}"
        return self._task_rows(f"WHERE rowid IN ({ranked}) {order}", params)

    def _newest_bound(
        self, cond: str, params: Any, key: str, limit: int
    ) -> dict[str, object] | None:
        """A sort key that *limit* matching rows reach, taken from the rows inserted
        last (a save writes a new rowid, so these are usually the newest), with the
        date pre-filter that goes with it; None when too few of them match."""
        if limit == 0 or limit > _NEWEST_SAMPLE_MAX:
            return None
        rows = self._run(
            f"SELECT {key} AS k FROM tasks"
            " WHERE rowid >= (SELECT max(rowid) FROM tasks) - :newest_sample"
            f" AND k IS NOT NULL AND {cond} ORDER BY k DESC LIMIT 1 OFFSET :newest_nth",
            dict(params, newest_sample=_SAMPLE_ROWS + limit, newest_nth=limit - 1),
        )
        if not rows:
            return None
        return {"newest_key": rows[0][0], "newest_date": _day_text(rows[0][0], -2, "")}


# ls reads the first and last _SAMPLE_ROWS rowids (ls DB --limit N: the last N more)
# for bounds that spare it most sort keys; above _NEWEST_SAMPLE_MAX, ls DB ranks the
# whole table at once.
_SAMPLE_ROWS = 1_000
_NEWEST_SAMPLE_MAX = 10_000


def _day_text(jd: float | None, days: int, default: str) -> str:
    """'YYYY-MM-DD' of the UTC date of julianday *jd* moved by *days*, compared with raw
    timestamps as text; *default* when there is no such date."""
    if jd is None:
        return default
    try:
        day = dt.date(1970, 1, 1) + dt.timedelta(days=math.floor(jd - 2440587.5) + days)
    except OverflowError:
        return default
    return day.isoformat()


TaskRow = q.TaskRow
