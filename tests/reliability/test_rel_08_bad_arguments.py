"""Scenario 8: bad arguments.

A table of bad invocations, each run in its own copy of the upstream 2.7.7 workspace
(cwd = a directory holding the workspace ``ws/``, a text file ``notes.txt`` and an empty
directory ``adir/``): exactly one line on stderr, ``beautyspot: error: ...``; exit 2 (usage)
or 1 (failure) as listed; no traceback; the whole directory tree (DB bytes, blobs, every
other file) unchanged, and nothing created.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import relkit
from .relkit import UPSTREAM

NOW_ENV = relkit.NOW_ENV

# (label, args, allowed exit codes, BEAUTYSPOT_NOW)
BAD = [
    ("unknown duration unit", ["gc", "--grace", "30x"], {2}, NOW_ENV),
    ("negative grace", ["gc", "--grace", "-1h"], {2}, NOW_ENV),
    ("empty grace", ["gc", "--grace", ""], {2}, NOW_ENV),
    ("duration without unit", ["gc", "--grace", "30"], {2}, NOW_ENV),
    ("huge grace", ["gc", "--grace", "99999999999999999999w"], {2}, NOW_ENV),
    ("zero age", ["prune", "--older-than", "0d", "-y"], {2}, NOW_ENV),
    ("negative age", ["prune", "--older-than", "-5d", "-y"], {2}, NOW_ENV),
    ("30 February", ["prune", "--older-than", "2026-02-30", "-y"], {2}, NOW_ENV),
    ("month 13", ["prune", "--older-than", "2026-13-01", "-y"], {2}, NOW_ENV),
    ("huge age", ["prune", "--older-than", "99999999999999999999d", "-y"], {2}, NOW_ENV),
    ("age before year 1", ["prune", "--older-than", "1000000d", "-y"], {2}, NOW_ENV),
    ("cutoff in the future", ["prune", "--older-than", "3000-01-01", "-y"], {2}, NOW_ENV),
    ("missing --older-than", ["prune", "-y"], {2}, NOW_ENV),
    ("ls age garbage", ["ls", "llm", "--older-than", "soon"], {2}, NOW_ENV),
    ("empty key prefix", ["show", ""], {2}, NOW_ENV),
    ("missing key", ["show"], {2}, NOW_ENV),
    ("SQL in a key", ["show", "x' OR '1'='1"], {1}, NOW_ENV),
    ("/dev/null as --db", ["--db", "/dev/null", "ls"], {1, 2}, NOW_ENV),
    ("directory as --db", ["--db", "adir", "gc"], {1, 2}, NOW_ENV),
    ("empty --db", ["--db", "", "gc"], {1, 2}, NOW_ENV),
    ("file as --workspace", ["-w", "notes.txt", "ls"], {1, 2}, NOW_ENV),
    ("missing workspace", ["-w", "missing", "gc"], {1, 2}, NOW_ENV),
    ("unknown DB name", ["ls", "nope"], {1, 2}, NOW_ENV),
    ("limit 0", ["ls", "llm", "--limit", "0"], {2}, NOW_ENV),
    ("huge limit", ["ls", "llm", "--limit", "99999999999999999999999"], {2}, NOW_ENV),
    ("negative timeout", ["--timeout", "-1", "gc"], {2}, NOW_ENV),
    ("timeout NaN", ["--timeout", "nan", "gc"], {2}, NOW_ENV),
    ("unknown option", ["gc", "--bogus"], {2}, NOW_ENV),
    ("unknown command", ["frobnicate"], {2}, NOW_ENV),
    ("prune off a terminal without --yes", ["prune", "--older-than", "1d"], {2}, NOW_ENV),
    ("clear off a terminal without --yes", ["clear"], {2}, NOW_ENV),
    ("BEAUTYSPOT_NOW not a time", ["ls"], {2}, "yesterday"),
]


def make_case(root: Path) -> Path:
    root.mkdir(parents=True)
    ws = root / "ws"
    shutil.copytree(UPSTREAM, ws)
    for p in [ws, *ws.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    (root / "notes.txt").write_text("my notes\n")
    (root / "adir").mkdir()
    return root


def test_bad_invocations(tmp_path, figures):
    cases = []
    for i, (label, args, codes, now) in enumerate(BAD):
        root = make_case(tmp_path / f"c{i:02d}")
        full = args if args[:1] == ["-w"] else ["-w", root / "ws", *args]
        cases.append((label, full, codes, now, root, relkit.snapshot(root)))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: relkit.run(c[1], now=c[3], cwd=c[4]), cases))
    problems = []
    figs = dict(invocations=len(cases), exit2=0, exit1=0, tracebacks=0, data_touched=0)
    for (label, _full, codes, _now, root, before), r in zip(cases, results, strict=True):
        figs["tracebacks"] += r.traceback
        figs["exit2"] += r.returncode == 2
        figs["exit1"] += r.returncode == 1
        lines = r.error_lines
        if r.returncode not in codes:
            problems.append(f"{label}: exit {r.returncode}, expected {codes}\n{r.describe()}")
        if len(lines) != 1 or not lines[0].startswith("beautyspot: error: "):
            problems.append(f"{label}: not one error line\n{r.describe()}")
        diff = relkit.snapshot_diff(before, relkit.snapshot(root))
        if diff:
            figs["data_touched"] += 1
            problems.append(f"{label}: data touched: {diff[:3]}")
    figures(**figs)
    assert not problems, "\n\n".join(problems)
    assert len(cases) >= 30


def test_sql_in_filters_is_inert(tmp_path, figures):
    """SQL in --func and keys is data: nothing matches, nothing is deleted or dropped."""
    root = make_case(tmp_path / "sql")
    ws = root / "ws"
    before = {db: relkit.db_rows(ws / db) for db in ("llm.db", "etl.db")}
    runs = []
    for args in (
        ["clear", "--func", "x'; DROP TABLE tasks; --", "--yes"],
        ["prune", "--older-than", "1d", "--func", "' OR 1=1 --", "--yes"],
        ["ls", "llm", "--func", "%"],
        ["show", "' UNION SELECT * FROM sqlite_master --"],
    ):
        runs.append(relkit.run(["-w", ws, *args], cwd=root))
    after = {db: relkit.db_rows(ws / db) for db in ("llm.db", "etl.db")}
    figures(runs=len(runs), rows_lost=sum(len(before[d]) - len(after[d]) for d in before))
    assert after == before
    assert [r.returncode for r in runs] == [0, 0, 0, 1], [r.describe() for r in runs]
    assert not any(r.traceback for r in runs)


def test_empty_workspace_is_a_usage_error(tmp_path):
    root = make_case(tmp_path / "empty-ws")
    before = relkit.snapshot(root / "ws")
    r = relkit.run(["-w", "", "gc"], cwd=root / "ws")
    assert r.returncode == 2 and len(r.error_lines) == 1, r.describe()
    assert relkit.snapshot_diff(before, relkit.snapshot(root / "ws")) == []


def test_non_db_file_as_db_creates_nothing(tmp_path):
    root = make_case(tmp_path / "notes")
    before = relkit.snapshot(root)
    r = relkit.run(["--db", "notes.txt", "gc"], cwd=root)
    assert r.returncode == 1 and len(r.error_lines) == 1, r.describe()
    assert relkit.snapshot_diff(before, relkit.snapshot(root)) == []


def test_non_utf8_arguments(tmp_path, figures):
    """Arguments are bytes on POSIX; Python hands undecodable ones over as surrogates."""
    root = make_case(tmp_path / "argv")
    before = relkit.snapshot(root)
    cases = [
        ["show", "ab\udcff"],
        ["ls", "llm", "--func", "f\udcff"],
        ["prune", "--older-than", "1d", "--func", "f\udcff", "--dry-run"],
        ["clear", "--func", "\udcff", "--dry-run"],
    ]
    results = relkit.run_many([["-w", root / "ws", *a] for a in cases], cwd=root)
    tracebacks = sum(r.traceback for r in results)
    figures(invocations=len(cases), tracebacks=tracebacks)
    for r in results:
        assert not r.traceback and r.returncode in (0, 1, 2), r.describe()
        assert all(line.startswith("beautyspot: ") for line in r.error_lines), r.describe()
    assert relkit.snapshot_diff(before, relkit.snapshot(root)) == []
