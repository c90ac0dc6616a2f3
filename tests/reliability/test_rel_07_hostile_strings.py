"""Scenario 7: hostile strings in every text column and in file names.

Rich markup (``[/]``, ``[link=…]``, ``[bold red]``), ANSI CSI and OSC sequences (colour,
hyperlink, window title), C1 CSI, BEL/backspace, newlines and carriage returns, NUL,
a bidi override, 10 kB values, in cache_key, func_name, func_identifier, version,
result_value and expires_at; a DB, an orphan blob and a zombie dir with such names.

``ls``, ``ls DB``, ``show`` (one row per kind of string), every dry run and ``--json``
variants, off a terminal and on a pseudo-terminal (Rich rendering), then a real ``gc``:

* exit 0, no traceback;
* off a terminal: no control character but ``\\n`` in the output, no bidi control;
* on a terminal: no OSC, BEL, NUL, C1 or bidi control, and no ESC other than Rich's own
  SGR colour codes;
* markup appears literally (``[link=https://evil.example/]click[/link]`` is printed as
  such), escapes appear in their visible ``\\x1b`` form.

Non-UTF-8 bytes (in text columns, in file names) are tested separately below.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import sqlite3
import struct
import subprocess
import termios
import time
from pathlib import Path

from . import relkit
from .relkit import OLD_MTIME

HOSTILE = [
    "[/]",
    "[link=https://evil.example/]click[/link]",
    "[bold red]BOLD[/bold red]",
    "\x1b[31mRED\x1b[0m",
    "\x1b]8;;https://evil.example/\x07LINK\x1b]8;;\x07",
    "\x1b]0;pwned-title\x07",
    "line1\nline2\rline3",
    "nul\x00byte",
    "A" * 10_000,
    "\u202etxt.exe",
    "\x9b31mC1CSI",
    "\x07bell\x08backspace\x7fdel",
]
OLD = "2026-01-01 00:00:00.000000+00:00"
LIVE = "2027-06-01 00:00:00.000000+00:00"
SGR = re.compile(r"\x1b\[[0-9;]*m")
BIDI = set("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ODD_DB = "n[red]ame\x1b[2J"


def build(ws: Path) -> None:
    blobs = ws / "blobs" / "hostile"
    rows = []
    for j, h in enumerate(HOSTILE):
        key = f"hk{j:02d}-{h}"
        loc = f"hk{j:02d}.bin"
        relkit.write_blob(blobs / loc, b"\xa5" + h.encode()[:200], OLD_MTIME)
        # A live FILE row, an expired inline row, a row with the string as its expiry.
        rows.append((key, h, f"mod.{h}", h, h, "FILE", h, loc, None, LIVE, OLD))
        rows.append((f"hx{j:02d}-{h}", h, f"mod.{h}", h, h, "DIRECT_BLOB", h, None,
                     b"\xa3" + h.encode()[:20], OLD, OLD))  # fmt: skip
        rows.append((f"hu{j:02d}-{h}", h, None, h, None, "FILE", None, h, None, h, h))
    relkit.create_db(ws / "hostile.db", rows)
    relkit.create_db(
        ws / f"{ODD_DB}.db", [relkit.inline_row("odd-key", "mod.f", b"\xc0", OLD, OLD)]
    )
    relkit.write_blob(blobs / "orph\x1b]0;t\x07[/].bin", b"o", OLD_MTIME)
    relkit.write_blob(blobs / "young\x1b[2J[link=x]y[/link].bin", b"o")
    relkit.write_blob(ws / "blobs" / "zz\nyy[/]" / "z.bin", b"z")


def run_tty(args, env, timeout=60) -> relkit.Run:
    """Run on a pseudo-terminal (400 columns): Rich's terminal rendering."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [relkit.BS, *map(str, args)], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    proc.wait(timeout=10)
    out = b"".join(chunks).decode("utf-8", "replace")
    return relkit.Run([str(a) for a in args], proc.returncode, out, "", time.monotonic() - t0)


def plain_problems(text: str) -> list[str]:
    bad = sorted(
        {
            repr(c)
            for c in text
            if (c != "\n" and (ord(c) < 0x20 or c == "\x7f" or 0x80 <= ord(c) < 0xA0)) or c in BIDI
        }
    )
    return [f"raw control characters {bad}"] if bad else []


def tty_problems(text: str) -> list[str]:
    out = []
    stripped = SGR.sub("", text)
    for seq, name in (("\x1b]", "OSC"), ("\x07", "BEL"), ("\x00", "NUL"), ("\x9b", "C1 CSI")):
        if seq in text:
            out.append(f"raw {name}")
    if "\x1b" in stripped:
        out.append(f"ESC other than SGR: {stripped[stripped.index(chr(27)) :][:20]!r}")
    if any(c in BIDI for c in text):
        out.append("raw bidi control")
    return out


