"""Write throughput of SQLiteTaskDB.save from many threads, against raw sqlite3.

    python bench/bench_db.py [--rows N] [--threads T] [--repeat R]

Each of T threads saves N distinct rows (default 8 x 2,000) through one
``SQLiteTaskDB`` in a fresh temp dir; every ``save`` returns only once its row has
committed, so the group commit of the writer thread is what is measured.  The
baseline is the best SQLite can do with the same rows: one ``executemany`` in one
transaction, same table and indexes, WAL, ``synchronous=NORMAL``.  Both times end
with the rows in the DB file: the baseline's COMMIT runs SQLite's autocheckpoint, the
library's timing includes ``shutdown()`` (its last checkpoint).  The two run in
alternation, R times each (default 3), so both see the same machine load; the ratio
of the medians is reported, and each pair's ratio.  Always exits 0.

A third measurement, for information, is the **ceiling** of group commit with T
blocking callers: the same rows through plain ``sqlite3``, T rows per transaction, with
the writer's pragmas (WAL, ``synchronous=NORMAL``, its autocheckpoint) and no threads,
queue or wakeups.  A caller of ``save`` waits for its commit, so no group can hold more
than T rows, and the library cannot beat this loop; what is left between the two is the
cost of the threads (the queue, the wakeups, the GIL).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from beautyspot import sql
from beautyspot.db import WAL_AUTOCHECKPOINT, SQLiteTaskDB
from beautyspot.timeutil import format_ts

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TARGET = 25.0  # percent of raw executemany throughput

Row = tuple  # the save() arguments, in TaskDBCore.save order


def make_rows(threads: int, per_thread: int, seed: int = 1234) -> list[list[Row]]:
    """Realistic rows: 64-hex key, function names, ~200-byte msgpack-ish blob, expiry."""
    rng = random.Random(seed)
    funcs = [f"fn_{i}" for i in range(12)]
    out: list[list[Row]] = []
    for _ in range(threads):
        rows = []
        for _ in range(per_thread):
            key = rng.getrandbits(256).to_bytes(32, "big").hex()
            func = rng.choice(funcs)
            expires = NOW + dt.timedelta(seconds=rng.randrange(3600, 30 * 86400))
            rows.append(
                (
                    key,
                    func,
                    f"app.tasks.{func}",
                    rng.getrandbits(128).to_bytes(16, "big").hex(),
                    "v1" if rng.random() < 0.5 else None,
                    "DIRECT_BLOB",
                    "application/msgpack",
                    None,
                    rng.randbytes(rng.randrange(180, 221)),
                    expires,
                )
            )
        out.append(rows)
    return out


def bench_library(parts: list[list[Row]], workdir: Path) -> float:
    """Saves per second through SQLiteTaskDB, all threads started together."""
    db = SQLiteTaskDB(workdir / "ws" / "lib.db", clock=lambda: NOW)
    barrier = threading.Barrier(len(parts) + 1)
    errors: list[BaseException] = []

    def worker(rows: list[Row]) -> None:
        barrier.wait()
        try:
            for row in rows:
                db.save(*row)
        except BaseException as exc:  # reported below; a bench must not hide failures
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(rows,)) for rows in parts]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    # shutdown() inside the timing: it runs the last checkpoint, as the baseline's
    # COMMIT does (SQLite's autocheckpoint), so both times end with the rows in the DB file.
    db.shutdown()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    total = sum(len(rows) for rows in parts)
    saved = SQLiteTaskDB.count_tasks(workdir / "ws" / "lib.db")
    if saved != total:
        raise RuntimeError(f"library saved {saved} rows, expected {total}")
    return total / elapsed


_INSERT = (
    "INSERT OR REPLACE INTO tasks (cache_key, func_name, func_identifier, input_id,"
    " version, result_type, content_type, result_value, result_data, expires_at,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _plain_db(path: Path, *pragmas: str) -> sqlite3.Connection:
    """A plain sqlite3 connection on a new DB: WAL, synchronous=NORMAL, *pragmas*, the
    library's table and indexes."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", *pragmas):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(sql.CREATE_TABLE)
    sql.ensure_indexes(conn, sql.read_schema(conn))
    return conn


