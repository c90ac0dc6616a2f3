"""Round trips with the real upstream beautyspot 2.7.7 library, not a copy of its files.

The fixture workspace proves we read what upstream wrote once.  These tests prove the
other half of the promise: after our tools and library have touched a workspace,
upstream's own code still reads it, finds every row we left, recomputes exactly what we
deleted, and keeps writing to it.

Upstream 2.7.7 needs Python >= 3.12, so it runs in its own virtual environment (built
once per test session from PyPI, ~10 s) under another interpreter, driving
``upstream_app.py``.  Without such an interpreter the tests skip, unless
``BEAUTYSPOT_REQUIRE_UPSTREAM=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

from beautyspot import serializer
from beautyspot.db import SQLiteTaskDB
from beautyspot.storage import LocalStorage
from beautyspot.timeutil import format_ts

UPSTREAM_VERSION = "2.7.7"
APP = Path(__file__).with_name("upstream_app.py")
BIN = Path(sys.executable).parent / "beautyspot"
UTC = dt.timezone.utc

ASK = [f"q{i}" for i in range(12)]
EMBED = [f"e{i}" for i in range(6)]
EPHEMERAL = [f"x{i}" for i in range(4)]
EPHEMERAL_FILES = [f"f{i}" for i in range(3)]
ALL_CALLS = {
    "ask": ASK,
    "embed": EMBED,
    "ephemeral": EPHEMERAL,
    "ephemeral_file": EPHEMERAL_FILES,
}


# --------------------------------------------------------------------------- upstream


def _python_312() -> str | None:
    """An interpreter >= 3.12: $BEAUTYSPOT_UPSTREAM_PYTHON, python3.13/3.12 on PATH, pyenv's."""
    candidates = [os.environ.get("BEAUTYSPOT_UPSTREAM_PYTHON")]
    candidates += [shutil.which(name) for name in ("python3.13", "python3.12")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        candidates += sorted(str(p) for p in pyenv.glob("3.1[2-9]*/bin/python3"))
    for exe in candidates:
        if not exe or not Path(exe).exists():
            continue
        probe = subprocess.run(
            [exe, "-c", "import sys; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip() == "True":
            return exe
    return None


def _unavailable(why: str):
    if os.environ.get("BEAUTYSPOT_REQUIRE_UPSTREAM") == "1":
        pytest.fail(f"upstream beautyspot {UPSTREAM_VERSION} is required here: {why}")
    pytest.skip(f"upstream beautyspot {UPSTREAM_VERSION} unavailable: {why}")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BEAUTYSPOT_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def upstream_py(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The python of a fresh venv holding upstream beautyspot from PyPI."""
    exe = _python_312()
    if exe is None:
        _unavailable("no Python >= 3.12 found (set BEAUTYSPOT_UPSTREAM_PYTHON)")
    venv = tmp_path_factory.mktemp("upstream-venv")
    made = subprocess.run([exe, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        _unavailable(f"venv failed: {made.stderr.strip()[-300:]}")
    py = str(venv / "bin" / "python")
    pip = subprocess.run(
        [py, "-m", "pip", "install", "-q", f"beautyspot=={UPSTREAM_VERSION}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_env(),
    )
    if pip.returncode != 0:
        _unavailable(f"pip install failed: {pip.stderr.strip()[-300:]}")
    return py


def upstream(py: str, cwd: Path, *args: str) -> dict:
    """Run upstream_app.py with upstream's interpreter; its JSON report."""
    proc = subprocess.run(
        [py, str(APP), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert proc.returncode == 0, f"upstream app {args} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def ours(ws: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed beautyspot command on workspace *ws*, real clock."""
    proc = subprocess.run(
        [str(BIN), "-w", str(ws), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# --------------------------------------------------------------------------- helpers


def rows_by_call(ws: Path) -> dict[tuple[str, str], dict]:
    """Every row of llm.db, keyed by (function, input): told apart by decoding the stored
    result (inline payload or blob file), which names its input."""
    conn = sqlite3.connect(f"file:{ws / 'llm.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT cache_key, func_name, result_type, result_value, result_data,"
            " updated_at, expires_at FROM tasks"
        ).fetchall()
    finally:
        conn.close()
    out = {}
    for key, func, rtype, location, data, updated, expires in rows:
        blob = ws / "blobs" / "llm" / location if rtype == "FILE" else None
        value = serializer.loads(blob.read_bytes() if blob else data)
        out[(func, value["input"])] = {
            "key": key,
            "blob": blob,
            "updated_at": updated,
            "expires_at": expires,
        }
    return out


def computed(report: dict) -> dict[str, list[str]]:
    return {name: sorted(args) for name, args in report["computed"].items()}


# --------------------------------------------------------------------------- tests


def test_upstream_finds_what_our_gc_and_prune_keep(upstream_py: str, tmp_path: Path) -> None:
    """gc and prune on a workspace upstream wrote: upstream then misses exactly the rows
    they deleted (and recomputes them to the same values), hits every other, and can
    write to the workspace again."""
    first = upstream(upstream_py, tmp_path, "call")
    assert computed(first) == {name: sorted(args) for name, args in ALL_CALLS.items()}
    ws = tmp_path / ".beautyspot"
    rows = rows_by_call(ws)
    assert len(rows) == sum(map(len, ALL_CALLS.values()))

    # Age some rows past prune's cutoff, the way weeks of use would.
    old = format_ts(dt.datetime.now(UTC) - dt.timedelta(days=40))
    aged = [("ask", q) for q in ASK[:4]] + [("embed", e) for e in EMBED[:2]]
    conn = sqlite3.connect(ws / "llm.db")
    with conn:
        conn.executemany(
            "UPDATE tasks SET updated_at = ? WHERE cache_key = ?",
            [(old, rows[call]["key"]) for call in aged],
        )
    conn.close()
    # Orphan blobs: one past gc's grace period, one a writer might be about to use.
    blob_dir = ws / "blobs" / "llm"
    stale, fresh = blob_dir / ("0" * 64 + ".bin"), blob_dir / ("1" * 64 + ".bin")
    for orphan in (stale, fresh):
        orphan.write_bytes(msgpack.packb({"orphan": True}))
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    # Upstream's retention=1 rows expire a second after they were written.
    time.sleep(1.5)

    gc = ours(ws, "gc")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    prune = ours(ws, "prune", "--older-than", "30d", "--yes")
    assert prune.returncode == 0, prune.stdout + prune.stderr

    deleted = set(aged) | {(n, a) for n in ("ephemeral", "ephemeral_file") for a in ALL_CALLS[n]}
    left = rows_by_call(ws)
    assert set(left) == set(rows) - deleted
    for call, row in rows.items():
        if row["blob"] is not None:
            assert row["blob"].exists() == (call not in deleted), call
    assert not stale.exists() and fresh.exists()

    second = upstream(upstream_py, tmp_path, "call")
    assert computed(second) == {
        "ask": ASK[:4],
        "embed": EMBED[:2],
        "ephemeral": EPHEMERAL,
        "ephemeral_file": EPHEMERAL_FILES,
    }
    assert second["results"] == first["results"]  # hits and recomputations alike

    # Upstream wrote the missing rows back into the maintained DB: now all hit (the
    # one-second rows may have expired again meanwhile, so they are not counted).
    third = upstream(upstream_py, tmp_path, "call")
    assert "ask" not in third["computed"] and "embed" not in third["computed"]
    assert third["results"] == first["results"]
    listed = ours(ws, "ls")
    assert listed.returncode == 0 and "llm" in listed.stdout


def _our_rows(ws: Path) -> dict[str, dict]:
    """Save a few rows through our library; what upstream must read back, by key."""
    now = dt.datetime.now(UTC)
    storage = LocalStorage(ws / "blobs" / "llm")
    values = {
        "a" * 64: {"text": "héllo ✓", "nested": [1, 2.5, None, True, {"k": "v"}]},
        "b" * 64: {"bytes": b"\x00\x01\xff", "big": list(range(300))},
        "c" * 64: ["just", "a", "list"],
    }
    expected: dict[str, dict | None] = {}
    db = SQLiteTaskDB(ws / "llm.db")
    try:
        for i, (key, value) in enumerate(values.items()):
            db.save(
                key,
                "ours",
                "tests.ours",
                f"in{i}",
                "v9",
                "DIRECT_BLOB",
                "application/msgpack",
                result_data=msgpack.packb(value, use_bin_type=True),
                expires_at=None if i == 0 else now + dt.timedelta(days=3),
            )
            expected[key] = {"result_type": "DIRECT_BLOB", "result_value": None, "value": value}
        file_key = "d" * 64
        file_value = {"file": "payload " * 100}
        location = storage.save(file_key, msgpack.packb(file_value, use_bin_type=True))
        db.save(
            file_key,
            "ours",
            "tests.ours",
            "in-file",
            None,
            "FILE",
            "application/msgpack",
            result_value=location,
            expires_at=now + dt.timedelta(hours=1),
        )
        expected[file_key] = {"result_type": "FILE", "result_value": location, "value": file_value}
        gone = "e" * 64
        db.save(
            gone,
            "ours",
            "tests.ours",
            "in-exp",
            None,
            "DIRECT_BLOB",
            None,
            result_data=msgpack.packb(1),
            expires_at=now - dt.timedelta(seconds=5),
        )
        expected[gone] = None  # expired: a miss for upstream too
    finally:
        db.shutdown()
    return expected


def _assert_upstream_reads(upstream_py: str, cwd: Path, ws: Path, expected: dict) -> None:
    got = upstream(upstream_py, cwd, "read", str(ws / "llm.db"), *expected)
    for key, want in expected.items():
        # As upstream_app reports it: JSON, bytes as lists of ints.
        assert got[key] == json.loads(json.dumps(want, default=list)), key


def test_upstream_reads_what_our_library_wrote_into_its_db(
    upstream_py: str, tmp_path: Path
) -> None:
    """Our SQLiteTaskDB opens a DB upstream created (migrating it, adding indexes) and
    saves rows; upstream's SQLiteTaskDB reads them, and its cache still hits."""
    first = upstream(upstream_py, tmp_path, "call")
    ws = tmp_path / ".beautyspot"
    expected = _our_rows(ws)
    _assert_upstream_reads(upstream_py, tmp_path, ws, expected)
    again = upstream(upstream_py, tmp_path, "call")
    assert "ask" not in again["computed"] and "embed" not in again["computed"]
    assert again["results"]["ask"] == first["results"]["ask"]


def test_upstream_uses_a_db_our_library_created(upstream_py: str, tmp_path: Path) -> None:
    """A task DB created by our library (our schema, indexes, WAL) is one upstream reads,
    writes its cache into, and hits on the next run."""
    ws = tmp_path / ".beautyspot"
    expected = _our_rows(ws)
    assert (ws / ".gitignore").read_text() == "*\n"
    _assert_upstream_reads(upstream_py, tmp_path, ws, expected)
    first = upstream(upstream_py, tmp_path, "call")
    assert computed(first) == {name: sorted(args) for name, args in ALL_CALLS.items()}
    second = upstream(upstream_py, tmp_path, "call")
    assert "ask" not in second["computed"] and "embed" not in second["computed"]
    assert second["results"] == first["results"]
    # And our reader sees upstream's rows beside ours.
    listed = ours(ws, "ls", "llm", "--json", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    functions = [t["function"] for t in json.loads(listed.stdout)["tasks"]]
    assert functions.count("tests.ours") == len(expected)  # the expired one until gc
    assert functions.count("__main__.ask") == len(ASK)
