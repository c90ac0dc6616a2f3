"""Scenario 5: overlapping cron runs, and stale locks.

* 5 ``gc`` processes started at once on one workspace (default ``--timeout``, and a short
  one so some give up on the lock): no traceback; each exits 0 (warnings such as
  "kept ...: already gone" allowed), or exits 1 with the one-line "another maintenance run
  (pid N) holds ..." message (with ``--timeout 0`` also "database is locked" lines: no busy
  wait was asked for); the final state (rows of every DB, every file of the tree) is
  identical to that of a single gc run.
* A lock left by a process killed with SIGKILL while holding it is taken over at once;
  so is a lock file holding a bogus pid. A live holder makes gc wait ``--timeout`` seconds,
  then report the holder's pid, exit 1, delete nothing.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import relkit

HOLDER = r"""
import sys
from pathlib import Path
from beautyspot.maintenance import WorkspaceLock
with WorkspaceLock(Path(sys.argv[1]) / ".beautyspot.lock", wait=5):
    print("locked", flush=True)
    sys.stdin.read()
"""

IGNORED = (".beautyspot.lock", "maintenance.log.jsonl", "maintenance.log.jsonl.1")


def final_state(ws: Path, master: relkit.BigSpec) -> tuple:
    """Rows of every DB and the whole file tree (file names, sizes, contents)."""
    rows = {db: relkit.db_rows(ws / f"{db}.db") for db in master.rows}
    tree = {
        k: v[:2] + v[3:] if v[0] == "file" else v  # mtimes of directories/files aside
        for k, v in relkit.snapshot(ws).items()
        if not k.endswith(IGNORED) and not k.endswith(("-wal", "-shm")) and not k.endswith(".db")
    }
    return rows, tree


def add_zombie(ws: Path) -> None:
    for i in range(3):
        relkit.write_blob(ws / "blobs" / "ghost" / f"{i:064x}.bin", b"z", relkit.OLD_MTIME)


def test_five_concurrent_gc_runs_equal_one(small_master, tmp_path, figures):
    rounds = max(1, relkit.trials(1) // 4)  # each: one default run, one with --timeout 0
    ref = tmp_path / "ref" / ".beautyspot"
    relkit.clone_workspace(small_master.root, ref)
    add_zombie(ref)
    one = relkit.run(["-w", ref, "gc"])
    assert one.returncode == 0, one.describe()
    expected = final_state(ref, small_master)

    figs = dict(
        rounds=0,
        processes=0,
        exit0=0,
        lock_reported=0,
        db_lock_reported=0,
        other_failures=0,
        tracebacks=0,
    )
    problems = []
    for rnd in range(rounds * 2):
        timeout = ["--timeout", "0"] if rnd % 2 else []
        ws = tmp_path / f"r{rnd}" / ".beautyspot"
        relkit.clone_workspace(small_master.root, ws)
        add_zombie(ws)
        t0 = time.monotonic()
        procs = [relkit.popen(["-w", ws, *timeout, "gc"]) for _ in range(5)]
        results = [relkit.finish(p, ["gc"], t0) for p in procs]
        figs["rounds"] += 1
        for r in results:
            figs["processes"] += 1
            figs["tracebacks"] += r.traceback
            errors = [line for line in r.error_lines if "error:" in line]
            if r.returncode == 0 and not errors:
                figs["exit0"] += 1
            elif (
                r.returncode == 1
                and len(errors) == 1
                and "another maintenance run (pid" in errors[0]
            ):
                figs["lock_reported"] += 1
            elif (
                timeout
                and r.returncode == 1
                and errors
                and all("database is locked" in e for e in errors)
            ):
                # --timeout 0 also means no busy wait: a DB another run is checkpointing
                # is reported as locked, one line per DB (and that run does the work).
                figs["db_lock_reported"] += 1
            else:
                figs["other_failures"] += 1
                problems.append(f"round {rnd}: {r.describe()}")
        got = final_state(ws, small_master)
        if got != expected:
            problems.append(
                f"round {rnd}: final state differs from one gc run: "
                f"{relkit.snapshot_diff(expected[1], got[1])[:5]}"
                f" rows equal={got[0] == expected[0]}"
            )
        shutil.rmtree(ws.parent)
    figures(**figs)
    assert not problems, "\n".join(problems[:10])
    assert figs["tracebacks"] == 0


def holder(ws: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ws)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_stale_and_live_locks(small_master, tmp_path, figures):
    problems = []
    expected = relkit.expected_survivors(small_master, "gc")

    def maintained(ws: Path) -> bool:
        return all(set(relkit.db_rows(ws / f"{db}.db")) == expected[db] for db in expected)

    # A live holder: gc waits --timeout, names the holder, deletes nothing.
    ws = tmp_path / "live" / ".beautyspot"
    relkit.clone_workspace(small_master.root, ws)
    h = holder(ws)
    before = relkit.snapshot(ws, skip=IGNORED)
    r = relkit.run(["-w", ws, "--timeout", "1", "gc"])
    if not (
        r.returncode == 1
        and len(r.error_lines) == 1
        and f"pid {h.pid}" in r.error_lines[0]
        and r.seconds >= 0.9
    ):
        problems.append(f"live holder: {r.describe()}")
    if relkit.snapshot(ws, skip=IGNORED) != before:
        problems.append("live holder: gc deleted something without the lock")
    tracebacks = r.traceback

    # The holder is killed with SIGKILL: its lock is taken over at once.
    h.send_signal(signal.SIGKILL)
    h.wait()
    r = relkit.run(["-w", ws, "--timeout", "1", "gc"])
    tracebacks += r.traceback
    if r.returncode != 0 or not maintained(ws):
        problems.append(f"after SIGKILL of the holder: {r.describe()}")

    # A lock file left with a bogus pid and no holder.
    ws = tmp_path / "bogus" / ".beautyspot"
    relkit.clone_workspace(small_master.root, ws)
    (ws / ".beautyspot.lock").write_text("999999\n")
    r = relkit.run(["-w", ws, "--timeout", "1", "gc"])
    tracebacks += r.traceback
    if r.returncode != 0 or not maintained(ws):
        problems.append(f"bogus lock file: {r.describe()}")

    # A gc killed with SIGKILL while deleting: the next one takes over.
    ws = tmp_path / "killed" / ".beautyspot"
    relkit.clone_workspace(small_master.root, ws)
    p = relkit.popen(["-w", ws, "gc"])
    lock = ws / ".beautyspot.lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        if lock.exists() and lock.read_text().strip() == str(p.pid):
            break
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    r = relkit.run(["-w", ws, "--timeout", "1", "gc"])
    tracebacks += r.traceback
    if r.returncode != 0 or not maintained(ws):
        problems.append(f"after a killed gc: {r.describe()}")
    figures(lock_cases=4, tracebacks=tracebacks, failures=len(problems))
    assert not problems, "\n".join(problems)
    assert tracebacks == 0
