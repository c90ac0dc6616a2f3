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
import subprocess
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


# --------------------------------------------------------------------------- rows, keys


def test_a_blob_typed_function_does_not_stop_the_workspace(tmp_path: Path) -> None:
    """One row with a BLOB func_identifier crashed gc, prune and clear for every DB."""
    ws = _upstream_copy(tmp_path)
    past = ts(NOW.replace(day=1))
    row = inline_row("k1", "m.f", b"\x01", past, past)
    create_db(
        ws / "other.db",
        [(*row[:2], b"m.f", *row[3:]), inline_row("k2", "m.g", b"\x01", past, past)],
    )
    r = run(["-w", ws, "gc"])
    _ok(r)
    assert "m.f" in r.stdout and "m.g" in r.stdout
    assert relkit.db_rows(ws / "other.db") == {}
    assert len(relkit.db_rows(ws / "llm.db")) == 45  # its 15 expired rows went too


def _bash(script: str, ws: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script, "_", relkit.BS, str(ws)],
        capture_output=True,
        text=True,
        env=relkit.cli_env(),
        timeout=120,
    )


def test_ls_q_into_rm_deletes_exactly_the_listed_keys(tmp_path: Path) -> None:
    """`rm -` took `abc ` for `abc` (it stripped each line) and deleted the live task;
    `ls -q` printed keys with control characters escaped, i.e. as other keys' text."""
    ws = tmp_path / "ws"
    ws.mkdir()
    old = ts(NOW.replace(year=2020))
    create_db(
        ws / "t.db",
        [
            inline_row("abc ", "m.old_fn", b"\x01", None, old),
            inline_row(" abc", "m.old_fn", b"\x01", None, old),
            inline_row("a\x1bb", "m.old_fn", b"\x01", None, old),
            inline_row("a\\x1bb", "m.live_fn", b"\x01", None, LIVE_UPD),  # the escaped text
            inline_row("abc", "m.live_fn", b"\x01", None, LIVE_UPD),
        ],
    )
    listed = _bash('"$1" -w "$2" ls t --func m.old_fn -q', ws)
    assert listed.returncode == 0 and sorted(listed.stdout.split("\n")) == ["", " abc", "abc "]
    assert "1 keys not printed" in listed.stderr
    piped = _bash('"$1" -w "$2" ls t --func m.old_fn -q | "$1" -w "$2" rm - --yes', ws)
    assert piped.returncode == 0, piped.stderr
    assert set(relkit.db_rows(ws / "t.db")) == {"a\x1bb", "a\\x1bb", "abc"}


def test_rm_fails_when_a_db_could_not_be_searched(tmp_path: Path) -> None:
    ws = _upstream_copy(tmp_path)
    (ws / "corrupt.db").write_bytes(b"x" * 5000)
    key = sorted(relkit.db_rows(ws / "llm.db"))[0]
    r = run(["-w", ws, "rm", key, "--yes"])
    _ok(r, 1)
    assert r.error_lines[-1].startswith("beautyspot: error: skipped corrupt:")
    assert key not in relkit.db_rows(ws / "llm.db")  # found elsewhere: still deleted


# --------------------------------------------------------------------------- streams, options


def test_closed_standard_streams(tmp_path: Path) -> None:
    ws = _upstream_copy(tmp_path)
    before = relkit.inspect(ws / "llm.db", ws / "blobs" / "llm")
    for script, code, message in [
        ('"$1" -w "$2" prune --older-than 1d <&-', 2, "refusing to prune without --yes"),
        ('"$1" -w "$2" clear <&-', 2, "refusing to clear without --yes"),
        ('"$1" -w "$2" rm - --yes <&-', 2, "no keys given"),
        ('"$1" -w "$2" gc >&-', 1, "standard output is closed"),
        ('"$1" -w "$2" ls >&-', 1, "standard output is closed"),
    ]:
        r = _bash(script, ws)
        assert r.returncode == code and "Traceback" not in r.stderr, (script, r.stderr)
        assert r.stderr.splitlines() == [f"beautyspot: error: {message}"] or message in r.stderr
    assert relkit.inspect(ws / "llm.db", ws / "blobs" / "llm") == before
    # Closed stderr: the run still works; only its messages are lost.
    r = _bash('"$1" -w "$2" gc 2>&-', ws)
    assert r.returncode == 0 and "deleted 15 tasks" in r.stdout


def test_verify_fix_takes_yes_like_gc(tmp_path: Path) -> None:
    ws = _upstream_copy(tmp_path)
    r = run(["-w", ws, "verify", "--fix", "--yes", "--dry-run"])
    assert r.returncode in (0, 1) and not r.traceback, r.describe()
    assert "No such option" not in r.stderr