def test_hostile_strings_shown_literally(tmp_path, figures):
    ws = tmp_path / ".beautyspot"
    build(ws)
    env = relkit.cli_env(COLUMNS="400")
    reads = [
        ["ls"],
        ["ls", "hostile"],
        ["ls", "hostile", "--json"],
        ["gc", "--dry-run"],
        ["gc", "--dry-run", "--json"],
        ["prune", "--older-than", "1d", "--dry-run"],
        ["clear", "--dry-run"],
        # show: one row per kind of string (the others share these code paths).
        *[["show", f"hk{j:02d}"] for j in (1, 3, 7, 8)],
        ["show", "--json", "hu05"],
    ]
    problems, tracebacks, runs = [], 0, 0
    results = relkit.run_many([["-w", ws, *a] for a in reads], env=env)
    for args, r in zip(reads, results, strict=True):
        runs += 1
        tracebacks += r.traceback
        if r.returncode != 0:
            problems.append(r.describe())
        for p in plain_problems(r.stdout + r.stderr):
            problems.append(f"{args}: {p}")
        if "--json" in args:
            try:
                json.loads(r.stdout)
            except ValueError as exc:
                problems.append(f"{args}: not one JSON document: {exc}")
    by_args = {tuple(a): r for a, r in zip(reads, results, strict=True)}
    shown = by_args[("show", "hk01")].stdout
    if "[link=https://evil.example/]click[/link]" not in shown:
        problems.append("markup not shown literally by show")
    if "\\x1b[31mRED" not in by_args[("show", "hk03")].stdout:
        problems.append("ESC not shown in its visible form")
    if "[bold red]BOLD[/bold red]" not in by_args[("ls", "hostile")].stdout:
        problems.append("markup not shown literally by ls DB")

    tty_reads = [["ls", "hostile"], ["gc", "--dry-run"], ["show", "hk04"]]
    tty_shown = ""
    for args in tty_reads:
        r = run_tty(["-w", ws, *args], env)
        runs += 1
        tracebacks += r.traceback
        if r.returncode != 0:
            problems.append(f"tty: {r.describe()}")
        for p in tty_problems(r.stdout):
            problems.append(f"tty {args}: {p}")
        tty_shown += SGR.sub("", r.stdout)
    for literal in ("[link=https://evil.example/]click[/link]", "[bold red]BOLD[/bold red]"):
        # (both are in `ls hostile`: func, version and key columns)
        if literal not in tty_shown:
            problems.append(f"tty: {literal!r} not shown literally")

    # A real gc: the expired rows go, the hostile names do not break it.
    r = relkit.run(["-w", ws, "gc"], env=env)
    runs += 1
    tracebacks += r.traceback
    if r.returncode != 0:
        problems.append(r.describe())
    problems += [f"gc: {p}" for p in plain_problems(r.stdout + r.stderr)]
    left = relkit.db_rows(ws / "hostile.db")
    if any(k.startswith("hx") for k in left):
        problems.append("expired hostile rows not deleted by gc")
    if len([k for k in left if k.startswith("hk")]) != len(HOSTILE):
        problems.append("live hostile rows lost")
    figures(hostile_strings=len(HOSTILE), runs=runs, tracebacks=tracebacks, failures=len(problems))
    assert tracebacks == 0
    assert not problems, "\n".join(problems[:20])


def build_non_utf8(ws: Path, *, in_db: bool, in_names: bool) -> None:
    blobs = ws / "blobs" / "raw"
    blobs.mkdir(parents=True)
    rows = [relkit.inline_row("ok-key", "mod.f", b"\xc0", LIVE, OLD)]
    relkit.create_db(ws / "raw.db", rows)
    if in_db:
        conn = sqlite3.connect(ws / "raw.db")
        conn.execute(
            "INSERT INTO tasks (cache_key, func_name, func_identifier, input_id, version,"
            " result_type, result_value, expires_at, updated_at) VALUES"
            " (CAST(X'6e7538ff6b6579' AS TEXT), CAST(X'66c3' AS TEXT), CAST(X'6d2eff' AS TEXT),"
            "  'i', CAST(X'76fe' AS TEXT), 'FILE', CAST(X'6261ff642e62696e' AS TEXT), ?, ?)",
            (OLD, OLD),
        )
        conn.commit()
        conn.close()
        relkit.write_blob(Path(os.fsdecode(bytes(blobs) + b"/ba\xffd.bin")), b"x", OLD_MTIME)
    if in_names:
        for name in (b"orph\xff.bin", b"tmp\xfe.bin.00.spot_tmp"):
            relkit.write_blob(Path(os.fsdecode(bytes(blobs) + b"/" + name)), b"x", OLD_MTIME)


def _non_utf8_case(tmp_path, figures, *, in_db: bool, in_names: bool) -> None:
    ws = tmp_path / ".beautyspot"
    build_non_utf8(ws, in_db=in_db, in_names=in_names)
    reads = [["ls"], ["ls", "raw"], ["show", "nu8" if in_db else "ok-"], ["gc", "--dry-run"]]
    problems, tracebacks = [], 0
    for r in relkit.run_many([["-w", ws, *a] for a in reads]):
        tracebacks += r.traceback
        if r.returncode != 0 or plain_problems(r.stdout + r.stderr):
            problems.append(r.describe())
    r = relkit.run(["-w", ws, "gc"])
    tracebacks += r.traceback
    if r.returncode != 0:
        problems.append(r.describe())
    left = sorted(os.listdir(ws / "blobs" / "raw"))
    if [n for n in left if n != ".gitignore"]:
        problems.append(f"gc left {left}")
    figures(in_db=in_db, in_names=in_names, tracebacks=tracebacks, failures=len(problems))
    assert not problems, "\n".join(problems)


def test_non_utf8_text_columns(tmp_path, figures):
    _non_utf8_case(tmp_path, figures, in_db=True, in_names=False)


def test_non_utf8_file_names(tmp_path, figures):
    _non_utf8_case(tmp_path, figures, in_db=False, in_names=True)