def _sql_params(rows: list[Row]) -> list[tuple]:
    """The INSERT parameters of *rows*, as save() makes them (part of the timed work)."""
    updated = format_ts(NOW)
    return [(*row[:9], format_ts(row[9]), updated) for row in rows]


def _rate(conn: sqlite3.Connection, rows: int, start: float, what: str) -> float:
    """Rows per second since *start*, once the DB holds exactly *rows* rows."""
    elapsed = time.perf_counter() - start
    count = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    conn.close()
    if count != rows:
        raise RuntimeError(f"{what} stored {count} rows, expected {rows}")
    return rows / elapsed


def bench_raw(parts: list[list[Row]], workdir: Path) -> float:
    """Rows per second of one executemany in one transaction (same table and indexes)."""
    conn = _plain_db(workdir / "raw.db")
    start = time.perf_counter()
    params = _sql_params([row for rows in parts for row in rows])
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(_INSERT, params)
    conn.execute("COMMIT")
    return _rate(conn, len(params), start, "raw insert")


def bench_commit_loop(parts: list[list[Row]], workdir: Path) -> float:
    """Rows per second of plain sqlite3 committing len(parts) rows per transaction, the
    rows in the order the threads would queue them, with the library writer's pragmas.
    Timed to the rows being in the DB file (a last checkpoint), like the other two."""
    conn = _plain_db(workdir / "loop.db", f"wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
    per = len(parts)
    start = time.perf_counter()
    params = _sql_params([row for group in zip(*parts, strict=True) for row in group])
    for i in range(0, len(params), per):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT, params[i : i + per])
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return _rate(conn, len(params), start, "commit loop")


def paired_rates(
    parts: list[list[Row]], repeat: int
) -> tuple[list[float], list[float], list[float]]:
    """(library, raw, commit-loop rates), measured in alternation so all see the same load."""
    lib, raw, loop = [], [], []
    for _ in range(repeat):
        for fn, rates in ((bench_library, lib), (bench_raw, raw), (bench_commit_loop, loop)):
            with tempfile.TemporaryDirectory(prefix="bs-bench-") as tmp:
                rates.append(fn(parts, Path(tmp)))
    return lib, raw, loop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000, help="saves per thread (default 2000)")
    ap.add_argument("--threads", type=int, default=8, help="writer threads (default 8)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)

    parts = make_rows(max(args.threads, 1), max(args.rows, 1), args.seed)
    total = sum(len(p) for p in parts)
    print(
        f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}: "
        f"{len(parts)} threads x {len(parts[0])} saves = {total} rows, median of {args.repeat}"
    )
    lib_runs, raw_runs, loop_runs = paired_rates(parts, args.repeat)
    lib, raw, loop = (statistics.median(r) for r in (lib_runs, raw_runs, loop_runs))
    pairs = [100.0 * a / b for a, b in zip(lib_runs, raw_runs, strict=True)]
    print("  library runs: " + ", ".join(f"{r:.0f}" for r in lib_runs))
    print("  raw runs:     " + ", ".join(f"{r:.0f}" for r in raw_runs))
    print("  ceiling runs: " + ", ".join(f"{r:.0f}" for r in loop_runs))
    print("  paired:       " + ", ".join(f"{r:.1f}%" for r in pairs))
    ratio = 100.0 * lib / raw
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(
        f"library: {lib:.0f} saves/s  raw executemany: {raw:.0f} rows/s  "
        f"ratio: {ratio:.1f}% (target >= {TARGET:.0f}%) {verdict}"
    )
    print(
        f"ceiling: {loop:.0f} rows/s = {100.0 * loop / raw:.1f}% of raw ({len(parts)} rows per"
        f" commit, no threads); the library reaches {100.0 * lib / loop:.0f}% of it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
