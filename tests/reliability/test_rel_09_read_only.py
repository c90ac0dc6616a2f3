"""Scenario 9: read-only commands are read-only.

One workspace holds every kind of DB: the upstream 2.7.7 DBs (rollback journal, with a
zombie blob dir), a WAL DB left by a killed writer (its ``-wal`` and ``-shm`` still there),
a WAL DB closed cleanly (no ``-wal``), and a legacy-schema DB (no func_identifier,
expires_at, version, content_type, result_data; naive timestamps) in the legacy
``<name>/blobs/`` layout. ``ls`` (all, one DB, filters,
JSON), ``show`` (plain, ``--raw``, ``--json``), every ``--dry-run`` and completion requests
(keys, functions, DB names) each run on their own copy; afterwards every file's bytes and
mtime, the schema, and the file tree are unchanged (nothing created, no migration; the
``-shm`` shared-memory index is only checked to still exist).

Three ways: as root; as an unprivileged user (``setpriv``/``runuser`` to nobody) with every
file 0444 and every directory 0555; as root on a read-only bind mount. The last two are
skipped, with the reason, where the system does not allow them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from . import relkit
from .relkit import UPSTREAM

KILLED_WRITER = r"""
import os, signal, sys
from beautyspot.db import SQLiteTaskDB
from beautyspot.storage import LocalStorage
db = SQLiteTaskDB(os.path.join(sys.argv[1], "crashed.db"))
st = LocalStorage(os.path.join(sys.argv[1], "blobs", "crashed"))
for i in range(20):
    loc = st.save(f"crash{i:02d}", bytes([0xA3]) + b"abc")
    db.save(f"crash{i:02d}", "job", "app.job", "in", None, "FILE", None, result_value=loc,
            expires_at="2020-01-01 00:00:00+00:00" if i % 2 else None)
db.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""

OLD = "2026-01-01 00:00:00.000000+00:00"
LEGACY_TABLE = """CREATE TABLE tasks (
    cache_key TEXT PRIMARY KEY,
    func_name TEXT,
    input_id TEXT,
    result_type TEXT,
    result_value TEXT,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)"""

CMDS = [
    ["ls"],
    ["ls", "llm"],
    ["ls", "crashed", "--expired"],
    ["ls", "old", "--json"],
    ["ls", "old", "--func", "legacy_fn", "--older-than", "1d"],
    ["show", "6e8c"],
    ["show", "--raw", "crash07"],
    ["show", "--json", "old-0001"],
    ["show", "wc-1"],
    ["gc", "--dry-run"],
    ["gc", "--dry-run", "--json", "--grace", "0s"],
    ["prune", "--older-than", "1d", "--dry-run"],
    ["clear", "--dry-run"],
    ["clear", "--func", "legacy_fn", "--dry-run", "--db", "old"],
]
COMPLETIONS = [
    ("show", ["show", "6e"]),
    ("func", ["ls", "llm", "--func", "__"]),
    ("db", ["gc", "--db", ""]),
]


def build_workspace(ws: Path) -> None:
    shutil.copytree(UPSTREAM, ws)
    for p in [ws, *ws.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    r = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(ws)], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (ws / "crashed.db-wal").exists() and (ws / "crashed.db-shm").exists()
    import sqlite3

    conn = sqlite3.connect(ws / "old.db")
    conn.execute(LEGACY_TABLE)
    for i in range(10):
        key = f"old-{i:04d}"
        if i % 2:
            conn.execute(
                "INSERT INTO tasks VALUES (?, 'legacy_fn', 'in', 'FILE', ?, '2025-06-01 10:00:00')",
                (key, f"{key}.bin"),
            )
            relkit.write_blob(ws / "old" / "blobs" / f"{key}.bin", b"\xa3old", relkit.OLD_MTIME)
        else:
            conn.execute(
                "INSERT INTO tasks (cache_key, func_name, input_id, result_type) VALUES"
                " (?, 'legacy_fn', 'in', 'DIRECT_BLOB')",
                (key,),
            )
    conn.commit()
    conn.close()
    # A WAL DB closed cleanly (no -wal file): opened immutable, creates nothing.
    relkit.create_db(ws / "walclean.db", [relkit.inline_row("wc-1", "m.f", b"\xc0", None, OLD)])


def tree(ws: Path) -> dict:
    snap = relkit.snapshot(ws)
    return {k: ("shm",) if k.endswith("-shm") else v for k, v in snap.items()}


def schemas(ws: Path) -> dict:
    return {db.name: relkit.schema_sql(db) for db in sorted(ws.glob("*.db"))}


