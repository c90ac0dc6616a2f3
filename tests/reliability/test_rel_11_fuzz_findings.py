"""Scenario 11: what a fuzzing pass over the installed command found, kept found.

Each test is one finding, reproduced with real files and the real command: a
destructive run deleting or overwriting what it must not, a crash, a hang, an exit code
the README does not give.  Each asserts the repaired behaviour and that nothing else
changed.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from . import relkit
from .relkit import NOW, UPSTREAM, create_db, file_row, inline_row, run, ts, write_blob

DAY = 86_400
LIVE_UPD = ts(NOW.replace(day=9))
OLD_MTIME = NOW.timestamp() - 9 * DAY


def _ok(r: relkit.Run, code: int = 0) -> None:
    assert r.returncode == code and not r.traceback, r.describe()


def _upstream_copy(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(UPSTREAM, ws)
    for path in [ws, *ws.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return ws


# --------------------------------------------------------------------------- blobs


@pytest.mark.parametrize("how", ["workspace", "--db"])
def test_two_dbs_of_one_name_share_their_blob_dir(tmp_path: Path, how: str) -> None:
    """t.db and t.sqlite both keep their blobs in blobs/t/: a blob either names is no
    orphan of the other, and an expired row's blob the other still names stays."""
    ws = tmp_path / "ws"
    ws.mkdir()
    blobs = ws / "blobs" / "t"
    past = ts(NOW.replace(day=1))
    create_db(
        ws / "t.db",
        [
            file_row("a", "m.f", "a.bin", None, LIVE_UPD),
            file_row("gone", "m.f", "shared.bin", past, LIVE_UPD),  # expired
        ],
    )
    create_db(
        ws / "t.sqlite",
        [
            file_row("b", "m.f", "b.bin", None, LIVE_UPD),
            file_row("keeps", "m.f", "shared.bin", None, LIVE_UPD),
        ],
    )
    for name in ("a.bin", "b.bin", "shared.bin", "orphan.bin"):
        write_blob(blobs / name, b"\xa1x", OLD_MTIME)
    args = ["-w", ws, "gc"] if how == "workspace" else ["--db", ws / "t.db", "gc"]
    _ok(run(args))
    assert relkit.blob_files(blobs) == {"a.bin", "b.bin", "shared.bin"}
    assert set(relkit.db_rows(ws / "t.db")) == {"a"}  # the expired row itself went
    # verify agrees: nothing dangling, no orphan but the one gc just took.
    r = run(["-w", ws, "verify"])
    _ok(r)
    assert "orphan blobs past grace" in r.stdout


def test_a_backslash_is_part_of_a_blob_name(tmp_path: Path) -> None:
    """A live row naming ``x\\y.bin``: show reads that file, so gc must not take it
    for an orphan (it read the name as ``x/y.bin``)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    create_db(ws / "t.db", [file_row("live", "m.f", "x\\y.bin", None, LIVE_UPD)])
    blob = ws / "blobs" / "t" / "x\\y.bin"
    write_blob(blob, b"\x01", OLD_MTIME)
    _ok(run(["-w", ws, "gc"]))
    assert blob.exists()
    r = run(["-w", ws, "show", "live"])
    _ok(r)
    assert "x\\y.bin" in r.stdout


# --------------------------------------------------------------------------- files


def test_a_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    ws = _upstream_copy(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("important\n")
    (ws / ".beautyspot.lock").symlink_to(victim)
    before = relkit.inspect(ws / "llm.db", ws / "blobs" / "llm")
    for args in (["gc"], ["prune", "--older-than", "1d", "--yes"], ["clear", "--yes"]):
        r = run(["-w", ws, *args])
        _ok(r, 1)
        assert r.error_lines == [
            f"beautyspot: error: lock file {ws / '.beautyspot.lock'} is a symlink; not following it"
        ]
    assert victim.read_text() == "important\n"
    assert relkit.inspect(ws / "llm.db", ws / "blobs" / "llm") == before


def test_a_fifo_audit_log_is_refused_not_waited_on(tmp_path: Path) -> None:
    ws = _upstream_copy(tmp_path)
    os.mkfifo(ws / "maintenance.log.jsonl")
    before = relkit.inspect(ws / "llm.db", ws / "blobs" / "llm")
    r = run(["-w", ws, "gc"], timeout=60)
    _ok(r, 1)
    assert "is not a regular file" in r.stderr
    assert relkit.inspect(ws / "llm.db", ws / "blobs" / "llm") == before
    assert stat.S_ISFIFO(os.lstat(ws / "maintenance.log.jsonl").st_mode)


def test_a_failed_log_rotation_does_not_stop_the_run(tmp_path: Path) -> None:
    """The log is full and its ``.1`` cannot be replaced (a directory): the run goes on,
    logging every deletion in the log as it is."""
    ws = _upstream_copy(tmp_path)
    log = ws / "maintenance.log.jsonl"
    log.write_text(("x" * 99 + "\n") * (10 * 1024 * 1024 // 100 + 1))
    (ws / "maintenance.log.jsonl.1" / "sub").mkdir(parents=True)
    r = run(["-w", ws, "gc"])
    _ok(r)
    gc_lines = [line for line in log.read_text().splitlines() if '"command": "gc"' in line]
    assert len(gc_lines) == 15 + 6  # the 15 expired rows, the zombie dir's 6 blobs
    assert not (ws / "blobs" / "web").exists()


# --------------------------------------------------------------------------- timestamps


def test_instants_before_year_one_are_unparsable_everywhere(tmp_path: Path) -> None:
    """``0001-01-01 00:00:00+14:00`` is 10:00 on 31 December of year 0: shown as
    unparsable, and so never old or expired for gc and prune either."""
    ws = tmp_path / "ws"
    ws.mkdir()
    create_db(
        ws / "t.db",
        [
            inline_row("old", "m.f", b"\x01", None, "0001-01-01 00:00:00+14:00"),
            inline_row("exp", "m.f", b"\x01", "0001-01-01 05:00:00+06:00", LIVE_UPD),
            inline_row("year1", "m.f", b"\x01", None, "0001-01-01 14:00:00+14:00"),
        ],
    )
    r = run(["-w", ws, "verify"])
    assert "unparsable updated_at                1" in r.stdout, r.describe()
    assert "unparsable expires_at                1" in r.stdout, r.describe()
    r = run(["-w", ws, "ls", "t"])
    _ok(r)
    assert "0001-01-01 00:00:00" in r.stdout  # year 1, four digits (not "1-01-01")
    _ok(run(["-w", ws, "gc"]))
    _ok(run(["-w", ws, "prune", "--older-than", "30d", "--yes"]))
    assert set(relkit.db_rows(ws / "t.db")) == {"old", "exp"}  # year1 was old: pruned
