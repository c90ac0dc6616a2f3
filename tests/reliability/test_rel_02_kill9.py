"""Scenario 2: ``kill -9`` the CLI at random moments during ``prune``, ``gc`` and ``clear``.

Per trial: clone the big workspace, start the command, SIGKILL it after a random (seeded)
delay, then check

* right after the kill: ``PRAGMA integrity_check`` is ok, no row names a missing blob,
  no row the command must keep is gone;
* rerunning the command finishes the job: exactly the rows the command must keep remain
  (none lost, none left over) and every blob of a kept row is still there;
* a gc past the grace period (``BEAUTYSPOT_NOW`` two days on) then leaves no orphan blob
  and no temp file, and integrity is still ok.

Even trials kill at any moment of the run (start-up, planning, deleting); odd trials wait
until the run holds the workspace lock (it writes its pid there just before deleting) and
kill at a random moment of the deletion phase, as measured by an uninterrupted run.

Default: 2 trials per command (one of each kind) on 5k rows;
``BEAUTYSPOT_RELIABILITY_TRIALS=20``: 20 trials per command on 50k rows.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import signal
import time

import pytest

from . import relkit
from .relkit import COMMANDS, NOW

FINAL_NOW = (NOW + dt.timedelta(days=2)).isoformat()


def wait_for_lock(proc, ws, limit: float) -> float:
    """Wait until *proc* holds the workspace lock (its pid is in the lock file)."""
    lock = ws / ".beautyspot.lock"
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if lock.read_text().strip() == str(proc.pid):
                break
        except OSError:
            pass
        time.sleep(0.001)
    return time.monotonic()


def sig(st: relkit.DBState) -> tuple[int, int, int]:
    return len(st.rows), st.files, len(st.temps)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["prune", "gc", "clear"])
def test_kill9_random_moments(command, big_master, tmp_path, figures):
    n_trials = relkit.trials(2)
    rng = random.Random(f"{relkit.SEED}-{command}")
    expected = relkit.expected_survivors(big_master, command)
    args = COMMANDS[command]
    dbs = list(big_master.rows)

    def state(ws, db) -> relkit.DBState:
        return relkit.inspect(ws / f"{db}.db", ws / "blobs" / db)

    # Calibrate on an uninterrupted run: the whole run, and its deletion phase.
    ref = tmp_path / "ref" / ".beautyspot"
    relkit.clone_workspace(big_master.root, ref)
    t0 = time.monotonic()
    proc = relkit.popen(["-w", ref, *args])
    t_lock = wait_for_lock(proc, ref, 120) - t0
    calib = relkit.finish(proc, args, t0)
    assert calib.returncode == 0, calib.describe()
    window = calib.seconds
    delete_window = max(window - t_lock, 0.01)
    initial = {db: sig(state(big_master.root, db)) for db in dbs}
    done = {db: sig(state(ref, db)) for db in dbs}

    figs = dict(
        trials=0,
        killed_mid_run=0,
        partial_at_kill=0,
        integrity_failures=0,
        dangling_rows=0,
        rows_lost=0,
        rows_left_undone=0,
        blobs_wrongly_deleted=0,
        orphans_left=0,
        temps_left=0,
        tracebacks=0,
        bad_exits=0,
    )
    problems: list[str] = []
    for trial in range(n_trials):
        ws = tmp_path / f"t{trial}" / ".beautyspot"
        relkit.clone_workspace(big_master.root, ws)
        proc = relkit.popen(["-w", ws, *args])
        if trial % 2 == 0:
            time.sleep(rng.uniform(0.05, window * 0.9))
        else:
            wait_for_lock(proc, ws, window * 5)
            time.sleep(rng.uniform(0.0, delete_window * 0.8))
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate()
        figs["trials"] += 1
        figs["killed_mid_run"] += alive
        if b"Traceback" in err:
            figs["tracebacks"] += 1
            problems.append(f"trial {trial}: traceback before the kill: {err[-2000:]!r}")

        # Right after the kill.
        partial = False
        for db in dbs:
            st = state(ws, db)
            if st.integrity != "ok":
                figs["integrity_failures"] += 1
                problems.append(f"trial {trial} {db}: integrity after kill: {st.integrity}")
            if st.dangling:
                figs["dangling_rows"] += len(st.dangling)
                problems.append(f"trial {trial} {db}: dangling after kill: {st.dangling[:3]}")
            lost = expected[db] - set(st.rows)
            if lost:
                figs["rows_lost"] += len(lost)
                problems.append(f"trial {trial} {db}: {len(lost)} kept rows gone after kill")
            if sig(st) not in (initial[db], done[db]):
                partial = True  # some deletions made, others not: killed mid-way
        figs["partial_at_kill"] += partial

        # Rerunning finishes the job.
        again = relkit.run(["-w", ws, *args])
        figs["tracebacks"] += again.traceback
        if again.returncode != 0:
            figs["bad_exits"] += 1
            problems.append(f"trial {trial}: rerun failed: {again.describe()}")
        for db in dbs:
            st = state(ws, db)
            keys = set(st.rows)
            lost, undone = expected[db] - keys, keys - expected[db]
            figs["rows_lost"] += len(lost)
            figs["rows_left_undone"] += len(undone)
            if lost or undone:
                problems.append(
                    f"trial {trial} {db}: after rerun {len(lost)} lost, {len(undone)} left"
                )
            gone = [
                k
                for k in expected[db] & keys
                if st.rows[k][2] is not None and not (ws / "blobs" / db / st.rows[k][2]).is_file()
            ]
            figs["blobs_wrongly_deleted"] += len(gone)
            if gone:
                problems.append(f"trial {trial} {db}: blobs of kept rows gone: {gone[:3]}")

        # The next gc past the grace period leaves nothing behind.
        final = relkit.run(["-w", ws, "gc"], now=FINAL_NOW)
        figs["tracebacks"] += final.traceback
        if final.returncode != 0:
            figs["bad_exits"] += 1
            problems.append(f"trial {trial}: final gc failed: {final.describe()}")
        for db in dbs:
            st = state(ws, db)
            if st.integrity != "ok":
                figs["integrity_failures"] += 1
                problems.append(f"trial {trial} {db}: integrity at the end: {st.integrity}")
            figs["dangling_rows"] += len(st.dangling)
            figs["orphans_left"] += len(st.orphans)
            figs["temps_left"] += len(st.temps)
            if st.dangling or st.orphans or st.temps:
                problems.append(
                    f"trial {trial} {db}: at the end dangling={st.dangling[:3]}"
                    f" orphans={sorted(st.orphans)[:3]} temps={sorted(st.temps)[:3]}"
                )
        shutil.rmtree(ws.parent)

    figures(
        command=command,
        rows=relkit.big_rows(),
        run_s=round(window, 2),
        delete_s=round(delete_window, 2),
        **figs,
    )
    assert not problems, "\n".join(problems[:20])
    if n_trials >= 4:  # with fewer, every kill may (rarely) land just after the end
        assert figs["killed_mid_run"] > 0, "no kill landed while the command was running"


def test_audit_log_survives_a_torn_last_line(small_master, tmp_path, figures):
    ws = tmp_path / ".beautyspot"
    relkit.clone_workspace(small_master.root, ws)
    log = ws / "maintenance.log.jsonl"
    log.write_text('{"time": "2026-12-09T00:00:00+00:00", "command": "gc", "db": "big", "ke')
    r = relkit.run(["-w", ws, "--json", "gc"])
    assert r.returncode == 0, r.describe()
    totals = json.loads(r.stdout)["totals"]
    readable = 0
    for line in log.read_text().splitlines():
        try:
            readable += json.loads(line).get("command") == "gc"
        except ValueError:
            pass
    figures(deleted=totals["rows"] + totals["files"], records_readable=readable)
    assert readable == totals["rows"] + totals["files"]
