"""SQL shared by the writer (``SQLiteTaskDB``), the read-only reader and maintenance.

Everything here works on a plain ``sqlite3.Connection`` and a :class:`Schema` (the
columns a DB really has: old DBs lack some, and read-only paths never migrate).

Timestamp comparisons never compare strings.  :func:`before_sql` builds a predicate
that is exact for every stored format (see :mod:`beautyspot.timeutil`):

* an index range on the raw column bounds the candidates (``col < 'YYYY-MM-DD'`` two
  days past the cutoff: no offset moves a value by more than that), so the query
  SEARCHes the index instead of scanning the table;
* ``julianday()`` (C, fast) decides every row further than 2 ms from the cutoff,
  after the same validity checks :func:`~beautyspot.timeutil.parse_instant` applies;
* the Python function ``bs_ts_lt`` decides the rare rows within 2 ms of the cutoff,
  at full microsecond precision (SQLite rounds to milliseconds).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import namedtuple

from .readonly import next_prefix, prefix_params, prefix_range_sql  # noqa: F401
from .timeutil import MAX_TS_LENGTH, MIN_JULIAN_DAY, from_instant, julian_day, parse_instant

TASK_COLUMNS = (
    "cache_key",
    "func_name",
    "func_identifier",
    "input_id",
    "result_type",
    "result_value",
    "result_data",
    "content_type",
    "version",
    "expires_at",
    "updated_at",
)

# Upstream's table, column for column, so upstream keeps reading what we write.
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS tasks (
    cache_key TEXT PRIMARY KEY,
    func_name TEXT,
    func_identifier TEXT,
    input_id  TEXT,
    result_type TEXT,
    result_value TEXT,
    result_data BLOB,
    content_type TEXT,
    version TEXT,
    expires_at TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)
"""

# Columns init_schema() may have to add to an old DB, with their types.
MIGRATED_COLUMNS = (
    ("func_identifier", "TEXT"),
    ("result_data", "BLOB"),
    ("content_type", "TEXT"),
    ("version", "TEXT"),
    ("expires_at", "TIMESTAMP"),
)

# (name, column it needs, SQL). idx_func_identifier and idx_expires_at are upstream's;
# the others are ours and harmless to upstream: func_name serves --func filters and
# completion, updated_at drives prune, result_value answers "is this blob still
# referenced?" without a scan.
INDEXES = (
    ("idx_func_identifier", "func_identifier", "ON tasks(func_identifier)"),
    ("idx_func_name", "func_name", "ON tasks(func_name)"),
    ("idx_expires_at", "expires_at", "ON tasks(expires_at)"),
    ("idx_updated_at", "updated_at", "ON tasks(updated_at)"),
    ("idx_result_value", "result_value", "ON tasks(result_value) WHERE result_value IS NOT NULL"),
)

_BAND_DAYS = 2 / 86_400_000  # 2 ms, in days
# Greater than every valid date string, so a cutoff past year 9999 still bounds.
_TOP_DATE = "9999-99-99"


# The value classes of this module (and of workspace, storage, lookup) are named tuples:
# frozen, compared by value, and cheap to define.  ``show`` imports them all, and
# ``dataclasses`` (with the ``inspect`` it imports) plus ten generated classes was a
# fifth of its start-up.  ``_replace`` and ``_asdict`` stand in for the dataclasses
# functions; ``render`` writes them as JSON objects.


class Schema(namedtuple("Schema", "columns indexed", defaults=(frozenset(),))):
    """The columns of one DB's ``tasks`` table.

    ``columns`` (frozenset of str): its column names.  ``indexed`` (frozenset of str):
    the columns that lead an index: a keyset walk may follow them (else it walks rowids).
    """

    __slots__ = ()

    def col(self, name: str) -> str:
        """The column, or ``NULL`` where an old DB lacks it."""
        return name if name in self.columns else "NULL"

    def has(self, name: str) -> bool:
        return name in self.columns

    @property
    def function(self) -> str:
        """Display name of a row's function: func_identifier, else func_name."""
        if self.has("func_identifier"):
            return "COALESCE(func_identifier, func_name)"
        return "func_name"

    def func_filter(self, param: str = "func", *, indexable: bool = True) -> str:
        """A ``--func`` filter: matches func_name or func_identifier.

        ``indexable=False`` puts a unary ``+`` on the columns so SQLite cannot answer
        the filter from idx_func_name/idx_func_identifier.  A keyset walk needs that:
        with both indexes SQLite plans ``prune --func`` as a MULTI-INDEX OR plus a sort,
        re-reading every row of the function for each 2,000-row batch (0.5-0.7 s a
        batch for a 235k-row function of a 1M-row DB) instead of following the
        driving timestamp index.
        """
        p = "" if indexable else "+"
        v = f"CAST(:{param} AS TEXT)"
        if self.has("func_identifier"):
            return f"({p}func_name = {v} OR {p}func_identifier = {v})"
        return f"{p}func_name = {v}"


