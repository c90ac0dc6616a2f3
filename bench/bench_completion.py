"""Latency of one TAB press: a completion request against python -c pass.

    python bench/bench_completion.py [--rows 100000 1000000] [--runs 21] [--dir DIR]

For each row count, writes a workspace with one task DB of that many rows (upstream's
table, ``beautyspot.sql.CREATE_TABLE``, plus every index the library creates), then runs,
interleaved, ``--runs`` times each (after warm-up runs):

* ``python -c pass`` with the same interpreter (the floor: interpreter start-up);
* the installed ``beautyspot`` with ``_BEAUTYSPOT_COMPLETE=bash_complete
  COMP_WORDS='beautyspot show 3fa' COMP_CWORD=2`` (a key prefix matching ~N/4096 keys);
* the same request in Typer's protocol (``complete_bash``, what completions/ uses);
* ``--func`` completion (``beautyspot prune --func fe``).

and prints the medians and the ratio to ``python -c pass``.  Target: the key request at
1M rows within 3x.  Bytecode is cached as in an installation (``PYTHONDONTWRITEBYTECODE``
is dropped for the runs; the warm-up runs write it).  Exit status 1 when a run fails or
prints no candidate.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from beautyspot import sql

BIN = Path(sys.executable).parent / "beautyspot"
TARGET = 3.0
N_FUNCTIONS = 40


def build(root: Path, rows: int, seed: int = 7) -> Path:
    """``root/.beautyspot/bench.db`` with *rows* tasks; returns the workspace dir."""
    ws = root / ".beautyspot"
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    (ws / ".gitignore").write_text("*\n")
    rng = random.Random(seed)
    funcs = [(f"fetch_{i}" if i % 3 == 0 else f"task_{i}") for i in range(N_FUNCTIONS)]
    payload = b"\x81\xa1x\x01"
    conn = sqlite3.connect(ws / "bench.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    conn.execute(sql.CREATE_TABLE)
    conn.execute("BEGIN")
    batch = 100_000
    for start in range(0, rows, batch):
        records = []
        for _ in range(min(batch, rows - start)):
            f = funcs[rng.randrange(N_FUNCTIONS)]
            records.append(
                (
                    f"{rng.getrandbits(256):064x}",
                    f,
                    f"app.jobs.{f}",
                    "input",
                    "DIRECT_BLOB",
                    None,
                    payload,
                    None,
                    None,
                    None,
                    "2026-11-01 12:00:00.000000+00:00",
                )
            )
        conn.executemany(
            "INSERT INTO tasks (cache_key, func_name, func_identifier, input_id, result_type,"
            " result_value, result_data, content_type, version, expires_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            records,
        )
    sql.ensure_indexes(conn, sql.read_schema(conn))
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")  # upstream's mode; no -wal left after close
    conn.close()
    return ws


def _env(ws: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEAUTYSPOT_", "_BEAUTY"))}
    # As installed: bytecode cached (the warm-up runs write it; __pycache__ is gitignored).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["BEAUTYSPOT_WORKSPACE"] = str(ws)
    env.update(extra)
    return env


def measure(cases: dict[str, tuple[list[str], dict[str, str]]], runs: int, cwd: Path):
    """Median wall seconds per case, the cases interleaved so load drifts hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    outputs: dict[str, str] = {}
    for i in range(runs + 3):
        for name, (argv, env) in cases.items():
            start = time.perf_counter()
            proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(f"{name}: exit {proc.returncode}: {proc.stderr}")
            outputs[name] = proc.stdout
            if i >= 3:  # warm-up: page cache, .pyc files
                times[name].append(elapsed)
    return {name: statistics.median(ts) for name, ts in times.items()}, outputs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=21, help="timed runs per case (>= 15)")
    ap.add_argument("--dir", type=Path, help="where to build (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    if args.runs < 15:
        ap.error("--runs must be at least 15")
    if not BIN.exists():
        sys.exit(f"{BIN} is not installed (pip install -e .)")
    base = args.dir or Path(tempfile.mkdtemp(prefix="bs-bench-completion-"))
    failed = False
    print(f"python: {sys.executable} ({sys.version.split()[0]}); {args.runs} runs per case")
    try:
        for rows in args.rows:
            t0 = time.perf_counter()
            ws = build(base / f"rows-{rows}", rows)
            built = time.perf_counter() - t0
            cases = {
                "python -c pass": ([sys.executable, "-c", "pass"], _env(ws)),
                "show 3fa (bash_complete)": (
                    [str(BIN)],
                    _env(
                        ws,
                        _BEAUTYSPOT_COMPLETE="bash_complete",
                        COMP_WORDS="beautyspot show 3fa",
                        COMP_CWORD="2",
                    ),
                ),
                "show 3fa (complete_bash)": (
                    [str(BIN)],
                    _env(
                        ws,
                        _BEAUTYSPOT_COMPLETE="complete_bash",
                        COMP_WORDS="beautyspot show 3fa",
                        COMP_CWORD="2",
                    ),
                ),
                "prune --func fe (complete_bash)": (
                    [str(BIN)],
                    _env(
                        ws,
                        _BEAUTYSPOT_COMPLETE="complete_bash",
                        COMP_WORDS="beautyspot prune --func fe",
                        COMP_CWORD="3",
                    ),
                ),
            }
            medians, outputs = measure(cases, args.runs, ws.parent)
            floor = medians["python -c pass"]
            print(f"\n{rows:,} rows (built in {built:.1f}s, {ws / 'bench.db'})")
            for name, median in medians.items():
                n = len([line for line in outputs[name].splitlines() if line])
                shown = "" if name == "python -c pass" else f"  {n} candidates"
                print(f"  {name:34s} {median * 1000:7.1f} ms  {median / floor:5.2f}x{shown}")
                if name != "python -c pass" and n == 0:
                    failed = True
            ratio = medians["show 3fa (bash_complete)"] / floor
            verdict = "ok" if ratio <= TARGET else "OVER TARGET"
            print(
                f"  key completion / python -c pass = {ratio:.2f}x (target <= {TARGET}x): {verdict}"
            )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
