"""verify, rm, size/count budgets and the audit log, through the installed command."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from beautyspot import serializer
from beautyspot.db import SQLiteTaskDB
from beautyspot.storage import LocalStorage

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
BIN = Path(sys.executable).parent / "beautyspot"


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def run(ws: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, BEAUTYSPOT_NOW=NOW.isoformat(), NO_COLOR="1")
    env.pop("BEAUTYSPOT_WORKSPACE", None)
    proc = subprocess.run(
        [str(BIN), "-w", str(ws), *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def keys(db: Path) -> set[str]:
    return {r[0] for r in sqlite3.connect(db).execute("SELECT cache_key FROM tasks")}


def age(path: Path, delta: dt.timedelta) -> None:
    t = (NOW - delta).timestamp()
    os.utime(path, (t, t))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """Two caches: 'a' with 10 inline tasks an hour apart, 'b' with 4 FILE tasks."""
    root = tmp_path / ".beautyspot"
    clock = Clock(NOW)
    a = SQLiteTaskDB(root / "a.db", clock=clock)
    for i in range(10):
        clock.now = NOW - dt.timedelta(hours=10 - i)  # a0 oldest ... a9 newest
        a.save(
            f"a{i}",
            "fa",
            "m.fa",
            "in",
            None,
            "DIRECT_BLOB",
            None,
            result_data=serializer.dumps({"i": i, "pad": "x" * 300}),
        )
    a.shutdown()
    b = SQLiteTaskDB(root / "b.db", clock=clock)
    store = LocalStorage(root / "blobs" / "b")
    for i in range(4):
        clock.now = NOW - dt.timedelta(minutes=25 * (4 - i))  # b3 is the newest task of all
        loc = store.save(f"b{i}", serializer.dumps({"rows": list(range(100))}))
        b.save(f"b{i}", "fb", "m.fb", "in", None, "FILE", None, result_value=loc)
    b.shutdown()
    return root


def test_help_lists_new_commands(ws: Path) -> None:
    out = run(ws, "--help").stdout
    for cmd in ("verify", "rm", "gc"):
        assert cmd in out
    gc_help = run(ws, "gc", "--help").stdout
    for opt in ("--max-size", "--max-entries", "--per-db", "--report", "--no-audit-log"):
        assert opt in gc_help


# --------------------------------------------------------------------------- verify


def test_verify_clean_workspace_passes(ws: Path) -> None:
    proc = run(ws, "verify", "--json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and all(c["problems"] == 0 for c in doc["checks"])


def break_workspace(ws: Path) -> None:
    blobs = ws / "blobs" / "b"
    (blobs / "b0.bin").unlink()  # dangling row
    (blobs / "lost.bin").write_bytes(b"\x90")  # orphan, old
    age(blobs / "lost.bin", dt.timedelta(hours=3))
    (blobs / "fresh.bin").write_bytes(b"\x90")  # orphan, inside the grace period
    age(blobs / "fresh.bin", dt.timedelta(minutes=5))
    (blobs / "x.spot_tmp").write_bytes(b"partial")
    age(blobs / "x.spot_tmp", dt.timedelta(hours=2))
    con = sqlite3.connect(ws / "a.db")
    con.execute("UPDATE tasks SET updated_at = 'garbage' WHERE cache_key = 'a1'")
    con.execute("UPDATE tasks SET expires_at = '2026-02-30 00:00:00' WHERE cache_key = 'a2'")
    con.execute("UPDATE tasks SET result_data = x'c1c1' WHERE cache_key = 'a3'")
    con.commit()
    con.close()


def test_verify_reports_each_problem(ws: Path) -> None:
    break_workspace(ws)
    before = digest(ws)
    proc = run(ws, "verify", "--json")
    assert proc.returncode == 1
    checks = {(c["db"], c["check"]): c for c in json.loads(proc.stdout)["checks"]}
    assert checks[("b", "dangling rows (blob missing)")]["problems"] == 1
    assert checks[("b", "dangling rows (blob missing)")]["example"] == "b0"
    assert checks[("b", "orphan blobs past grace")]["problems"] == 1  # fresh.bin is in grace
    assert checks[("b", "stale temp files")]["problems"] == 1
    assert checks[("a", "unparsable updated_at")]["problems"] == 1
    assert checks[("a", "unparsable expires_at")]["problems"] == 1
    assert checks[("a", "undecodable payloads")]["problems"] == 1
    assert checks[("a", "quick_check")]["problems"] == 0
    table = run(ws, "verify")
    assert table.returncode == 1 and "dangling rows" in table.stdout
    assert digest(ws) == before  # verify alone is read-only


def test_verify_fix_dry_run_then_fix(ws: Path) -> None:
    break_workspace(ws)
    before = digest(ws)
    dry = run(ws, "verify", "--fix", "--dry-run", "--json")
    plan = json.loads(dry.stdout.split("\n{", 1)[0]) if dry.stdout.startswith("{") else None
    assert plan is not None and plan["dry_run"] is True
    reasons = {(g["db"], g["reason"]): g for g in plan["groups"]}
    assert reasons[("b", "dangling")]["rows"] == 1
    assert reasons[("b", "orphan")]["files"] == 1
    assert reasons[("b", "stale temp file")]["files"] == 1
    assert digest(ws) == before
    fixed = run(ws, "verify", "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert keys(ws / "b.db") == {"b1", "b2", "b3"}
    blobs = sorted(p.name for p in (ws / "blobs" / "b").iterdir())
    assert blobs == [".gitignore", "b1.bin", "b2.bin", "b3.bin", "fresh.bin"]
    again = json.loads(run(ws, "verify", "--json").stdout)
    left = {(c["db"], c["check"]): c["problems"] for c in again["checks"] if c["problems"]}
    # Timestamps and payloads are reported, never "fixed" by deleting.
    assert left == {
        ("a", "unparsable updated_at"): 1,
        ("a", "unparsable expires_at"): 1,
        ("a", "undecodable payloads"): 1,
    }


def test_verify_fix_keeps_a_row_resaved_meanwhile(ws: Path) -> None:
    """A dangling key re-saved (blob first, then row) after the report is not deleted."""
    from beautyspot import maintenance as mt
    from beautyspot.workspace import discover

    (ws / "blobs" / "b" / "b0.bin").unlink()
    workspace = discover(ws)
    report = mt.verify(workspace, NOW)
    plan = mt.plan_verify_fix(workspace, NOW, report)
    LocalStorage(ws / "blobs" / "b").save("b0", serializer.dumps("again"))
    result = mt.execute(plan, workspace)
    assert "b0" in keys(ws / "b.db") and result.rows == 0


# --------------------------------------------------------------------------- rm


def test_rm_exact_prefix_and_blob(ws: Path) -> None:
    proc = run(ws, "rm", "a3", "b2", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "a3" not in keys(ws / "a.db") and "b2" not in keys(ws / "b.db")
    assert not (ws / "blobs" / "b" / "b2.bin").exists()
    assert (ws / "blobs" / "b" / "b1.bin").exists()


def test_rm_ambiguous_or_unknown_deletes_nothing(ws: Path) -> None:
    before = digest(ws)
    amb = run(ws, "rm", "a", "--yes")
    assert amb.returncode == 2
    assert "matches 10 tasks" in amb.stderr and "a0" in amb.stdout
    unknown = run(ws, "rm", "a1", "zzz", "--yes")
    assert unknown.returncode == 1 and "no task matches 'zzz'" in unknown.stderr
    assert digest(ws) == before


def test_rm_refuses_without_yes_off_a_terminal(ws: Path) -> None:
    before = digest(ws)
    proc = run(ws, "rm", "a1")
    assert proc.returncode == 2 and "--yes" in proc.stderr
    assert digest(ws) == before


def test_rm_reads_keys_from_ls_pipe(ws: Path) -> None:
    listed = run(ws, "ls", "--db", "b", "--func", "fb", "--older-than", "1h", "-q")
    assert sorted(listed.stdout.split()) == ["b0", "b1"]  # 100 and 75 minutes old
    proc = run(ws, "rm", "-", "--yes", "--json", stdin=listed.stdout)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["totals"]["rows"] == 2 and doc["totals"]["files"] == 2
    assert keys(ws / "b.db") == {"b2", "b3"}


def test_rm_dry_run_changes_nothing(ws: Path) -> None:
    before = digest(ws)
    proc = run(ws, "rm", "b1", "--dry-run")
    assert proc.returncode == 0 and "would delete 1 tasks and 1 blob files" in proc.stdout
    assert digest(ws) == before


# --------------------------------------------------------------------------- budgets


def test_max_entries_across_workspace_evicts_least_recent(ws: Path) -> None:
    dry = json.loads(run(ws, "gc", "--max-entries", "5", "-n", "--json").stdout)
    assert dry["totals"]["rows"] == 9
    assert {g["reason"] for g in dry["groups"]} == {"over budget"}
    real = json.loads(run(ws, "gc", "--max-entries", "5", "--json").stdout)
    assert real["totals"] == dry["totals"]
    # The five most recent: b3 (25 min), b2 (50), a9 (60), b1 (75), b0 (100); a8 is 120.
    assert keys(ws / "a.db") | keys(ws / "b.db") == {"a9", "b0", "b1", "b2", "b3"}


def test_max_entries_per_db(ws: Path) -> None:
    proc = run(ws, "gc", "--max-entries", "2", "--per-db")
    assert proc.returncode == 0, proc.stderr
    assert keys(ws / "a.db") == {"a8", "a9"} and keys(ws / "b.db") == {"b2", "b3"}
    assert sorted(p.name for p in (ws / "blobs" / "b").glob("*.bin")) == ["b2.bin", "b3.bin"]


@pytest.mark.parametrize("size", ["1.5kB", "1536B", "1.5KiB"])
def test_max_size_units(ws: Path, size: str) -> None:
    proc = run(ws, "gc", "--max-size", size, "-n", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    budget = {"1.5kB": 1500, "1536B": 1536, "1.5KiB": 1536}[size]
    total = sum(
        len(r[0]) for r in sqlite3.connect(ws / "a.db").execute("SELECT result_data FROM tasks")
    ) + sum(p.stat().st_size for p in (ws / "blobs" / "b").glob("*.bin"))
    assert total - doc["totals"]["bytes"] <= budget
    assert doc["totals"]["bytes"] > 0


def test_budget_flags_validated(ws: Path) -> None:
    assert run(ws, "gc", "--max-size", "5XB").returncode == 2
    assert run(ws, "gc", "--per-db").returncode == 2
    assert run(ws, "gc", "--max-entries", "-1").returncode == 2


# --------------------------------------------------------------------------- audit log


def test_audit_log_one_line_per_task_and_file(ws: Path) -> None:
    proc = run(ws, "rm", "b1", "a0", "--yes")
    assert proc.returncode == 0
    lines = [json.loads(x) for x in (ws / "maintenance.log.jsonl").read_text().splitlines()]
    assert len(lines) == 3  # two tasks, one blob file
    assert {x["key"] for x in lines} == {"a0", "b1"}
    assert all(x["command"] == "rm" and x["reason"] == "removed" for x in lines)
    file_line = next(x for x in lines if "path" in x)
    assert file_line["path"].endswith("b1.bin") and file_line["bytes"] > 0


def test_no_audit_log_writes_nothing(ws: Path) -> None:
    assert run(ws, "clear", "--yes", "--no-audit-log").returncode == 0
    assert not (ws / "maintenance.log.jsonl").exists()


def test_audit_log_rotates_at_ten_megabytes(ws: Path) -> None:
    log = ws / "maintenance.log.jsonl"
    log.write_bytes(b"{}\n" * (10 * 1024 * 1024 // 3 + 1))
    assert run(ws, "rm", "a0", "--yes").returncode == 0
    assert (ws / "maintenance.log.jsonl.1").stat().st_size >= 10 * 1024 * 1024
    assert len(log.read_text().splitlines()) == 1


def test_gc_report_for_cron_mail(ws: Path) -> None:
    proc = run(ws, "gc", "--max-entries", "12", "--report")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("beautyspot gc report:")
    assert "deleted 2 tasks" in lines[1]
    assert any("over budget: 2 tasks" in x for x in lines)
    assert "\x1b" not in proc.stdout


def test_destructive_runs_work_in_a_directory_whose_name_is_not_utf8(ws: Path) -> None:
    """The write connections' file: URIs are built from the path's bytes (they used to
    go through a str quoting that raised on the surrogate-escaped byte)."""
    odd = ws.parent / os.fsdecode(b"cache-\xff")
    odd.mkdir()
    moved = odd / ".beautyspot"
    ws.rename(moved)
    proc = run(moved, "prune", "--older-than", "5h", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr
    proc = run(moved, "clear", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert keys(moved / "a.db") == set() and keys(moved / "b.db") == set()
