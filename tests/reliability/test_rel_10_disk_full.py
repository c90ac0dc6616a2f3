"""Scenario 10: disk full and write errors while deleting.

* A small tmpfs (mounted for the test; skipped, with the reason, where mount is not
  allowed) holding the workspace, filled up but for a few (seeded random) kB: ``gc``,
  ``prune`` and ``clear`` need disk space to delete (SQLite's WAL, the audit log).
* ``RLIMIT_FSIZE`` set in the child (``preexec_fn``): no file may grow past a few kB.
* A read-only blob dir (read-only bind mount): rows can go, their files cannot.

Each time: exit 0 (there was room) or 1 with ``beautyspot: error:`` lines only, no
traceback; ``PRAGMA integrity_check`` ok; no row names a missing blob; no row the command
must keep is lost. Then, with the space (or permission) back, a rerun exits 0, leaves
exactly the expected rows, and a gc past the grace period leaves no orphan (by default
for one trial per test; for every trial with the full count).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from . import relkit
from .relkit import COMMANDS, NOW

FINAL_NOW = (NOW + dt.timedelta(days=2)).isoformat()


def check_state(ws, master, command, label, *, done: bool) -> tuple[dict, list[str]]:
    """Integrity, dangling rows, lost rows; with *done*: exactly the expected rows."""
    figs = dict(integrity_failures=0, dangling_rows=0, rows_lost=0, rows_left_undone=0)
    problems = []
    expected = relkit.expected_survivors(master, command)
    for db in master.rows:
        st = relkit.inspect(ws / f"{db}.db", ws / "blobs" / db)
        keys = set(st.rows)
        if st.integrity != "ok":
            figs["integrity_failures"] += 1
            problems.append(f"{label} {db}: integrity {st.integrity}")
        if st.dangling:
            figs["dangling_rows"] += len(st.dangling)
            problems.append(f"{label} {db}: dangling rows {st.dangling[:3]}")
        lost = expected[db] - keys
        if lost:
            figs["rows_lost"] += len(lost)
            problems.append(f"{label} {db}: {len(lost)} rows lost")
        if done and keys - expected[db]:
            figs["rows_left_undone"] += len(keys - expected[db])
            problems.append(f"{label} {db}: {len(keys - expected[db])} rows left undone")
    return figs, problems


def classify(r: relkit.Run, label: str) -> tuple[str, list[str]]:
    if r.traceback:
        return "traceback", [f"{label}: traceback\n{r.describe()}"]
    errors = r.error_lines
    if r.returncode == 0:
        return "ok", []
    if r.returncode == 1 and errors and all(e.startswith("beautyspot: ") for e in errors):
        if any(e.startswith("beautyspot: error: ") for e in errors):
            return "clean_error", []
    return "bad", [f"{label}: unclear failure\n{r.describe()}"]


def after_recovery(ws, master, command, label) -> tuple[dict, list[str]]:
    figs = dict(bad_reruns=0, orphans_left=0)
    problems = []
    again = relkit.run(["-w", ws, *COMMANDS[command]])
    if again.returncode != 0 or again.traceback:
        figs["bad_reruns"] += 1
        problems.append(f"{label}: rerun with space back failed\n{again.describe()}")
    f2, p2 = check_state(ws, master, command, label + " rerun", done=True)
    final = relkit.run(["-w", ws, "gc"], now=FINAL_NOW)
    if final.returncode != 0:
        figs["bad_reruns"] += 1
        problems.append(f"{label}: final gc failed\n{final.describe()}")
    for db in master.rows:
        st = relkit.inspect(ws / f"{db}.db", ws / "blobs" / db)
        figs["orphans_left"] += len(st.orphans) + len(st.temps)
        if st.orphans or st.temps or st.dangling:
            problems.append(f"{label} {db}: after final gc orphans={sorted(st.orphans)[:3]}")
    for k, v in f2.items():
        figs[k] = figs.get(k, 0) + v
    return figs, problems + p2


def add(total: dict, part: dict) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


@pytest.fixture
def tmpfs(tmp_path, big_master):
    """A tmpfs with room for one copy of the big workspace and its deletions (WAL)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    used = sum(
        (os.path.getsize(os.path.join(d, f)) + 4095) // 4096 * 4096
        for d, _dirs, files in os.walk(big_master.root)
        for f in files
    )
    size_mb = 2 * used // (1 << 20) + 64
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", mnt],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        why = f"cannot mount a tmpfs: {r.stderr.strip() or r.returncode}"
        print(f"SKIP reason: {why}")
        pytest.skip(why)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def fill(mnt: Path, free: int) -> Path:
    """Occupy all of *mnt* but *free* bytes."""
    st = os.statvfs(mnt)
    avail = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, max(avail - free, 0))
    return filler


