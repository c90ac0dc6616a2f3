"""Write a synthetic upstream-format beautyspot workspace for benchmarks.

    python bench/make_workspace.py ROWS [--out DIR] [--seed N] [--now ISO] [--name NAME]
                                        [--indexes] [--orphan-pct 5]

Layout and format are upstream's (SPEC §2-§3): ``DIR/.gitignore`` (``*``), one task DB
``DIR/<name>.db`` in WAL mode with ``beautyspot.sql.CREATE_TABLE``, and
``DIR/blobs/<name>/<key>.bin`` for every FILE row.  Timestamps use upstream's form
``YYYY-MM-DD HH:MM:SS.ffffff+00:00`` (no fraction when the microseconds are 0).

Content, relative to ``--now`` (default 2026-12-10T00:00:00Z; run the CLI with
``BEAUTYSPOT_NOW`` set to the same instant):

* ROWS rows over 40 functions (skewed: a few functions hold most rows), 64-hex keys;
* 1 row in 10 is a FILE row (``result_value = <key>.bin``, a real 0.5-4 kB blob file whose
  mtime is the row's ``updated_at``); the rest are DIRECT_BLOB rows with an inline
  MessagePack payload (40-400 bytes);
* 25 % of rows are expired (``expires_at`` between ``updated_at`` and now); of the others,
  one in five never expires (NULL) and the rest expire 1 h-60 d after now;
* one third of rows were last updated 40-400 days ago, the rest 0-29 days ago (so
  ``prune --older-than 30d`` selects exactly that third);
* ``--orphan-pct`` (default 5) percent of the FILE-row blob count as extra orphan blobs (no
  row names them), with mtimes 2 h-30 d before now, i.e. past gc's default 1 h grace.

Upstream 2.7.7 creates no index in practice (the real fixture has none), so neither does
this script unless ``--indexes`` is given (then: every index ``beautyspot.sql.INDEXES``
defines).  Rows are inserted in ``updated_at`` order (as a cache grows) with one
``executemany`` in one transaction.  The output is deterministic for a given
(ROWS, seed, now, orphan-pct); a JSON manifest (counts, sample keys) goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from beautyspot import sql

UTC = dt.timezone.utc
DEFAULT_NOW = "2026-12-10T00:00:00Z"
N_FUNCTIONS = 40
DAY = 86_400

_VERBS = ["ask", "embed", "fetch", "parse", "render", "score", "load", "train", "rank", "summarize"]
_NOUNS = ["page", "chunk", "query", "image", "doc", "user", "batch", "model"]


def parse_now(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def ts(moment: dt.datetime) -> str:
    """Upstream's storage form (same as beautyspot.timeutil.format_ts)."""
    return moment.isoformat(sep=" ")


def functions(rng: random.Random) -> list[tuple[str, str, str | None]]:
    """(func_name, func_identifier, version) of the N_FUNCTIONS functions."""
    out = []
    for i in range(N_FUNCTIONS):
        name = f"{_VERBS[i % len(_VERBS)]}_{_NOUNS[(i // len(_VERBS) + i) % len(_NOUNS)]}"
        if i >= len(_VERBS) * 2:
            name += f"_{i}"
        module = f"app.{['pipeline', 'llm', 'etl', 'web'][i % 4]}"
        version = rng.choice(["v1", "v2", "2024-01", None, None])
        out.append((name, f"{module}.{name}", version))
    return out


def payload_pool(rng: random.Random, n: int, lo: int, hi: int) -> list[bytes]:
    """MessagePack payloads (a map with a string and a list) of lo..hi bytes."""
    import msgpack

    pool = []
    for i in range(n):
        size = rng.randrange(lo, hi)
        body = {"id": i, "text": "x" * max(0, size - 40), "vals": [rng.random() for _ in range(2)]}
        pool.append(msgpack.packb(body, use_bin_type=True))
    return pool


