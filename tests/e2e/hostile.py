"""A hostile ``.beautyspot`` workspace, written with plain ``sqlite3``, and its expected fate.

:func:`make_hostile_workspace` builds, under *root*::

    root/outside/                      files outside the workspace (must survive everything)
    root/.beautyspot/
      times.db        (WAL)            every SPEC §3 timestamp form around now and the cutoff
      hostile.db                       unsafe blob locations, markup/escapes, bad payloads
      legacy.db  + legacy/blobs/       old schema (no func_identifier/expires_at/...), old layout
      corrupt.db  + blobs/corrupt/     random bytes; its blob dir must never be swept
      alien.sqlite                     SQLite, but no ``tasks`` table
      blobs/ghost/                     zombie dir: old and young files
      oldghost/blobs/                  legacy-layout zombie: only old files (removed entirely)

and returns a dict saying, for ``gc``, ``prune --older-than 30d`` and ``clear --func X``,
which rows (per DB) and which files (paths relative to *root*) each deletes, and what it
must keep.  Every classification here is written down by hand from the SPEC, never
computed by the code under test.

File mtimes are set relative to *now*, the same instant the tests pass as
``BEAUTYSPOT_NOW``: "old" files are two hours old (past the 1h grace), "young" ten minutes.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
from pathlib import Path

import msgpack

from beautyspot.sql import CREATE_TABLE

UTC = dt.timezone.utc

LEGACY_CREATE = """
CREATE TABLE tasks (
    cache_key TEXT PRIMARY KEY,
    func_name TEXT,
    input_id  TEXT,
    result_type TEXT,
    result_value TEXT,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)
"""

# Strings that must reach the terminal literally (markup) or visibly escaped (controls).
MARKUP_KEY = "[bold]boom[/]"
MARKUP_FUNC = "[link=http://x]click[/link]"
ANSI_KEY = "esc-\x1b[31mred\x1b[0m"
ANSI_FUNC = "ansi\x1b[2J\x1b]8;;http://evil\x07osc"
NEWLINE_KEY = "nl-line1\nline2"
NEWLINE_FUNC = "multi\nline"


def upstream_ts(moment: dt.datetime) -> str:
    """Upstream's form: ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``."""
    return moment.astimezone(UTC).isoformat(sep=" ")


def _row(
    key: str,
    func: str,
    *,
    expires: object = None,
    updated: object = None,
    rtype: str = "DIRECT_BLOB",
    value: str | None = None,
    data: bytes | None = None,
    ident: object = "default",
) -> dict:
    if rtype == "DIRECT_BLOB" and data is None:
        data = msgpack.packb({"key": key}, use_bin_type=True)
    return {
        "cache_key": key,
        "func_name": func,
        "func_identifier": f"tests.{func}" if ident == "default" else ident,
        "input_id": "in-" + key[:20],
        "result_type": rtype,
        "result_value": value,
        "result_data": data,
        "content_type": None,
        "version": "v1",
        "expires_at": expires,
        "updated_at": updated,
    }


def _write_db(path: Path, rows: list[dict], *, wal: bool = False) -> None:
    conn = sqlite3.connect(path)
    try:
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(CREATE_TABLE)
        conn.execute("CREATE INDEX IF NOT EXISTS idx_func_identifier ON tasks(func_identifier)")
        conn.execute("CREATE INDEX IF NOT EXISTS idx_expires_at ON tasks(expires_at)")
        cols = list(rows[0])
        conn.executemany(
            f"INSERT INTO tasks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(r[c] for c in cols) for r in rows],
        )
        conn.commit()
    finally:
        conn.close()