def as_user_prefix() -> tuple[list[str] | None, str]:
    """A command prefix running as nobody, or None and why not."""
    if os.geteuid() != 0:
        return [], "already unprivileged"
    for prefix in (
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        ["runuser", "-u", "nobody", "--"],
    ):
        if shutil.which(prefix[0]) is None:
            continue
        r = subprocess.run([*prefix, relkit.BS, "--version"], capture_output=True)
        if r.returncode == 0:
            return prefix, ""
    return None, "neither setpriv nor runuser can run beautyspot as nobody here"


@pytest.fixture(scope="module")
def master_ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ro-master") / ".beautyspot"
    build_workspace(ws)
    return ws


@pytest.mark.parametrize("how", ["root", "unprivileged-readonly", "readonly-mount"])
def test_read_only_commands_change_nothing(how, master_ws, figures):
    base = Path(tempfile.mkdtemp(prefix="bs-rel-ro-"))
    mounted = False
    try:
        base.chmod(0o755)
        jobs = []
        # As root, every command; the restricted variants a subset covering every path.
        cmds = CMDS if how == "root" else [CMDS[i] for i in (0, 6, 7, 9, 11)]
        for i, args in enumerate(cmds):
            ws = base / f"c{i:02d}" / ".beautyspot"
            shutil.copytree(master_ws, ws)
            jobs.append(("cmd", args, ws))
        for name, words in COMPLETIONS:
            ws = base / f"k{name}" / ".beautyspot"
            shutil.copytree(master_ws, ws)
            jobs.append(("complete", words, ws))
        prefix: list[str] = []
        if how == "unprivileged-readonly":
            prefix, why = as_user_prefix()
            if prefix is None:
                print(f"SKIP reason: {why}")
                pytest.skip(why)
            for p in [base, *base.rglob("*")]:
                if not p.is_symlink():
                    p.chmod(0o555 if p.is_dir() else 0o444)
            base.chmod(0o755)
        elif how == "readonly-mount":
            r1 = subprocess.run(["mount", "--bind", base, base], capture_output=True, text=True)
            if r1.returncode != 0:
                why = f"cannot bind-mount: {r1.stderr.strip()}"
                print(f"SKIP reason: {why}")
                pytest.skip(why)
            mounted = True
            r2 = subprocess.run(
                ["mount", "-o", "remount,bind,ro", base], capture_output=True, text=True
            )
            if r2.returncode != 0:
                why = f"cannot remount read-only: {r2.stderr.strip()}"
                print(f"SKIP reason: {why}")
                pytest.skip(why)
        before = {str(ws): (tree(ws), schemas(ws)) for _k, _a, ws in jobs}

        def one(job):
            kind, args, ws = job
            if kind == "cmd":
                cmd = [*prefix, relkit.BS, "-w", ws, *args]
                env = relkit.cli_env()
            else:
                words = ["beautyspot", "-w", str(ws), *args]
                cmd = [*prefix, relkit.BS]
                env = relkit.cli_env(
                    _BEAUTYSPOT_COMPLETE="complete_bash",
                    COMP_WORDS=" ".join(words),
                    COMP_CWORD=str(len(words) - 1),
                )
            p = subprocess.run(
                [str(c) for c in cmd], capture_output=True, env=env, cwd=base, timeout=120
            )
            return relkit.Run(
                [str(c) for c in args],
                p.returncode,
                p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"),
                0.0,
            )

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, jobs))
        problems, changed, tracebacks, empty_completions = [], 0, 0, 0
        for (kind, args, ws), r in zip(jobs, results, strict=True):
            tracebacks += r.traceback
            if r.returncode != 0:
                problems.append(f"{kind} {args}: {r.describe()}")
            if kind == "complete" and not r.stdout.strip():
                empty_completions += 1
                problems.append(f"completion {args} gave no candidates: {r.describe()}")
            t0, s0 = before[str(ws)]
            diff = relkit.snapshot_diff(t0, tree(ws))
            if diff or schemas(ws) != s0:
                changed += 1
                problems.append(f"{kind} {args} changed the workspace: {diff[:4]}")
        figures(
            how=how,
            commands=len(jobs),
            workspaces_changed=changed,
            failures=len(problems),
            tracebacks=tracebacks,
        )
        assert not problems, "\n\n".join(problems[:10])
        assert tracebacks == 0
    finally:
        if mounted:
            subprocess.run(["umount", base], capture_output=True)
        for p in [base, *base.rglob("*")]:
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(base, ignore_errors=True)