def make_workspace(
    rows: int,
    out: Path,
    *,
    seed: int = 42,
    now: dt.datetime,
    name: str = "bench",
    indexes: bool = False,
    orphan_pct: float = 5.0,
) -> dict:
    if out.exists():
        shutil.rmtree(out)
    blob_dir = out / "blobs" / name
    blob_dir.mkdir(parents=True)
    (out / ".gitignore").write_text("*\n")
    (blob_dir / ".gitignore").write_text("*\n")

    rng = random.Random(seed)
    funcs = functions(rng)
    weights = [1.0 / (i + 1) for i in range(N_FUNCTIONS)]  # Zipf-like: realistic skew
    inline_pool = payload_pool(rng, 512, 40, 400)
    blob_pool = payload_pool(rng, 64, 500, 4000)

    func_idx = rng.choices(range(N_FUNCTIONS), weights, k=rows)
    now_s = now.timestamp()
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    records = []
    files: list[tuple[str, int, int]] = []  # (key, pool index, mtime ns)
    n_file = n_expired = n_old = n_never = 0
    rand = rng.random
    getbits = rng.getrandbits
    for i in range(rows):
        key = f"{getbits(256):064x}"
        input_id = f"{getbits(256):064x}"
        fname, fident, version = funcs[func_idx[i]]
        old = rand() < 1 / 3
        age = (40 + rand() * 360) * DAY if old else rand() * 29 * DAY
        updated_s = now_s - age
        updated_us = int(updated_s * 1e6)
        updated = epoch + dt.timedelta(microseconds=updated_us)
        r = rand()
        if r < 0.25:  # expired: some instant between the write and now
            expires = updated + dt.timedelta(seconds=rand() * age)
            expires_txt = ts(expires)
            n_expired += 1
        elif r < 0.40:
            expires_txt = None
            n_never += 1
        else:
            expires_txt = ts(now + dt.timedelta(seconds=3600 + rand() * 60 * DAY))
        n_old += old
        if rand() < 0.1:
            n_file += 1
            pool_i = getbits(6)
            files.append((key, pool_i, updated_us * 1000))
            rtype, rvalue, rdata = "FILE", f"{key}.bin", None
        else:
            rtype, rvalue, rdata = "DIRECT_BLOB", None, inline_pool[getbits(9)]
        records.append(
            (
                key,
                fname,
                fident,
                input_id,
                rtype,
                rvalue,
                rdata,
                None,
                version,
                expires_txt,
                ts(updated),
            )
        )
    records.sort(key=lambda rec: rec[10])  # the order a cache grows in

    db_path = out / f"{name}.db"
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB: random-key inserts stay in memory
    conn.execute(sql.CREATE_TABLE)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (cache_key, func_name, func_identifier, input_id, result_type,"
        " result_value, result_data, content_type, version, expires_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        records,
    )
    if indexes:
        sql.ensure_indexes(conn, sql.read_schema(conn))
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")  # upstream's mode; persistent in the file
    conn.close()  # last connection: no -wal/-shm left behind

    for key, pool_i, mtime_ns in files:
        path = blob_dir / f"{key}.bin"
        path.write_bytes(blob_pool[pool_i])
        os.utime(path, ns=(mtime_ns, mtime_ns))
    n_orphans = round(len(files) * orphan_pct / 100)
    orphan_bytes = 0
    for _ in range(n_orphans):
        path = blob_dir / f"{getbits(256):064x}.bin"
        data = blob_pool[getbits(6)]
        orphan_bytes += len(data)
        path.write_bytes(data)
        mtime_ns = int((now_s - 7200 - rand() * 30 * DAY) * 1e9)
        os.utime(path, ns=(mtime_ns, mtime_ns))

    # Sample keys for `show`: a FILE row and an inline row, both live and recent.
    by_type: dict[str, str] = {}
    for rec in reversed(records):
        if rec[9] is None or rec[9] > ts(now):
            by_type.setdefault(rec[4], rec[0])
        if len(by_type) == 2:
            break
    return {
        "workspace": str(out),
        "db": str(db_path),
        "name": name,
        "rows": rows,
        "seed": seed,
        "now": now.isoformat().replace("+00:00", "Z"),
        "indexes": indexes,
        "functions": N_FUNCTIONS,
        "file_rows": n_file,
        "expired": n_expired,
        "never_expire": n_never,
        "old_40d": n_old,
        "orphans": n_orphans,
        "orphan_bytes": orphan_bytes,
        "blob_files": len(files) + n_orphans,
        "db_bytes": db_path.stat().st_size,
        "sample_file_key": by_type.get("FILE"),
        "sample_inline_key": by_type.get("DIRECT_BLOB"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", type=int, help="number of task rows")
    ap.add_argument("--out", type=Path, default=None, help="workspace dir (default ./ws-ROWS)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--now", default=DEFAULT_NOW, help=f"reference instant (default {DEFAULT_NOW})")
    ap.add_argument("--name", default="bench", help="DB name (default bench)")
    ap.add_argument(
        "--indexes", action="store_true", help="create beautyspot.sql.INDEXES (upstream: none)"
    )
    ap.add_argument(
        "--orphan-pct", type=float, default=5.0, help="orphans, %% of the FILE-row blobs"
    )
    args = ap.parse_args(argv)
    if args.rows < 1:
        ap.error("ROWS must be positive")
    out = args.out or Path(f"ws-{args.rows}")
    start = time.perf_counter()
    manifest = make_workspace(
        args.rows,
        out,
        seed=args.seed,
        now=parse_now(args.now),
        name=args.name,
        indexes=args.indexes,
        orphan_pct=args.orphan_pct,
    )
    manifest["seconds"] = round(time.perf_counter() - start, 2)
    json.dump(manifest, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