@pytest.mark.slow
def test_full_tmpfs_while_deleting(big_master, tmpfs, tmp_path, figures):
    rng = random.Random(f"{relkit.SEED}-tmpfs")
    n = max(1, relkit.trials(2) // 2)
    total: dict = {}
    outcomes = {"ok": 0, "clean_error": 0, "bad": 0, "traceback": 0}
    problems: list[str] = []
    for command in COMMANDS:
        for t in range(n):
            free = rng.choice([0, 16384, 65536, 262144, 1 << 20, 4 << 20]) + rng.randrange(4096)
            ws = tmpfs / f"{command}{t}" / ".beautyspot"
            relkit.clone_workspace(big_master.root, ws, link=False)
            filler = fill(tmpfs, free)
            label = f"{command} free={free}"
            r = relkit.run(["-w", ws, *COMMANDS[command]])
            kind, p = classify(r, label)
            outcomes[kind] += 1
            problems += p
            # Inspect a copy: reading a WAL DB on the full disk needs room for its -shm.
            seen = tmp_path / "seen" / ".beautyspot"
            shutil.copytree(ws, seen, symlinks=True)
            f, p = check_state(seen, big_master, command, label, done=False)
            shutil.rmtree(seen.parent)
            add(total, f)
            problems += p
            filler.unlink()
            if t == 0 and command == "gc" or relkit.FULL:
                f, p = after_recovery(ws, big_master, command, label)
                add(total, f)
                problems += p
            shutil.rmtree(ws.parent)
    figures(trials=sum(outcomes.values()), **outcomes, **total)
    assert not problems, "\n".join(problems[:10])
    assert outcomes["clean_error"] > 0, "the disk never ran out: the test proved nothing"


@pytest.mark.slow
def test_rlimit_fsize_while_deleting(big_master, tmp_path, figures):
    rng = random.Random(f"{relkit.SEED}-rlimit")
    n = max(1, relkit.trials(2) // 2)
    total: dict = {}
    outcomes = {"ok": 0, "clean_error": 0, "bad": 0, "traceback": 0}
    problems: list[str] = []
    for command in COMMANDS:
        for t in range(n):
            limit = rng.choice([0, 1024, 8192, 65536]) + rng.randrange(1024)
            ws = tmp_path / f"{command}{t}" / ".beautyspot"
            relkit.clone_workspace(big_master.root, ws)

            def cap(limit=limit):
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

            label = f"{command} RLIMIT_FSIZE={limit}"
            r = relkit.run(["-w", ws, *COMMANDS[command]], preexec_fn=cap)
            kind, p = classify(r, label)
            outcomes[kind] += 1
            problems += p
            f, p = check_state(ws, big_master, command, label, done=False)
            add(total, f)
            problems += p
            if t == 0 and command == "prune" or relkit.FULL:
                f, p = after_recovery(ws, big_master, command, label)
                add(total, f)
                problems += p
            shutil.rmtree(ws.parent)
    figures(trials=sum(outcomes.values()), **outcomes, **total)
    assert not problems, "\n".join(problems[:10])
    assert outcomes["clean_error"] > 0, "no write ever failed: the test proved nothing"


def test_read_only_blob_dir_while_deleting(small_master, figures):
    """Rows can be deleted, their files cannot (EROFS): a clear error, no dangling row,
    the other DB still maintained, and everything cleaned once the dir is writable."""
    base = Path(tempfile.mkdtemp(prefix="bs-rel-erofs-"))
    ws = base / ".beautyspot"
    relkit.clone_workspace(small_master.root, ws, link=False)
    blob_dir = ws / "blobs" / "big"
    r1 = subprocess.run(["mount", "--bind", blob_dir, blob_dir], capture_output=True, text=True)
    if r1.returncode != 0:
        shutil.rmtree(base)
        why = f"cannot bind-mount: {r1.stderr.strip()}"
        print(f"SKIP reason: {why}")
        pytest.skip(why)
    try:
        r2 = subprocess.run(
            ["mount", "-o", "remount,bind,ro", blob_dir], capture_output=True, text=True
        )
        if r2.returncode != 0:
            why = f"cannot remount read-only: {r2.stderr.strip()}"
            print(f"SKIP reason: {why}")
            pytest.skip(why)
        r = relkit.run(["-w", ws, "gc"])
        kind, problems = classify(r, "gc on a read-only blob dir")
        if kind != "clean_error":
            problems.append(f"expected a clean error (exit 1)\n{r.describe()}")
        figs, p = check_state(ws, small_master, "gc", "read-only blob dir", done=False)
        problems += p
        side = relkit.inspect(ws / "side.db", ws / "blobs" / "side")
        if set(side.rows) != relkit.expected_survivors(small_master, "gc")["side"] or (
            side.orphans or side.temps
        ):
            problems.append("the other DB was not maintained")
    finally:
        subprocess.run(["umount", blob_dir], capture_output=True)
    f2, p2 = after_recovery(ws, small_master, "gc", "read-only blob dir")
    shutil.rmtree(base)
    add(figs, f2)
    figures(outcome=kind, tracebacks=int(r.traceback), **figs)
    assert not problems + p2, "\n".join((problems + p2)[:10])
