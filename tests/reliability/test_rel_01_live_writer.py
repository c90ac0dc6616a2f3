"""Scenario 1: a live writer saves FILE rows while ``gc`` loops over the workspace.

The writer is a separate process that saves the way the library does: the blob first
(``LocalStorage.save``: temp file, fsync, rename), the row after
(``SQLiteTaskDB.save``, which returns once committed). After each committed save it
appends ``seq key expired`` to a log. Meanwhile the test runs ``beautyspot gc`` in a loop
on the real clock (default 1h grace). Afterwards:

* zero committed rows whose blob is gone (dangling);
* zero rows lost: every key whose last committed save was live is in the DB, and its
  blob holds exactly the bytes of that last save;
* the gc runs really deleted rows meanwhile (expired saves), so the race was exercised.

``new`` mode saves fresh keys (a third already expired); ``same`` mode re-saves a pool of
200 keys (half the saves already expired), starting from expired rows and orphan blobs of
those very keys, so gc deletes expired predecessors while their keys are being re-saved.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import relkit

WRITER = r"""
import datetime as dt, os, random, sys, time
from beautyspot.db import SQLiteTaskDB
from beautyspot.storage import LocalStorage

ws, mode, seconds, seed, log_path = sys.argv[1:6]
seconds = float(seconds)
rng = random.Random(seed)
db = SQLiteTaskDB(os.path.join(ws, "live.db"), timeout=60)
storage = LocalStorage(os.path.join(ws, "blobs", "live"))
now = dt.datetime.now(dt.timezone.utc)
past, future = now - dt.timedelta(days=1), now + dt.timedelta(days=30)
deadline = time.monotonic() + seconds
seq = 0
with open(log_path, "w") as log:
    print("ready", flush=True)
    while time.monotonic() < deadline:
        seq += 1
        if mode == "new":
            key = f"w{seq:08d}"
            kind = seq % 3  # 0 expired, 1 live, 2 no expiry
            expired = kind == 0
            expires = past if expired else (future if kind == 1 else None)
        else:
            key = f"s{rng.randrange(200):04d}"
            expired = rng.random() < 0.5
            expires = past if expired else future
        location = storage.save(key, f"{key}:{seq}".encode())
        db.save(key, "job", "app.job", f"in{seq}", None, "FILE", "application/octet-stream",
                result_value=location, expires_at=expires)
        log.write(f"{seq} {key} {int(expired)}\n")
        log.flush()
db.shutdown()
print(seq, flush=True)
"""


def seed_workspace(ws: Path, mode: str) -> None:
    """The DB (upstream schema, WAL) and, in ``same`` mode, expired rows and orphans of
    the pool keys, with blobs long past the grace period."""
    blob_dir = ws / "blobs" / "live"
    blob_dir.mkdir(parents=True)
    rows = []
    if mode == "same":
        old = time.time() - 30 * 86400
        for i in range(200):
            key = f"s{i:04d}"
            relkit.write_blob(blob_dir / f"{key}.bin", f"{key}:seed".encode(), old)
            if i % 2 == 0:  # an expired row; odd keys: orphan blob, no row
                rows.append(
                    relkit.file_row(
                        key,
                        "app.job",
                        f"{key}.bin",
                        relkit.ts(dt.datetime(2026, 1, 1, tzinfo=relkit.UTC)),
                        relkit.ts(dt.datetime(2025, 12, 1, tzinfo=relkit.UTC)),
                    )
                )
    relkit.create_db(ws / "live.db", rows)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["new", "same"])
def test_live_writer_during_gc_loop(mode, tmp_path, figures):
    seconds = 20.0 if relkit.FULL else 2.5
    ws = tmp_path / ".beautyspot"
    seed_workspace(ws, mode)
    log_path = tmp_path / "writer.log"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, ws, mode, str(seconds), str(relkit.SEED), log_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "ready"
    gc_runs = rows_deleted = files_deleted = kept_changed = tracebacks = bad_exits = 0
    problems = []
    while writer.poll() is None:
        # Real clock: the writer's expiries are relative to it, and fresh blobs stay
        # inside the grace period as they must.
        r = relkit.run(["-w", ws, "--json", "gc"], now=None)
        gc_runs += 1
        tracebacks += r.traceback
        if r.returncode != 0:
            bad_exits += 1
            problems.append(r.describe())
            continue
        doc = json.loads(r.stdout)
        rows_deleted += doc["totals"]["rows"]
        files_deleted += doc["totals"]["files"]
        kept_changed += len(doc["kept"])
    out, err = writer.communicate()
    assert writer.returncode == 0, err
    saves = int(out.split()[-1])
    final = relkit.run(["-w", ws, "gc"], now=None)
    gc_runs += 1
    tracebacks += final.traceback
    assert final.returncode == 0, final.describe()

    last: dict[str, tuple[int, bool]] = {}
    for line in log_path.read_text().splitlines():
        seq, key, expired = line.split()
        last[key] = (int(seq), expired == "1")
    st = relkit.inspect(ws / "live.db", ws / "blobs" / "live")
    lost = wrong_content = 0
    for key, (seq, expired) in last.items():
        row = st.rows.get(key)
        if row is None:
            if not expired:
                lost += 1
                problems.append(f"live row {key} (save {seq}) lost")
            continue
        path = ws / "blobs" / "live" / row[2]
        if path.is_file() and path.read_bytes() != f"{key}:{seq}".encode():
            wrong_content += 1
            problems.append(f"{key}: blob is {path.read_bytes()!r}, last save was {seq}")
    if st.dangling:
        problems.append(f"dangling rows: {st.dangling[:5]}")
    if st.integrity != "ok":
        problems.append(f"integrity: {st.integrity}")

    figures(
        mode=mode,
        seconds=seconds,
        writer_saves=saves,
        gc_runs=gc_runs,
        rows_deleted_by_gc=rows_deleted,
        files_deleted_by_gc=files_deleted,
        files_kept_as_changed=kept_changed,
        dangling_rows=len(st.dangling),
        rows_lost=lost,
        blobs_wrong_or_lost=wrong_content,
        tracebacks=tracebacks,
        bad_exits=bad_exits,
    )
    assert not problems, "\n".join(problems[:20])
    assert tracebacks == 0
    assert saves > 50 and gc_runs >= 2, "the race was not exercised"
    assert rows_deleted > 0, "gc never deleted anything while the writer ran"
