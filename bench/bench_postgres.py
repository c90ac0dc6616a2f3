"""Throughput of PostgresTaskDB: saves by several processes, and gc/prune on a big table.

    python bench/bench_postgres.py [--url URL] [--procs 1 2 4] [--threads 4]
                                   [--saves 3000] [--rows 100000] [--batch 5000]
                                   [--no-fsync]

**Writes.** For each N in ``--procs``, N worker processes (spawned, so each imports
the library and opens its own pool) each run ``--threads`` threads through one
``PostgresTaskDB``; every ``save`` is one upsert committed before it returns.  The
processes start together (a start time handed to them once they are ready), and rows/s
is every row saved divided by the time from the start to the last process's end.
``--saves`` is per process, split over its threads.  Rows look like upstream's: a 64-hex
key, a dozen function names, ~200 bytes of inline result, an expiry.

**Maintenance.** A table of ``--rows`` rows is loaded with ``save_many`` (COPY, 10,000
rows a call; its rate is reported too): a third already expired, and updated_at spread
over 60 days.  Then ``delete_expired()``, ``prune(30 days)`` and a ``delete_expired()``
with nothing left to delete are timed, in batches of ``--batch`` rows.

Without ``--url`` the bench starts a throw-away server of its own with
``tests/scaleout/pg_server.py`` (Unix socket, temp dir; fsync on unless ``--no-fsync``)
and creates a fresh database for each measurement.  With ``--url`` it works in that
database and **deletes every row of its ``tasks`` table** between measurements.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "scaleout"))

UTC = dt.timezone.utc
FUNCS = [f"fn_{i}" for i in range(12)]


def _rows(seed: int, n: int, now: dt.datetime) -> list[tuple]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        func = rng.choice(FUNCS)
        out.append(
            (
                rng.getrandbits(256).to_bytes(32, "big").hex(),
                func,
                f"app.tasks.{func}",
                rng.getrandbits(128).to_bytes(16, "big").hex(),
                None,
                "DIRECT_BLOB",
                None,
                None,
                rng.randbytes(200),
                now + dt.timedelta(seconds=rng.randrange(3600, 30 * 86400)),
            )
        )
    return out


def _writer(url: str, wid: int, threads: int, saves: int, ready, start_at) -> tuple:
    """One worker process: *threads* threads saving *saves* rows in all."""
    from beautyspot.postgres import PostgresTaskDB

    db = PostgresTaskDB(url, pool_size=threads)
    now = dt.datetime.now(UTC)
    per = saves // threads
    parts = [_rows(wid * 1000 + t, per, now) for t in range(threads)]
    errors: list[BaseException] = []

    def work(rows: list[tuple]) -> None:
        try:
            for r in rows:
                db.save(*r)
        except BaseException as exc:  # reported to the parent
            errors.append(exc)

    ready.put(wid)
    begin = start_at.get()
    while time.time() < begin:
        time.sleep(0.001)
    ts = [threading.Thread(target=work, args=(p,)) for p in parts]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    end = time.time()
    db.shutdown()
    if errors:
        raise errors[0]
    return per * threads, end


def bench_writes(new_url, procs: int, threads: int, saves: int) -> tuple[int, float]:
    url = new_url()
    from beautyspot.postgres import PostgresTaskDB

    PostgresTaskDB(url).shutdown()  # create the schema before the clock starts
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        ready, start_q = manager.Queue(), manager.Queue()
        with ctx.Pool(procs) as pool:
            results = [
                pool.apply_async(_writer, (url, w, threads, saves, ready, start_q))
                for w in range(procs)
            ]
            for _ in range(procs):
                ready.get(timeout=120)
            begin = time.time() + 0.2
            for _ in range(procs):
                start_q.put(begin)
            done = [r.get(timeout=600) for r in results]
    rows = sum(n for n, _ in done)
    elapsed = max(end for _, end in done) - begin
    count = PostgresTaskDB.count_tasks(url)
    if count != rows:
        raise SystemExit(f"expected {rows} rows, found {count}")
    return rows, elapsed


def bench_maintenance(new_url, rows: int, batch: int) -> list[tuple[str, int, float]]:
    from beautyspot.postgres import PostgresTaskDB

    url = new_url()
    now = dt.datetime.now(UTC)
    db = PostgresTaskDB(url, delete_batch=batch, pool_size=2)
    rng = random.Random(7)
    out = []
    try:
        started = time.perf_counter()
        chunk = 10_000
        for first in range(0, rows, chunk):
            part = []
            for i, r in enumerate(_rows(first, min(chunk, rows - first), now)):
                expires = now - dt.timedelta(hours=1) if (first + i) % 3 == 0 else r[9]
                updated = now - dt.timedelta(seconds=rng.randrange(60 * 86400))
                part.append((*r[:9], expires, updated))
            db.save_many(part)
        out.append(("load (save_many)", rows, time.perf_counter() - started))
        with db._connection() as conn:
            conn.execute("VACUUM ANALYZE tasks")
        for label, call in (
            ("delete_expired()", db.delete_expired),
            ("prune(30 days)", lambda: db.prune(dt.timedelta(days=30))),
            ("delete_expired(), none left", db.delete_expired),
        ):
            started = time.perf_counter()
            n = call()
            out.append((label, n, time.perf_counter() - started))
        left = PostgresTaskDB.count_tasks(url)
        out.append(("rows left", left, 0.0))
    finally:
        db.shutdown()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="an existing database (its tasks rows are deleted!)")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, default=4, help="threads per process")
    ap.add_argument("--saves", type=int, default=3000, help="rows saved per process")
    ap.add_argument("--rows", type=int, default=100_000, help="table size for gc/prune")
    ap.add_argument("--batch", type=int, default=5000, help="delete batch")
    ap.add_argument("--no-fsync", action="store_true", help="own server: fsync=off")
    args = ap.parse_args()

    server = None
    if args.url:
        from beautyspot.postgres import PostgresTaskDB

        def new_url() -> str:
            db = PostgresTaskDB(args.url)
            db.delete_all()
            db.shutdown()
            return args.url

        where = "given server"
    else:
        import pg_server

        server = pg_server.PgServer(fsync=not args.no_fsync).start()
        names = iter(range(1, 1000))

        def new_url() -> str:
            return server.create_database(f"bench{next(names)}")

        where = (
            f"own server ({server.bindir.parent.name}, fsync {'off' if args.no_fsync else 'on'})"
        )
    try:
        print(
            f"PostgresTaskDB bench: {where}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
        )
        print()
        print(f"{'processes':>9} {'threads':>7} {'rows':>7} {'seconds':>8} {'rows/s':>8}")
        for procs in args.procs:
            n, secs = bench_writes(new_url, procs, args.threads, args.saves)
            print(f"{procs:>9} {procs * args.threads:>7} {n:>7} {secs:>8.2f} {n / secs:>8.0f}")
        print()
        print(f"maintenance on {args.rows} rows (delete batch {args.batch})")
        print(f"{'step':<28} {'rows':>8} {'seconds':>8} {'rows/s':>9}")
        for label, n, secs in bench_maintenance(new_url, args.rows, args.batch):
            rate = f"{n / secs:>9.0f}" if secs > 0 and n else f"{'-':>9}"
            shown = f"{secs:>8.2f}" if secs else f"{'-':>8}"
            print(f"{label:<28} {n:>8} {shown} {rate}")
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
