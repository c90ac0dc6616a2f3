"""Scenario 4: broken DBs beside a good one.

``rand.db`` (random bytes), ``trunc*.db`` (a valid task DB cut at seeded random points in
its first three quarters, rollback-journal and WAL headers), ``zero.db`` (empty file),
``x.db`` (a directory), ``alien.db`` and ``alien.sqlite`` (SQLite, no ``tasks`` table, one
of them in WAL mode). Every one has a blob dir full of old orphans and stale temp files.
For ``gc``, ``prune``, ``clear``, ``ls``, ``show`` and ``gc --dry-run``:

* each broken DB is reported on stderr, the exit code is 1, there is no traceback;
* no broken DB is modified, deleted or given ``-wal``/``-shm`` files, and no blob dir of a
  broken DB is swept (its whole tree is byte-for-byte unchanged);
* the good DB is still maintained: exactly its expected rows remain, no orphans.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
from pathlib import Path

from . import relkit
from .relkit import COMMANDS, OLD_MTIME

READS = {
    "ls": ["ls"],
    "gc-dry": ["gc", "--dry-run"],
    "show": ["show", hashlib.sha256(b"big-0").hexdigest()[:12]],
}


def make_broken(ws: Path, master: relkit.BigSpec, rng: random.Random, n_trunc: int) -> list[str]:
    """Add the broken DBs (and their blob dirs) to workspace *ws*; return their names."""
    names = []

    def blob_dir(name: str) -> None:
        d = ws / "blobs" / name
        for i in range(3):
            relkit.write_blob(d / f"{i:064x}.bin", b"precious?", OLD_MTIME)
        relkit.write_blob(d / "k.bin.00ff.spot_tmp", b"partial", OLD_MTIME)
        names.append(name)

    (ws / "rand.db").write_bytes(rng.randbytes(64 * 1024))
    blob_dir("rand")
    (ws / "zero.db").write_bytes(b"")
    blob_dir("zero")
    (ws / "x.db").mkdir()
    (ws / "x.db" / "inside.txt").write_text("a directory named like a DB")
    blob_dir("x")
    for name, wal in (("alien.db", False), ("alien.sqlite", True)):
        conn = sqlite3.connect(ws / name)
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO notes (body) VALUES (?)", [("x" * 100,)] * 200)
        conn.commit()
        conn.close()
    blob_dir("alien")
    good = (ws / "big.db").read_bytes()
    for i in range(n_trunc):
        # At most 75% of the file: table pages are lost, which every command notices. A
        # torn tail alone (the last page cut short) is the separate test below.
        cut = rng.randrange(1024, len(good) * 3 // 4)
        if i % 3 == 0:
            cut -= cut % 4096  # page-aligned
        name = f"trunc{i}"
        data = bytearray(good[:cut])
        if i % 2:
            data[18:20] = b"\x01\x01"  # rollback-journal header instead of WAL
        (ws / f"{name}.db").write_bytes(bytes(data))
        blob_dir(name)
    return names


def test_broken_dbs_reported_skipped_untouched(small_master, tmp_path, figures):
    rng = random.Random(f"{relkit.SEED}-broken")
    n_trunc = 12 if relkit.FULL else 4
    runs = reported = modified = swept = tracebacks = n_broken = 0
    problems: list[str] = []
    for label, args in [*COMMANDS.items(), *READS.items()]:
        ws = tmp_path / label / ".beautyspot"
        relkit.clone_workspace(small_master.root, ws)
        broken = make_broken(ws, small_master, random.Random(rng.random()), n_trunc)
        broken_files = sorted(p.name for p in ws.iterdir() if p.name not in ("big.db", "side.db"))
        before = {
            n: relkit.snapshot(ws / n) if (ws / n).is_dir() else (ws / n).read_bytes()
            for n in broken_files
            if n not in (".gitignore", "blobs")
        }
        blobs_before = {n: relkit.snapshot(ws / "blobs" / n) for n in broken}
        r = relkit.run(["-w", ws, *args])
        runs += 1
        tracebacks += r.traceback
        if r.returncode != 1:
            problems.append(f"{label}: exit {r.returncode}, expected 1\n{r.describe()}")
        db_names = [n for n in before if n.endswith((".db", ".sqlite"))]
        n_broken = len(db_names)
        for n in db_names:
            stem = n.rsplit(".", 1)[0]
            if any(stem in line for line in r.error_lines):
                reported += 1
            else:
                problems.append(f"{label}: {n} not reported on stderr\n{r.describe()}")
        for n, old in before.items():
            p = ws / n
            now = relkit.snapshot(p) if p.is_dir() else (p.read_bytes() if p.exists() else None)
            if now != old:
                modified += 1
                problems.append(f"{label}: {n} was modified or deleted")
        for n in db_names:
            for suffix in ("-wal", "-shm", "-journal"):
                if (ws / (n + suffix)).exists():
                    modified += 1
                    problems.append(f"{label}: {n}{suffix} was created")
        for n, old in blobs_before.items():
            if relkit.snapshot(ws / "blobs" / n) != old:
                swept += 1
                problems.append(
                    f"{label}: blob dir of broken DB {n} changed: "
                    f"{relkit.snapshot_diff(old, relkit.snapshot(ws / 'blobs' / n))[:3]}"
                )
        if label in COMMANDS:
            expected = relkit.expected_survivors(small_master, label)
            for db in small_master.rows:
                st = relkit.inspect(ws / f"{db}.db", ws / "blobs" / db)
                if set(st.rows) != expected[db] or st.dangling:
                    problems.append(f"{label}: good DB {db} not maintained as expected")
                if label == "gc" and (st.orphans or st.temps):
                    problems.append(f"{label}: good DB {db} kept orphans {st.orphans}")
        shutil.rmtree(ws.parent)
    figures(
        commands=runs,
        broken_dbs_per_run=n_broken,
        reports=reported,
        broken_dbs_modified=modified,
        blob_dirs_swept=swept,
        tracebacks=tracebacks,
    )
    assert not problems, "\n".join(problems[:20])
    assert tracebacks == 0


def test_truncated_header_sizes_never_trusted(small_master, tmp_path, figures):
    """A DB cut at page boundaries whose header claims the original size, and one whose
    header is patched to the cut size (SQLite then sees a consistent but shorter file
    missing rows): neither may have blobs of its lost rows deleted as orphans."""
    problems: list[str] = []
    runs = wrongly_deleted = tracebacks = 0
    good = (small_master.root / "big.db").read_bytes()
    page = int.from_bytes(good[16:18], "big")
    for fix_header in (False, True):
        for frac in (0.5, 0.8) if relkit.FULL else (0.8,):
            ws = tmp_path / f"h{int(fix_header)}-{frac}" / ".beautyspot"
            relkit.clone_workspace(small_master.root, ws)
            cut = int(len(good) * frac) // page * page
            data = bytearray(good[:cut])
            if fix_header:
                data[28:32] = (cut // page).to_bytes(4, "big")
            (ws / "big.db").write_bytes(bytes(data))
            referenced = {r[7] for r in small_master.rows["big"].values() if r[7]}
            r = relkit.run(["-w", ws, "gc"])
            runs += 1
            tracebacks += r.traceback
            present = relkit.blob_files(ws / "blobs" / "big")
            gone = referenced - present
            # Rows the DB still shows (and gc may legitimately expire) do not count.
            try:
                still = set(relkit.db_rows(ws / "big.db"))
            except sqlite3.DatabaseError:
                still = set()
            expired = {
                k + ".bin"
                for k in small_master.rows["big"]
                if k not in relkit.expected_survivors(small_master, "gc")["big"]
            }
            lost = {loc for loc in gone if loc[:-4] not in still and loc not in expired}
            wrongly_deleted += len(lost)
            if lost:
                problems.append(
                    f"header fixed={fix_header} cut={frac}: exit {r.returncode}, {len(lost)}"
                    f" blobs of rows lost in the truncation deleted as orphans"
                )
    figures(runs=runs, blobs_wrongly_deleted=wrongly_deleted, tracebacks=tracebacks)
    assert tracebacks == 0
    assert not problems, "\n".join(problems)


def test_torn_tail_reported_by_ls(small_master, tmp_path, figures):
    ws = tmp_path / ".beautyspot"
    relkit.clone_workspace(small_master.root, ws)
    good = (ws / "big.db").read_bytes()
    (ws / "big.db").write_bytes(good[: len(good) - 1400])
    before = relkit.snapshot(ws)
    r = relkit.run(["-w", ws, "ls"])
    figures(reported=int(any("big" in line for line in r.error_lines)), exit=r.returncode)
    assert relkit.snapshot_diff(before, relkit.snapshot(ws)) == []
    assert r.returncode == 1 and any("big" in line for line in r.error_lines), r.describe()
