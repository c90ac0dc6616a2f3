"""The maintenance commands on a shared cache: ``beautyspot`` against PostgreSQL and S3.

    python bench/bench_scaleout.py [--rows 1000000] [--blob-rows 5000] [--repeat 1]

A throw-away PostgreSQL server (``tests/scaleout/pg_server.py``, fsync on) and moto's
S3 server (``tests/scaleout/moto_server.py``, on 127.0.0.1) are started; a ``tasks``
table of ``--rows`` rows is loaded with ``PostgresTaskDB.save_many`` (a quarter expired,
a third last updated 40+ days ago, over 40 functions), of which ``--blob-rows`` are FILE
rows whose blobs are uploaded to S3, plus 5 % of that in orphan blobs.  Then the
installed ``beautyspot`` runs, as cron would, in a child process:
``gc --dry-run``, ``gc``, ``prune --older-than 30d --dry-run``, ``prune --older-than 30d
--yes``, each timed (wall clock, one run each by default; the destructive ones run on
the table as the previous command left it, so ``prune`` deletes what ``gc`` kept).

moto is an emulator written in Python: its S3 requests cost far more than a real S3
endpoint's, so the blob side of these figures is a pessimistic bound, and the row side
(the PostgreSQL part) is what scales with ``--rows``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "scaleout"))

UTC = dt.timezone.utc
# The rows are dated from the real clock: S3 stamps the blobs with it (LastModified).
NOW = dt.datetime.now(UTC).replace(microsecond=0)
BUCKET, PREFIX = "bench-blobs", "cache"


def _rows(n: int, blob_rows: int, seed: int = 7):
    rng = random.Random(seed)
    funcs = [f"app.mod.fn_{i}" for i in range(40)]
    blob_every = max(1, n // blob_rows) if blob_rows else 0
    for i in range(n):
        key = rng.getrandbits(256).to_bytes(32, "big").hex()
        func = rng.choice(funcs)
        r = rng.random()
        expires = NOW - dt.timedelta(hours=1) if r < 0.25 else NOW + dt.timedelta(days=30)
        age = rng.uniform(40, 90) if rng.random() < 1 / 3 else rng.uniform(0, 29)
        updated = NOW - dt.timedelta(days=age)
        if blob_every and i % blob_every == 0:
            yield (key, func.rsplit(".", 1)[1], func, "in", None, "FILE", None, f"{key}.bin",
                   None, expires, updated)  # fmt: skip
        else:
            yield (key, func.rsplit(".", 1)[1], func, "in", None, "DIRECT_BLOB", None, None,
                   rng.randbytes(200), expires, updated)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--blob-rows", type=int, default=5000)
    args = ap.parse_args(argv)

    import moto_server
    import pg_server

    from beautyspot.postgres import PostgresTaskDB

    os.environ.update(moto_server.FAKE_ENV)
    server = pg_server.PgServer(fsync=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="bs-bench-s3-"))
    moto, endpoint = moto_server._start(tmp / "moto.log")
    try:
        url = server.create_database("bench")
        client = moto_server.make_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        db = PostgresTaskDB(url, clock=lambda: NOW)
        t0 = time.perf_counter()
        batch, blobs = [], []
        for row in _rows(args.rows, args.blob_rows):
            batch.append(row)
            if row[5] == "FILE":
                blobs.append(row[7])
            if len(batch) == 10_000:
                db.save_many(batch)
                batch = []
        db.save_many(batch)
        db.shutdown()
        load_s = time.perf_counter() - t0
        orphans = [f"orphan{i:06d}.bin" for i in range(len(blobs) // 20)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda loc: client.put_object(
                        Bucket=BUCKET, Key=f"{PREFIX}/{loc}", Body=os.urandom(512)
                    ),
                    blobs + orphans,
                )
            )
        upload_s = time.perf_counter() - t0
        print(
            f"loaded {args.rows:,} rows in {load_s:.1f} s; uploaded {len(blobs):,} blobs"
            f" + {len(orphans):,} orphans to moto in {upload_s:.1f} s"
        )
        env = dict(
            os.environ,
            BEAUTYSPOT_S3_ENDPOINT=endpoint,
            # The blobs were uploaded just now: a clock 2 days on makes the orphans old.
            BEAUTYSPOT_NOW=(NOW + dt.timedelta(days=2)).isoformat(),
        )
        bs = str(Path(sys.executable).parent / "beautyspot")
        common = ["--db", url, "--blobs", f"s3://{BUCKET}/{PREFIX}"]
        print(f"{'command':<40} {'seconds':>8}  result")
        for cmd in (
            ["gc", "--dry-run"],
            ["gc"],
            ["prune", "--older-than", "30d", "--dry-run"],
            ["prune", "--older-than", "30d", "--yes"],
        ):
            t0 = time.perf_counter()
            r = subprocess.run([bs, *common, *cmd], capture_output=True, text=True, env=env)
            secs = time.perf_counter() - t0
            last = (r.stdout.strip().splitlines() or [r.stderr.strip()])[-1]
            print(f"{' '.join(cmd):<40} {secs:8.2f}  rc={r.returncode} {last}")
    finally:
        moto_server._stop(moto)
        server.stop()
        server.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
