"""Read-only access to task DBs with nothing but ``os`` and ``sqlite3``.

Opening a DB without creating a file, finding the DBs of a workspace, and the index range
queries behind prefix lookups.  :class:`beautyspot.db.TaskReader` and
:mod:`beautyspot.workspace` build on this, and shell completion uses it directly: a TAB
press must not pay for importing ``typing``, ``dataclasses`` or ``logging`` (about 3x
Python's own start-up), so this module imports only ``os``, ``sqlite3`` and
:mod:`beautyspot.errors`.  A test checks that.
"""

from __future__ import annotations

import os
import sqlite3

from .errors import DBError, DBNotFoundError

DB_SUFFIXES = (".db", ".sqlite")
MAX_PREFIX_RESULTS = 50

# Bytes kept as they are in a file: URI (RFC 3986 unreserved, and the separator).
_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")


# --------------------------------------------------------------------------- workspace


def is_db_name(name: str) -> bool:
    """A task DB's file name: ``<name>.db`` or ``<name>.sqlite``, not hidden."""
    return name.endswith(DB_SUFFIXES) and not name.startswith(".")


def db_files(root: str | os.PathLike) -> list[str]:
    """Paths of the entries of *root* named like task DBs, sorted (raises OSError)."""
    with os.scandir(root) as entries:
        return sorted(e.path for e in entries if is_db_name(e.name))


def find_db(root: str | os.PathLike, db: str | os.PathLike) -> str | None:
    """What ``--db DB`` names: the path *db*, else DB *db* of *root* (suffixed names first:
    ``old`` may also be the legacy blob folder ``old/``); None when nothing exists."""
    db = os.fspath(db)
    if os.path.exists(db):
        return db
    if os.sep not in db and os.path.isdir(root):
        for suffix in (*DB_SUFFIXES, ""):
            candidate = os.path.join(root, db + suffix)
            if os.path.isfile(candidate):
                return candidate
    return None


# --------------------------------------------------------------------------- opening


def uri_quote(path: str) -> str:
    """*path* percent-encoded for a ``file:`` URI (what ``urllib.parse.quote`` does)."""
    return "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in os.fsencode(path))


def file_uri(path: str, mode: str) -> str:
    """A ``file:`` URI for SQLite opening the absolute *path* with ``mode=`` *mode*."""
    return f"file:{uri_quote(path)}?mode={mode}"


def is_wal_without_log(path: str | os.PathLike) -> bool:
    """A WAL-mode DB with no ``-wal`` file: complete on disk and not open anywhere.

    Opening such a DB read-only the normal way makes SQLite create ``-wal`` and
    ``-shm`` files it cannot remove again; opening it ``immutable`` creates nothing.
    """
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    is_wal = len(header) == 20 and header[:16] == b"SQLite format 3\x00" and header[18] == 2
    return is_wal and not os.path.exists(f"{os.fspath(path)}-wal")


def open_readonly(path: str | os.PathLike, timeout: float = 5.0) -> sqlite3.Connection:
    """Open *path* read-only; create nothing; raise DBError subclasses on failure."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise DBNotFoundError(f"{p}: no such task DB")
    if not os.path.isfile(p):
        raise DBError(f"{p}: not a file")
    uri = file_uri(os.path.abspath(p), "ro")
    if is_wal_without_log(p):
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise DBError(f"{p}: cannot open: {exc}") from None
    return conn


def task_columns(conn: sqlite3.Connection) -> frozenset[str] | None:
    """The columns of ``tasks``, or None when the DB has no such table."""
    rows = conn.execute("PRAGMA table_info(tasks)").fetchall()
    return frozenset(str(r[1]) for r in rows) if rows else None


# --------------------------------------------------------------------------- prefixes


def next_prefix(prefix: str) -> str | None:
    """The smallest string greater than every string starting with *prefix*.

    SQLite compares TEXT bytewise (UTF-8), which is code-point order, so bumping the
    last code point gives the exclusive upper bound of an index range.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:  # surrogates cannot be stored; skip their block
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def prefix_range_sql(col: str) -> str:
    """Both bounds always present, so the index range is bounded on both sides (an
    optional upper bound would make SQLite scan from the prefix to the index's end)."""
    return f"({col} >= :prefix AND {col} < :prefix_end)"


# SQLite sorts every TEXT value before any BLOB: the upper bound when no string
# bounds the prefix (an empty prefix, or one of U+10FFFF characters).
ABOVE_ALL_TEXT = b""


def prefix_params(prefix: str) -> dict[str, object]:
    end = next_prefix(prefix)
    return {"prefix": prefix, "prefix_end": ABOVE_ALL_TEXT if end is None else end}


def keys_with_prefix(
    conn: sqlite3.Connection, prefix: str, limit: int = MAX_PREFIX_RESULTS
) -> list[str]:
    """Keys starting with *prefix* (case-sensitive, wildcards literal), sorted.

    An index range on the primary key: a few page reads whatever the table size.
    """
    params = dict(prefix_params(prefix), limit=limit)
    try:
        return [
            r[0]
            for r in conn.execute(
                "SELECT cache_key FROM tasks WHERE "
                + prefix_range_sql("cache_key")
                + " ORDER BY cache_key LIMIT :limit",
                params,
            )
        ]
    except UnicodeEncodeError:  # lone surrogates: no stored key can match
        return []


def functions_with_prefix(
    conn: sqlite3.Connection,
    columns: frozenset[str],
    prefix: str,
    limit: int = MAX_PREFIX_RESULTS,
) -> list[str]:
    """Distinct function names (short and qualified) starting with *prefix*, sorted.

    A skip scan: one ``min()`` index lookup per distinct name, so a million rows of
    forty functions cost forty lookups, not a million (with ``idx_func_name`` and
    ``idx_func_identifier``; without them each lookup scans).
    """
    names: set[str] = set()
    end = prefix_params(prefix)["prefix_end"]
    for col in ("func_name", "func_identifier"):
        if col not in columns:
            continue
        sql = f"SELECT min({col}) FROM tasks WHERE {col} > :after AND {col} < :end"
        try:
            first = conn.execute(
                f"SELECT min({col}) FROM tasks WHERE {col} >= :start AND {col} < :end",
                {"start": prefix, "end": end},
            ).fetchone()[0]
            found = 0
            while isinstance(first, str) and found < limit:
                names.add(first)
                found += 1
                first = conn.execute(sql, {"after": first, "end": end}).fetchone()[0]
        except UnicodeEncodeError:  # lone surrogates: nothing stored can match
            return []
    return sorted(names)[:limit]
