"""Scenario 6: path confinement.

Expired rows whose ``result_value`` tries to leave the blob dir (``../``, absolute paths,
``sub/../../``, backslashes, drive letters, NUL), rows naming symlinks inside the blob dir
that point outside (to a file, through a directory), orphan symlinks, a symlinked zombie
dir and a symlinked legacy blob dir, a FIFO and a directory named like blobs. Files outside
the workspace hold a marker string.

``show`` (and ``show --raw``) of every row, then ``gc``, ``prune`` and ``clear`` (each on a
fresh copy): the tree outside the workspace is byte-for-byte unchanged (nothing deleted,
nothing written), the marker never appears in any output (nothing read), nothing hangs,
no traceback; the one legitimate blob is deleted normally.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from . import relkit
from .relkit import OLD_MTIME

MARKER = "SECRET-OUTSIDE-MARKER"
OLD = "2026-01-01 00:00:00.000000+00:00"
NOW_TS = relkit.NOW.timestamp()


def build(root: Path) -> tuple[Path, Path, list[str]]:
    outside = root / "outside"
    for rel in (
        "victim.bin",
        "victim2.bin",
        "victim3.bin",
        "outdir/x.bin",
        "outdir2/o.bin",
        "zdir/z.bin",
        "ldir/l.bin",
    ):
        relkit.write_blob(outside / rel, f"{MARKER} {rel}".encode(), OLD_MTIME)
    ws = root / "ws" / ".beautyspot"
    blobs = ws / "blobs" / "evil"
    blobs.mkdir(parents=True)
    relkit.write_blob(blobs / "legit.bin", b"\xa5legit", OLD_MTIME)
    (blobs / "link.bin").symlink_to(outside / "victim2.bin")
    (blobs / "linkdir").symlink_to(outside / "outdir", target_is_directory=True)
    (blobs / "olink.bin").symlink_to(outside / "victim3.bin")
    os.utime(blobs / "olink.bin", (OLD_MTIME, OLD_MTIME), follow_symlinks=False)
    (blobs / "olinkdir").symlink_to(outside / "outdir2", target_is_directory=True)
    os.mkfifo(blobs / "fifo.bin")
    relkit.write_blob(blobs / "dir.bin" / "keep.txt", b"a directory named like a blob")
    (ws / "blobs" / "zomb").symlink_to(outside / "zdir", target_is_directory=True)
    (ws / "legacyz").mkdir()
    (ws / "legacyz" / "blobs").symlink_to(outside / "ldir", target_is_directory=True)
    locations = [
        "../../../outside/victim.bin",
        str(outside / "victim.bin"),
        "sub/../../../../outside/victim.bin",
        "..\\..\\..\\outside\\victim.bin",
        "./../../../outside/victim.bin",
        "linkdir/../../../../outside/victim.bin",
        "C:\\outside\\victim.bin",
        "//" + str(outside / "victim.bin"),
        "link.bin",
        "linkdir/x.bin",
        "fifo.bin",
        "dir.bin",
        "legit.bin",
        "victim.bin\x00../../../outside/victim.bin",
        "",
        ".",
        "/",
    ]
    rows = [
        relkit.file_row(f"conf{i:02d}", "mod.evil", loc, OLD, OLD)
        for i, loc in enumerate(locations)
    ]
    relkit.create_db(ws / "evil.db", rows)
    return ws, outside, locations


@pytest.mark.parametrize("command", ["gc", "prune", "clear"])
def test_locations_confined_to_blob_dir(command, tmp_path, figures):
    ws, outside, locations = build(tmp_path)
    before = relkit.snapshot(outside)
    problems, marker_seen, tracebacks, runs = [], 0, 0, 0
    outputs = []
    if command == "gc":  # show every row (same workspace, before any deletion)
        # --raw of one row per kind of location; the preview path for links and the FIFO.
        picks = (0, 1, 3, 8, 9, 10, 13)
        shows = [["-w", ws, "show", "--raw", f"conf{i:02d}"] for i in picks]
        shows += [["-w", ws, "show", f"conf{i:02d}"] for i in (8, 10)]
        for args, r in zip(shows, relkit.run_many(shows, timeout=30), strict=True):
            if r is None:
                problems.append(f"{args[2:]} hung")
                continue
            runs += 1
            outputs.append(r)
            if r.returncode not in (0, 1):
                problems.append(r.describe())
    args = {
        "gc": ["gc"],
        "prune": ["prune", "--older-than", "1d", "--yes"],
        "clear": ["clear", "--yes"],
    }[command]
    try:
        r = relkit.run(["-w", ws, *args], timeout=60)
        outputs.append(r)
        runs += 1
    except subprocess.TimeoutExpired:
        problems.append(f"{command} hung")
    for r in outputs:
        tracebacks += r.traceback
        if MARKER in r.stdout or MARKER in r.stderr:
            marker_seen += 1
            problems.append(f"marker of an outside file in the output of {r.args}")
    after = relkit.snapshot(outside)
    changed = relkit.snapshot_diff(before, after)
    if changed:
        problems.append(f"outside tree changed: {changed}")
    if (ws / "blobs" / "evil" / "legit.bin").exists():
        problems.append("the legitimate blob of an expired row was not deleted")
    if not (ws / "blobs" / "evil" / "dir.bin" / "keep.txt").is_file():
        problems.append("a directory named dir.bin was removed")
    figures(
        command=command,
        hostile_locations=len(locations),
        runs=runs,
        outside_files_changed=len(changed),
        outside_content_read=marker_seen,
        tracebacks=tracebacks,
    )
    assert not problems, "\n".join(problems[:20])
    assert tracebacks == 0


@pytest.mark.parametrize("command", ["gc", "clear"])
def test_non_blob_files_never_deleted_through_a_row(command, tmp_path, figures):
    ws = tmp_path / ".beautyspot"
    blobs = ws / "blobs" / "d"
    relkit.write_blob(blobs / ".gitignore", b"*\n")
    # A write in progress "now" (BEAUTYSPOT_NOW): young, so the temp sweep keeps it too.
    relkit.write_blob(blobs / "k.bin.0123456789abcdef.spot_tmp", b"a live write", NOW_TS)
    relkit.write_blob(blobs / "notes.txt", b"not a blob")
    rows = [
        relkit.file_row(f"nb{i}", "mod.f", loc, OLD, OLD)
        for i, loc in enumerate([".gitignore", "k.bin.0123456789abcdef.spot_tmp", "notes.txt"])
    ]
    relkit.create_db(ws / "d.db", rows)
    args = ["gc"] if command == "gc" else ["clear", "--yes"]
    r = relkit.run(["-w", ws, *args])
    left = sorted(p.name for p in blobs.iterdir())
    figures(command=command, non_blob_files_deleted=3 - len(left), tracebacks=int(r.traceback))
    assert r.returncode == 0 and not r.traceback, r.describe()
    assert left == [".gitignore", "k.bin.0123456789abcdef.spot_tmp", "notes.txt"]


def test_cleanup_helper_keeps_tmp_clean(tmp_path):
    """``shutil.rmtree`` of a tree with a FIFO and symlinks works (the fixtures rely on it)."""
    ws, outside, _ = build(tmp_path / "x")
    shutil.rmtree(ws)
    assert outside.exists()