def _file(path: Path, data: bytes, mtime: dt.datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = mtime.timestamp()
    os.utime(path, (stamp, stamp))
    return path


def make_hostile_workspace(root: Path, now: dt.datetime) -> dict:
    """Write the hostile workspace under *root* (see the module docstring); return expectations.

    The returned dict has:

    * ``workspace``, ``now`` (ISO, for ``BEAUTYSPOT_NOW``), ``outside`` (absolute paths of the
      files outside the blob dirs, each with its bytes), ``corrupt`` (relative paths of the
      unreadable DBs), ``hostile_strings``, ``keys`` (named keys for ``show``);
    * per command (``gc``, ``prune``, ``clear_evil``, ``clear_blobby``, ``clear_legacy``,
      ``clear_all``; ``func`` is the clear's ``--func``): ``rows`` (db name ->
      set of cache keys deleted), ``files`` (set of paths relative to *root* deleted),
      ``dirs`` (directories removed) and ``kept_files`` (files that must survive).
    """
    root = Path(root)
    ws = root / ".beautyspot"
    outside = root / "outside"
    ws.mkdir(parents=True)
    outside.mkdir()
    (ws / ".gitignore").write_text("*\n")

    old = now - dt.timedelta(hours=2)  # past the 1h grace
    young = now - dt.timedelta(minutes=10)  # inside it
    recent = upstream_ts(now - dt.timedelta(days=1))
    long_ago = "2026-09-01 00:00:00+00:00"
    past = upstream_ts(now - dt.timedelta(days=2))
    future = upstream_ts(now + dt.timedelta(days=20))
    cutoff = now - dt.timedelta(days=30)
    assert (now.hour, now.minute, now.second, now.microsecond) == (12, 0, 0, 0), (
        "the timestamp literals below assume now is at 12:00:00 UTC"
    )
    day = now.strftime("%Y-%m-%d")  # e.g. 2026-12-10
    cday = cutoff.strftime("%Y-%m-%d")  # e.g. 2026-11-10

    # ------------------------------------------------------------------ times.db (WAL)
    # gc: expires_at in every format, just before / after now (updated_at recent).
    exp_expired = {
        "exp-space": f"{day} 11:59:59+00:00",
        "exp-space-1us": f"{day} 11:59:59.999999+00:00",
        "exp-T": f"{day}T11:59:59+00:00",
        "exp-Z": f"{day}T11:59:59Z",
        "exp-plus9": f"{day} 20:59:59+09:00",  # as a string it sorts after now
        "exp-minus5": f"{day} 06:59:59-05:00",
        "exp-naive": f"{day} 11:59:59",
        "exp-naive-T-frac": f"{day}T11:59:59.5",
        "exp-long-ago": "2020-01-01 00:00:00",
    }
    exp_live = {
        "exp-space-future": f"{day} 12:00:01+00:00",
        "exp-space-1us-future": f"{day} 12:00:00.000001+00:00",
        "exp-T-future": f"{day}T12:00:01+00:00",
        "exp-Z-future": f"{day}T12:00:01Z",
        "exp-plus9-future": f"{day} 21:00:01+09:00",
        "exp-minus5-future": f"{day} 07:00:01-05:00",  # as a string it sorts before now
        "exp-naive-future": f"{day} 12:00:01",
        "exp-null": None,
    }
    exp_unparsable = {
        "exp-garbage": "not a date",
        "exp-feb30": "2026-02-30 00:00:00+00:00",
        "exp-hour25": f"{day} 25:00:00",
        "exp-empty": "",
        "exp-int": 1700000000,
    }
    # prune --older-than 30d: updated_at in every format around the cutoff (never expires).
    age_old = {
        "age-space-1us": f"{cday} 11:59:59.999999+00:00",
        "age-space": f"{cday} 11:59:59+00:00",
        "age-T": f"{cday}T11:59:59+00:00",
        "age-Z": f"{cday}T11:59:59Z",
        "age-plus9": f"{cday} 20:59:59+09:00",  # as a string it sorts after the cutoff
        "age-minus5": f"{cday} 06:59:59-05:00",
        "age-naive": f"{cday} 11:59:59",
        "age-naive-frac": f"{cday} 11:59:59.999",
        "age-very-old": "2001-01-01 00:00:00+00:00",
    }
    age_new = {
        "age-exact-cutoff": f"{cday} 12:00:00+00:00",  # not strictly before
        "age-space-1us-new": f"{cday} 12:00:00.000001+00:00",
        "age-T-new": f"{cday}T12:00:01+00:00",
        "age-Z-new": f"{cday}T12:00:01Z",
        "age-plus9-new": f"{cday} 21:00:01+09:00",
        "age-minus5-new": f"{cday} 07:00:01-05:00",  # as a string it sorts before the cutoff
        "age-naive-new": f"{cday} 12:00:01",
        "age-recent": recent,
    }
    age_unparsable = {
        "age-null": None,
        "age-garbage": "yesterday",
        "age-nov31": "2026-11-31 00:00:00",
        "age-int": 1600000000,
    }
    times_rows = [
        _row(k, "exp_probe", expires=v, updated=recent)
        for k, v in {**exp_expired, **exp_live, **exp_unparsable}.items()
    ]
    times_rows += [
        _row(k, "age_probe", expires=None, updated=v)
        for k, v in {**age_old, **age_new, **age_unparsable}.items()
    ]
    # One FILE row per command, and a row whose func_identifier is NULL (display fallback).
    times_rows += [
        _row("t-exp-file", "t_files", expires=past, updated=recent, rtype="FILE",
             value="t-exp-file.bin", data=None),
        _row("t-old-file", "t_files", expires=None, updated=long_ago, rtype="FILE",
             value="t-old-file.bin", data=None),
        _row("t-noident", "plain_fn", expires=future, updated=recent, ident=None),
    ]  # fmt: skip
    _write_db(ws / "times.db", times_rows, wal=True)
    tblobs = ws / "blobs" / "times"
    _file(tblobs / ".gitignore", b"*\n", old)
    _file(tblobs / "t-exp-file.bin", b"\x92\x01\x02" * 100, old)
    _file(tblobs / "t-old-file.bin", b"\x92\x03\x04" * 50, old)

    # ------------------------------------------------------------------ hostile.db
    hb = ws / "blobs" / "hostile"
    victims = {
        ws / "blobs" / "outside.bin": b"victim: ../outside.bin",
        ws / "blobs" / "x.bin": b"victim: sub/../../x.bin",
        outside / "abs_victim.bin": b"victim: absolute path",
        outside / "deep_victim.bin": b"victim: ../../../outside/deep_victim.bin",
        outside / "symlink_victim.bin": b"victim: symlink target",
    }
    for path, data in victims.items():
        _file(path, data, old)
    hb.mkdir(parents=True)
    os.symlink(outside / "symlink_victim.bin", hb / "link.bin")
    evil = {
        "evil-dotdot": "../outside.bin",
        "evil-backslash": "..\\outside.bin",
        "evil-abs": str(outside / "abs_victim.bin"),
        "evil-subdotdot": "sub/../../x.bin",
        "evil-deep": "../../../outside/deep_victim.bin",
        "evil-symlink": "link.bin",
    }
    hostile_rows = [
        _row(k, "evil", expires=past, updated=long_ago, rtype="FILE", value=v, data=None)
        for k, v in evil.items()
    ]
    ext_payload = msgpack.packb(
        {"obj": msgpack.ExtType(42, b"\x00\x01\x02\x03"), "n": 1}, use_bin_type=True
    )
    hostile_rows += [
        _row(MARKUP_KEY, MARKUP_FUNC, expires=future, updated=recent,
             data=msgpack.packb("[red]payload[/red]", use_bin_type=True)),
        _row(ANSI_KEY, ANSI_FUNC, expires=future, updated=recent,
             data=msgpack.packb("\x1b[5mblink\x1b[0m", use_bin_type=True)),
        _row(NEWLINE_KEY, NEWLINE_FUNC, expires=future, updated=recent),
        _row("bad-msgpack", "payloads", expires=future, updated=recent,
             data=b"\xc1\xc1\xff not msgpack"),
        _row("ext-nested", "payloads", expires=future, updated=recent, data=ext_payload),
        _row("ext-top", "payloads", expires=future, updated=recent,
             data=msgpack.packb(msgpack.ExtType(7, b"abcdefgh"), use_bin_type=True)),
        _row("dangling-live", "dangling", expires=future, updated=recent, rtype="FILE",
             value="gone.bin", data=None),
        _row("dangling-exp", "dangling", expires=past, updated=long_ago, rtype="FILE",
             value="gone-too.bin", data=None),
        _row("shared-exp", "shared", expires=past, updated=long_ago, rtype="FILE",
             value="shared.bin", data=None),
        _row("shared-live", "shared", expires=future, updated=recent, rtype="FILE",
             value="shared.bin", data=None),
        _row("file-exp", "blobby", expires=past, updated=long_ago, rtype="FILE",
             value="file-exp.bin", data=None),
        _row("file-live", "blobby", expires=future, updated=recent, rtype="FILE",
             value="file-live.bin", data=None),
    ]  # fmt: skip
    _write_db(ws / "hostile.db", hostile_rows)
    _file(hb / ".gitignore", b"*\n", old)
    _file(hb / "shared.bin", b"shared" * 10, old)
    _file(hb / "file-exp.bin", b"E" * 700, old)
    _file(hb / "file-live.bin", b"L" * 300, old)
    _file(hb / "orphan-old.bin", b"O" * 123, old)
    _file(hb / "orphan-young.bin", b"Y" * 45, young)
    _file(hb / "nested" / "orphan-old2.bin", b"N" * 67, old)
    _file(hb / "file-live.bin.deadbeef.spot_tmp", b"T" * 11, old)
    _file(hb / "x.bin.cafe.spot_tmp", b"t" * 13, young)
    _file(hb / "notes.txt", b"not a blob", old)

    # ------------------------------------------------------------------ legacy.db
    conn = sqlite3.connect(ws / "legacy.db")
    try:
        conn.execute(LEGACY_CREATE)
        conn.executemany(
            "INSERT INTO tasks (cache_key, func_name, input_id, result_type, result_value,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("leg-old", "leg_fn", "i1", "FILE", "leg-old.bin", "2026-10-01 08:00:00"),
                ("leg-old-T", "leg_fn", "i2", "FILE", "leg-old-T.bin", "2026-10-01T08:00:00+09:00"),
                ("leg-new", "leg_fn", "i3", "FILE", "leg-new.bin", recent),
            ],
        )
        conn.commit()
    finally:
        conn.close()
    lb = ws / "legacy" / "blobs"
    _file(lb / ".gitignore", b"*\n", old)
    for name in ("leg-old", "leg-old-T", "leg-new"):
        _file(lb / f"{name}.bin", name.encode() * 20, old)
    _file(lb / "orphan-old.bin", b"o" * 31, old)
    _file(lb / "orphan-young.bin", b"y" * 17, young)

    # ------------------------------------------------------------------ unreadable DBs
    (ws / "corrupt.db").write_bytes(random.Random(1234).randbytes(8192))
    _file(ws / "blobs" / "corrupt" / "orphan-old.bin", b"c" * 99, old)
    _file(ws / "blobs" / "corrupt" / ".gitignore", b"*\n", old)
    conn = sqlite3.connect(ws / "alien.sqlite")
    try:
        conn.execute("CREATE TABLE other (x)")
        conn.execute("INSERT INTO other VALUES (1)")
        conn.commit()
    finally:
        conn.close()

    # ------------------------------------------------------------------ zombies
    gz = ws / "blobs" / "ghost"
    _file(gz / ".gitignore", b"*\n", old)
    _file(gz / "old1.bin", b"g" * 200, old)
    _file(gz / "young.bin", b"g" * 20, young)
    _file(gz / "old1.bin.99.spot_tmp", b"g" * 5, old)
    oz = ws / "oldghost" / "blobs"
    _file(oz / ".gitignore", b"*\n", old)
    _file(oz / "a.bin", b"a" * 10, old)
    _file(oz / "b.bin", b"b" * 10, old)

    # ------------------------------------------------------------------ expectations
    def rel(*paths: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in paths}

    gc_orphans = rel(
        hb / "orphan-old.bin",
        hb / "nested" / "orphan-old2.bin",
        hb / "file-live.bin.deadbeef.spot_tmp",
        lb / "orphan-old.bin",
        gz / "old1.bin",
        gz / "old1.bin.99.spot_tmp",
        oz / "a.bin",
        oz / "b.bin",
        oz / ".gitignore",
    )
    outside_files = {str(p): data for p, data in victims.items()}
    always_kept = rel(
        *victims,
        hb / "link.bin",
        hb / "notes.txt",
        hb / ".gitignore",
        hb / "orphan-young.bin",
        hb / "x.bin.cafe.spot_tmp",
        lb / "orphan-young.bin",
        gz / "young.bin",
        gz / ".gitignore",
        ws / "corrupt.db",
        ws / "alien.sqlite",
        ws / "blobs" / "corrupt" / "orphan-old.bin",
    )
    return {
        "root": root,
        "workspace": ws,
        "now": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "outside": outside_files,
        "corrupt": ["corrupt.db", "alien.sqlite"],
        "unsafe_locations": sorted(evil.values()),
        "hostile_strings": {
            "markup": [MARKUP_KEY, MARKUP_FUNC],
            "escaped": {
                ANSI_KEY: "esc-\\x1b[31mred\\x1b[0m",
                ANSI_FUNC: "ansi\\x1b[2J\\x1b]8;;http://evil\\x07osc",
                NEWLINE_KEY: "nl-line1\\x0aline2",
            },
        },
        "keys": {
            "markup": MARKUP_KEY,
            "ansi": ANSI_KEY,
            "newline": NEWLINE_KEY,
            "bad_msgpack": "bad-msgpack",
            "ext_nested": "ext-nested",
            "ext_top": "ext-top",
            "dangling": "dangling-live",
            "no_ident": "t-noident",
            "unparsable_expiry": "exp-garbage",
        },
        "classification": {
            "expired": set(exp_expired),
            "live": set(exp_live),
            "unparsable_expiry": set(exp_unparsable),
            "old": set(age_old),
            "new": set(age_new),
            "unparsable_updated": set(age_unparsable),
        },
        "gc": {
            "rows": {
                "times": set(exp_expired) | {"t-exp-file"},
                "hostile": set(evil) | {"dangling-exp", "shared-exp", "file-exp"},
                "legacy": set(),  # no expires_at column: nothing can be expired
            },
            "files": rel(tblobs / "t-exp-file.bin", hb / "file-exp.bin") | gc_orphans,
            "dirs": rel(hb / "nested", oz, oz.parent),
            "kept_files": always_kept
            | rel(hb / "shared.bin", hb / "file-live.bin", tblobs / "t-old-file.bin")
            | rel(*(lb / f"{n}.bin" for n in ("leg-old", "leg-old-T", "leg-new"))),
        },
        "prune": {
            "rows": {
                "times": set(age_old) | {"t-old-file"},
                "hostile": set(evil) | {"dangling-exp", "shared-exp", "file-exp"},
                "legacy": {"leg-old", "leg-old-T"},
            },
            "files": rel(
                tblobs / "t-old-file.bin",
                hb / "file-exp.bin",
                lb / "leg-old.bin",
                lb / "leg-old-T.bin",
            ),
            "dirs": set(),
            "kept_files": always_kept
            | gc_orphans
            | rel(hb / "shared.bin", hb / "file-live.bin", tblobs / "t-exp-file.bin")
            | rel(lb / "leg-new.bin"),
        },
        "clear_evil": {
            "func": "evil",
            "rows": {"times": set(), "hostile": set(evil), "legacy": set()},
            "files": set(),
            "dirs": set(),
            "kept_files": always_kept | gc_orphans,
        },
        "clear_blobby": {
            "func": "tests.blobby",  # the qualified name matches too
            "rows": {"times": set(), "hostile": {"file-exp", "file-live"}, "legacy": set()},
            "files": rel(hb / "file-exp.bin", hb / "file-live.bin"),
            "dirs": set(),
            "kept_files": always_kept | gc_orphans | rel(hb / "shared.bin"),
        },
        "clear_all": {
            "func": None,
            "rows": {
                "times": {r["cache_key"] for r in times_rows},
                "hostile": {r["cache_key"] for r in hostile_rows},
                "legacy": {"leg-old", "leg-old-T", "leg-new"},
            },
            "files": rel(
                tblobs / "t-exp-file.bin",
                tblobs / "t-old-file.bin",
                hb / "file-exp.bin",
                hb / "file-live.bin",
                hb / "shared.bin",
                *(lb / f"{n}.bin" for n in ("leg-old", "leg-old-T", "leg-new")),
            ),
            "dirs": set(),
            "kept_files": always_kept | gc_orphans,  # clear never sweeps orphans
        },
        "clear_legacy": {
            "func": "leg_fn",
            "rows": {
                "times": set(),
                "hostile": set(),
                "legacy": {"leg-old", "leg-old-T", "leg-new"},
            },
            "files": rel(*(lb / f"{n}.bin" for n in ("leg-old", "leg-old-T", "leg-new"))),
            "dirs": set(),
            "kept_files": always_kept | gc_orphans,
        },
    }