def read_schema(conn: sqlite3.Connection) -> Schema | None:
    """The schema of ``tasks``, or None when the DB has no such table."""
    rows = conn.execute("PRAGMA table_info(tasks)").fetchall()
    if not rows:
        return None
    indexed = set()
    for index in conn.execute("PRAGMA index_list(tasks)").fetchall():
        if index[4]:  # partial: usable only when a query repeats its WHERE
            continue
        name = str(index[1]).replace('"', '""')
        first = conn.execute(f'PRAGMA index_info("{name}")').fetchone()
        if first is not None and first[2] is not None:
            indexed.add(str(first[2]))
    return Schema(frozenset(str(r[1]) for r in rows), frozenset(indexed))


def _ts_lt(value: object, instant: int) -> int | None:
    parsed = parse_instant(value)
    if parsed is None:
        return None
    return int(parsed < instant)


def decode_text(raw: bytes) -> str:
    """TEXT as ``str``: bytes that are not UTF-8 become lone surrogates (surrogateescape),
    as ``os.fsdecode`` does for file names, so a value read can be bound back unchanged
    (:func:`text_param`) and display code escapes it instead of the DB being unreadable."""
    return raw.decode("utf-8", "surrogateescape")


def text_param(value: object) -> object:
    """A parameter for ``CAST(? AS TEXT)``: a ``str`` holding surrogates (from
    :func:`decode_text`, or from argv) is bound as its original bytes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape")
    return value


def register_functions(conn: sqlite3.Connection) -> None:
    """Install the SQL functions the predicates use, and lossless TEXT decoding (per
    connection)."""
    conn.create_function("bs_ts_lt", 2, _ts_lt, deterministic=True)
    conn.text_factory = decode_text


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # a common year


def _late_days() -> str:
    """'MM-DD' of every day past the 28th that every year has (no 29 February)."""
    days = [f"'{m:02d}-{d}'" for m in range(1, 13) for d in (29, 30, 31) if d <= _MONTH_DAYS[m - 1]]
    return ", ".join(days)


_LATE_DAYS = _late_days()


def ts_shape_sql(col: str) -> str:
    """SQL: *col* is text that :func:`parse_instant` accepts whenever ``julianday(col)``
    is not NULL.

    ``julianday()`` does the parsing; these checks reject what it is more lenient
    about, in as few function calls as a well-formed row allows (the expression runs
    once per row of a million-row scan):

    * ``+col BETWEEN '0001' AND '9999:'``: text (numbers sort below text, blobs above),
      no sign or leading space, year 0000 excluded (and, from the first day of year 1,
      instants before it: ``0001-01-01 00:00+14:00``).  The unary ``+`` drops the column's
      NUMERIC affinity, so this compares strings;
    * ``substr(col, 11, 4)`` is ``' HH:'`` or ``'THH:'`` with HH 00-23: exactly one
      separator (julianday skips any run of spaces and ``T``), hour 24 excluded, and no
      time-only or numeric value (neither has a digit right after a space);
    * ``substr(col, 17, 1) = ':'``: seconds present (julianday makes them optional);
    * ``+col = substr(col, 1, 64)``: at most 64 characters and no NUL (substr, like
      julianday, stops at a NUL; the comparison sees every byte);
    * days 29-31 only in months that have them (julianday takes 30 February): a
      string lookup, and the leap-year rule only for 29 February.

    Given julianday's grammar, each check above is exact, so together they agree
    with parse_instant on every value (tests/unit/test_sql_timestamps.py).
    """
    year = f"substr({col}, 1, 4)"
    return (
        f"(+{col} BETWEEN '0001' AND '9999:'"
        f" AND (+{col} >= '0001-01-02' OR julianday({col}) >= {MIN_JULIAN_DAY})"
        f" AND (substr({col}, 11, 4) BETWEEN ' 00:' AND ' 23:'"
        f" OR substr({col}, 11, 4) BETWEEN 'T00:' AND 'T23:')"
        f" AND substr({col}, 17, 1) = ':'"
        f" AND +{col} = substr({col}, 1, {MAX_TS_LENGTH})"
        f" AND (substr({col}, 9, 2) <= '28' OR substr({col}, 6, 5) IN ({_LATE_DAYS})"
        f" OR (substr({col}, 6, 5) = '02-29' AND {year} % 4 = 0"
        f" AND ({year} % 100 <> 0 OR {year} % 400 = 0))))"
    )


def valid_ts_sql(col: str) -> str:
    """SQL: *col* holds a timestamp :func:`parse_instant` accepts."""
    return f"({ts_shape_sql(col)} AND julianday({col}) IS NOT NULL)"


def before_sql(col: str, param: str) -> str:
    """SQL: *col*'s instant is strictly before the cutoff bound by :func:`before_params`.

    The CASE keeps every step lazy in any context (SQLite short-circuits AND/OR only
    where it compiles them to jumps, not inside ``coalesce()``): julianday() runs once
    for a row well before the cutoff, and ``bs_ts_lt`` only within 2 ms of it.
    """
    p = param
    return (
        f"({col} < :{p}_hi AND CASE WHEN {ts_shape_sql(col)} THEN"
        f" CASE WHEN julianday({col}) < :{p}_band_lo THEN 1"
        f" WHEN julianday({col}) < :{p}_band_hi THEN bs_ts_lt({col}, :{p}_us) END END)"
    )


def before_params(param: str, instant: int) -> dict[str, object]:
    """Parameters for :func:`before_sql` with the cutoff *instant* (µs since epoch)."""
    jd = julian_day(instant)
    try:
        hi = (from_instant(instant) + dt.timedelta(days=2)).date().isoformat()
    except OverflowError:
        hi = _TOP_DATE
    return {
        f"{param}_hi": hi,
        f"{param}_band_lo": jd - _BAND_DAYS,
        f"{param}_band_hi": jd + _BAND_DAYS,
        f"{param}_us": instant,
    }


def order_key_sql(col: str) -> str:
    """SQL sort key of a timestamp column by instant; unparsable values sort as NULL.

    julianday() is NULL wherever it cannot parse, so it needs no separate test.
    """
    return f"(CASE WHEN {ts_shape_sql(col)} THEN julianday({col}) END)"


_ROW_FILTER_FIELDS = (
    "expired_before updated_before func keys live_at order_at_or_before rowid_at_most"
)


class RowFilter(namedtuple("RowFilter", _ROW_FILTER_FIELDS, defaults=(None,) * 7)):
    """Which rows a deletion (or its preview) selects; every set field (not None) must
    match.  Build it with keywords.

    - ``expired_before``, ``updated_before`` (int): instants (µs since the epoch); the
      plan fixes them once so the run deletes exactly what the preview showed.
    - ``func`` (str): func_name or func_identifier equals it.
    - ``keys`` (tuple of str): cache_key is one of them.
    - ``live_at`` (int): rows NOT expired at this instant (a budget pass leaves
      expired rows to gc's own).
    - ``order_at_or_before`` ((julianday(updated_at), rowid)): at or below this bound,
      parsable updated_at only: "this row and everything least recently updated
      after it", for size budgets.
    - ``rowid_at_most`` (int): rows that existed when the plan was made (max(rowid)
      then): a row saved after the plan gets a higher rowid, so the run never
      deletes it.
    """

    __slots__ = ()

    def driving_column(self, schema: Schema) -> str | None:
        """The indexed column a keyset walk follows (None: walk rowids).

        Without an index on the filter's column the walk follows rowids: each batch
        resumes where the last stopped, so all batches together scan the table once.
        """
        if self.updated_before is not None and "updated_at" in schema.indexed:
            return "updated_at"
        if self.expired_before is not None and "expires_at" in schema.indexed:
            return "expires_at"
        return None

    def where(self, schema: Schema) -> tuple[str, dict[str, object]]:
        """SQL condition and parameters; a filter on a missing column matches nothing."""
        terms: list[str] = []
        params: dict[str, object] = {}
        if self.expired_before is not None:
            if not schema.has("expires_at"):
                return "0", {}
            terms.append("expires_at IS NOT NULL AND " + before_sql("expires_at", "exp"))
            params.update(before_params("exp", self.expired_before))
        if self.updated_before is not None:
            if not schema.has("updated_at"):
                return "0", {}
            terms.append(before_sql("updated_at", "upd"))
            params.update(before_params("upd", self.updated_before))
        if self.func is not None:
            # Keep the function indexes out of a walk along the driving index.
            terms.append(schema.func_filter(indexable=self.driving_column(schema) is None))
            params["func"] = text_param(self.func)
        if self.keys is not None:
            if not self.keys:
                return "0", {}
            # One JSON parameter, whatever the number of keys (no variable limit).
            terms.append("cache_key IN (SELECT value FROM json_each(:keys_json))")
            params["keys_json"] = json.dumps(list(self.keys))
        if self.live_at is not None and schema.has("expires_at"):
            terms.append(
                "NOT coalesce(expires_at IS NOT NULL AND "
                + before_sql("expires_at", "live")
                + ", 0)"
            )
            params.update(before_params("live", self.live_at))
        if self.order_at_or_before is not None:
            if not schema.has("updated_at"):
                return "0", {}
            terms.append(
                f"{valid_ts_sql('updated_at')}"
                " AND (julianday(updated_at), rowid) <= (:ob_jd, :ob_rowid)"
            )
            params["ob_jd"], params["ob_rowid"] = self.order_at_or_before
        if self.rowid_at_most is not None:
            # Unary +: a bound on every row, never the plan's choice of index over the
            # filter's own (a rowid walk states its range separately).
            terms.append("+rowid <= :rowid_at_most")
            params["rowid_at_most"] = self.rowid_at_most
        return (" AND ".join(terms) or "1"), params


def row_select(schema: Schema) -> str:
    """Columns every row listing returns, in :class:`TaskRow` order."""
    return (
        f"rowid, cache_key, func_name, {schema.function}, {schema.col('result_type')},"
        f" {schema.col('result_value')}, length({schema.col('result_data')}),"
        f" {schema.col('expires_at')}, {schema.col('updated_at')}, {schema.col('version')}"
    )


_TASK_ROW_FIELDS = (
    "rowid cache_key func_name function result_type result_value data_size expires_at"
    " updated_at version"
)


class TaskRow(namedtuple("TaskRow", _TASK_ROW_FIELDS)):
    """One task's metadata (no payload): the row's columns, with ``function`` its
    display name (func_identifier, else func_name) and ``data_size`` len(result_data)
    or None.  ``expires_at``/``updated_at`` are as stored (any type SQLite holds).
    """

    __slots__ = ()

    @classmethod
    def from_sql(cls, row: tuple) -> TaskRow:
        return cls._make(row)


def select_batch(
    conn: sqlite3.Connection,
    schema: Schema,
    rfilter: RowFilter,
    after: tuple | None,
    limit: int,
) -> tuple[list[TaskRow], tuple | None]:
    """Next *limit* matching rows after keyset position *after*; returns (rows, position).

    The walk follows the filter's driving index (or rowid), so rows examined and
    rejected are never examined again: a walk is linear in the candidates, however
    many batches it takes.
    """
    cond, params = rfilter.where(schema)
    params = dict(params, limit=limit)
    driving = rfilter.driving_column(schema)
    if driving is None:
        order = "rowid"
        if after is not None:
            cond += " AND rowid > :after_r"
            params["after_r"] = after[0]
        sql = f"SELECT {row_select(schema)} FROM tasks WHERE {cond} ORDER BY rowid LIMIT :limit"
        rows = [TaskRow.from_sql(r) for r in conn.execute(sql, params)]
        return rows, ((rows[-1].rowid,) if rows else after)
    order = f"{driving}, rowid"
    if after is not None:
        cond += f" AND ({driving}, rowid) > (:after_v, :after_r)"
        params["after_v"], params["after_r"] = after
    sql = (
        f"SELECT {row_select(schema)}, {driving} FROM tasks WHERE {cond}"
        f" ORDER BY {order} LIMIT :limit"
    )
    raw = conn.execute(sql, params).fetchall()
    rows = [TaskRow.from_sql(r[:-1]) for r in raw]
    return rows, ((raw[-1][-1], raw[-1][0]) if raw else after)


def iter_rows(conn: sqlite3.Connection, schema: Schema, rfilter: RowFilter, batch: int = 5000):
    """Every row matching *rfilter*, streamed in keyset batches."""
    after = None
    while True:
        rows, after = select_batch(conn, schema, rfilter, after, batch)
        yield from rows
        if len(rows) < batch:
            return


def fetchall_text(conn: sqlite3.Connection, sql: str, params: object) -> list[tuple]:
    """``fetchall()`` with TEXT decoded by sqlite3's own (C) UTF-8 decoder; a result
    holding text that is not UTF-8 (rare) is fetched again with :func:`decode_text`.

    A Python ``text_factory`` call per value was a tenth of a million-row deletion.
    """
    factory = conn.text_factory
    if factory is not decode_text:
        return conn.execute(sql, params).fetchall()
    conn.text_factory = str
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
    finally:
        conn.text_factory = factory
    return conn.execute(sql, params).fetchall()


def batch_columns(schema: Schema) -> str:
    """What a deletion batch returns per row: (rowid, cache_key, function, inline bytes,
    result_value) -- what the audit log, the tallies and the blob checks need."""
    return (
        f"rowid, cache_key, {schema.function}, length({schema.col('result_data')}),"
        f" {schema.col('result_value')}"
    )


def delete_rowid_range(
    conn: sqlite3.Connection,
    schema: Schema,
    rfilter: RowFilter,
    lo: int,
    hi: int,
    limit: int,
) -> tuple[list[tuple], int]:
    """In the current transaction, delete the first *limit* rows matching *rfilter* with
    ``lo < rowid <= hi``; return them (:func:`batch_columns`) and the rowid up to which
    the range is now done.

    Two statements over one rowid range, no per-row DELETE: the SELECT says what goes
    (for the audit log), the DELETE repeats its WHERE over the same range.  In a write
    transaction nothing can change in between; the counts are checked anyway.
    """
    cond, params = rfilter.where(schema)
    params = dict(params, lo=lo, hi=hi, limit=limit)
    rows = fetchall_text(
        conn,
        f"SELECT {batch_columns(schema)} FROM tasks"
        f" WHERE rowid > :lo AND rowid <= :hi AND {cond} ORDER BY rowid LIMIT :limit",
        params,
    )
    if len(rows) >= limit:
        hi = params["hi"] = rows[-1][0]
    if rows:
        deleted = conn.execute(
            f"DELETE FROM tasks WHERE rowid > :lo AND rowid <= :hi AND {cond}", params
        ).rowcount
        if deleted != len(rows):
            raise sqlite3.DatabaseError(
                f"batch deleted {deleted} rows, selected {len(rows)}: rolled back"
            )
    return rows, hi


def delete_keyset_batch(
    conn: sqlite3.Connection,
    schema: Schema,
    rfilter: RowFilter,
    after: tuple | None,
    limit: int,
) -> tuple[list[tuple], tuple | None]:
    """Like :func:`delete_rowid_range`, along the filter's driving index (keyset
    position *after*, as :func:`select_batch`); deletes by rowid."""
    driving = rfilter.driving_column(schema)
    assert driving is not None
    cond, params = rfilter.where(schema)
    params = dict(params, limit=limit)
    if after is not None:
        cond += f" AND ({driving}, rowid) > (:after_v, :after_r)"
        params["after_v"], params["after_r"] = after
    raw = conn.execute(
        f"SELECT {batch_columns(schema)}, {driving} FROM tasks WHERE {cond}"
        f" ORDER BY {driving}, rowid LIMIT :limit",
        params,
    ).fetchall()
    delete_rowids(conn, [r[0] for r in raw])
    return [r[:-1] for r in raw], ((raw[-1][-1], raw[-1][0]) if raw else after)


def delete_rowids(conn: sqlite3.Connection, rowids: list[int]) -> int:
    """Delete rows by rowid in the current transaction; returns how many went."""
    before = conn.total_changes
    conn.executemany("DELETE FROM tasks WHERE rowid = ?", [(r,) for r in rowids])
    return conn.total_changes - before


def ensure_indexes(conn: sqlite3.Connection, schema: Schema) -> None:
    """Create the indexes this schema can have (idempotent, upstream-compatible)."""
    for name, column, body in INDEXES:
        if schema.has(column):
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} {body}")
