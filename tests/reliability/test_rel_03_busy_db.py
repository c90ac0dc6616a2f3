"""Scenario 3: another connection holds a write transaction on a DB.

* Held for ~2 s, shorter than ``--timeout``: ``gc``, ``prune`` and ``clear`` wait for it
  (SQLite busy timeout), then succeed with exactly the expected result.
* Held past ``--timeout``: one line ``beautyspot: error: ... locked ...`` on stderr,
  exit 1, the locked DB's rows and blob files untouched; the other DB still maintained.
* Rollback-journal DBs (old files, no WAL), where an EXCLUSIVE lock blocks readers too:
  read-only commands wait or fail the same way.

The three commands run concurrently (each on its own clone, with its own lock holder).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from . import relkit
from .relkit import COMMANDS


def hold(db: Path, mode: str = "IMMEDIATE") -> sqlite3.Connection:
    """A connection in the middle of a write transaction on *db* (rolled back later)."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    conn.execute(f"BEGIN {mode}")
    conn.execute("UPDATE tasks SET version = 'held' WHERE rowid = 1")
    return conn


def untouched(ws: Path, db: str) -> tuple:
    return relkit.db_rows(ws / f"{db}.db"), relkit.snapshot(ws / "blobs" / db)


def run_held(master, tmp_path, jobs, *, hold_s, timeout, mode="IMMEDIATE"):
    """Start each job (name, args) on its own clone while big.db is locked for *hold_s*
    (or, if None, until the job exits); return {name: (ws, Run, before)}."""
    started = {}
    for name, args in jobs:
        ws = tmp_path / name / ".beautyspot"
        relkit.clone_workspace(master.root, ws)
        before = untouched(ws, "big")
        conn = hold(ws / "big.db", mode)
        t0 = time.monotonic()
        proc = relkit.popen(["-w", ws, "--timeout", timeout, *args])
        started[name] = (ws, conn, proc, t0, before, args)
    if hold_s is not None:
        time.sleep(hold_s)
        for _ws, conn, *_ in started.values():
            conn.rollback()
    out = {}
    for name, (ws, conn, proc, t0, before, args) in started.items():
        r = relkit.finish(proc, args, t0)
        if hold_s is None:
            conn.rollback()
        conn.close()
        out[name] = (ws, r, before)
    return out


def test_busy_within_timeout_waits_then_succeeds(small_master, tmp_path, figures):
    jobs = list(COMMANDS.items())
    results = run_held(small_master, tmp_path, jobs, hold_s=2.0, timeout=20)
    problems, waited, tracebacks = [], 0, 0
    for name, (ws, r, _before) in results.items():
        tracebacks += r.traceback
        if r.returncode != 0:
            problems.append(r.describe())
            continue
        waited += r.seconds >= 1.5
        expected = relkit.expected_survivors(small_master, name)
        for db in small_master.rows:
            st = relkit.inspect(ws / f"{db}.db", ws / "blobs" / db)
            if set(st.rows) != expected[db] or st.dangling or st.integrity != "ok":
                problems.append(f"{name} {db}: wrong result after waiting")
    figures(commands=len(jobs), waited_and_succeeded=waited, tracebacks=tracebacks)
    assert tracebacks == 0
    assert not problems, "\n".join(problems)
    assert waited == len(jobs), "a command did not wait for the lock (or finished too early)"


def test_busy_past_timeout_one_line_error_nothing_done(small_master, tmp_path, figures):
    jobs = list(COMMANDS.items())
    results = run_held(small_master, tmp_path, jobs, hold_s=None, timeout=1)
    problems, tracebacks, touched = [], 0, 0
    for name, (ws, r, before) in results.items():
        tracebacks += r.traceback
        errors = r.error_lines
        if r.returncode != 1 or len(errors) != 1 or not errors[0].startswith("beautyspot: error:"):
            problems.append(f"{name}: expected exit 1 and one error line\n{r.describe()}")
        elif "big" not in errors[0] or "locked" not in errors[0]:
            problems.append(f"{name}: error does not name the locked DB: {errors[0]}")
        if r.seconds > 10:
            problems.append(f"{name}: took {r.seconds:.1f}s with --timeout 1")
        if untouched(ws, "big") != before:
            touched += 1
            problems.append(f"{name}: the locked DB or its blobs changed")
        side = relkit.inspect(ws / "side.db", ws / "blobs" / "side")
        if set(side.rows) != relkit.expected_survivors(small_master, name)["side"]:
            problems.append(f"{name}: the other DB was not maintained")
    figures(commands=len(jobs), half_done=touched, tracebacks=tracebacks)
    assert tracebacks == 0
    assert not problems, "\n".join(problems)


def test_exclusive_lock_on_rollback_journal_db(small_master_rollback, tmp_path, figures):
    """Old (non-WAL) DBs: an EXCLUSIVE lock blocks even readers."""
    m = small_master_rollback
    within = run_held(
        m,
        tmp_path / "within",
        [("dry", ["gc", "--dry-run"]), ("gc", ["gc"])],
        hold_s=2.0,
        timeout=20,
        mode="EXCLUSIVE",
    )
    past = run_held(
        m,
        tmp_path / "past",
        [("ls", ["ls", "big"]), ("gc", ["gc"])],
        hold_s=None,
        timeout=1,
        mode="EXCLUSIVE",
    )
    problems, tracebacks = [], 0
    for name, (_ws, r, _before) in within.items():
        tracebacks += r.traceback
        if r.returncode != 0 or r.seconds < 1.5:
            problems.append(f"within timeout, {name}: {r.seconds:.1f}s\n{r.describe()}")
    for name, (ws, r, before) in past.items():
        tracebacks += r.traceback
        errors = r.error_lines
        if r.returncode != 1 or len(errors) != 1 or "locked" not in errors[0]:
            problems.append(f"past timeout, {name}:\n{r.describe()}")
        if untouched(ws, "big") != before:
            problems.append(f"past timeout, {name}: the locked DB or its blobs changed")
    figures(runs=len(within) + len(past), tracebacks=tracebacks)
    assert tracebacks == 0
    assert not problems, "\n".join(problems)
