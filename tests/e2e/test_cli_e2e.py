"""End-to-end runs of the installed ``beautyspot`` command, in subprocesses.

Two workspaces: a copy of the upstream 2.7.7 fixture, and the hostile one from
:mod:`hostile`.  Every run has the clock injected (``BEAUTYSPOT_NOW``), stdin off a
terminal, and its output checked: no ``Traceback``, no raw ESC byte, every stderr line a
``beautyspot:`` message.  A snapshot of the whole tree (paths, modes, sizes, mtimes,
bytes, symlink targets) proves that read commands and dry runs change nothing, and gives
the exact files each real run deletes.

Read-only commands run a few at a time in threads: they must not interfere, and it keeps
the suite fast.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import pty
import select
import shutil
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile import make_hostile_workspace

from conftest import FIXTURE_NOW, UPSTREAM

BIN = Path(sys.executable).parent / "beautyspot"
NOW = FIXTURE_NOW
NOW_ENV = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
WRITTEN = dt.datetime(2026, 12, 3, 12, 38, 11, tzinfo=dt.timezone.utc)
DB_SUFFIXES = (".db", ".sqlite")

pytestmark = pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} is not installed")


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    argv: tuple[str, ...]
    code: int
    out: bytes
    err: bytes

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8")

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8")

    def json(self) -> dict:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"{self.argv} -> {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _env(ws: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAUTYSPOT_")}
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(var, None)
    env.update(
        BEAUTYSPOT_NOW=NOW_ENV,
        BEAUTYSPOT_WORKSPACE=str(ws),
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONUTF8="1",
    )
    env.update(extra or {})
    return env


def check_output(run: Run) -> None:
    """What every run must satisfy, whatever its exit code."""
    for stream in (run.out, run.err):
        assert b"Traceback" not in stream, str(run)
        assert b"\x1b" not in stream, str(run)
    for line in run.stderr.splitlines():
        assert line.startswith(("beautyspot: error: ", "beautyspot: warning: ")), str(run)
    if run.code != 0 and "--json" not in run.argv:
        assert "beautyspot: error: " in run.stderr, str(run)


def bs(ws: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    argv = (str(BIN), *args)
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=_env(ws, env),
        cwd=ws.parent,
        timeout=timeout,
    )
    run = Run(tuple(args), proc.returncode, proc.stdout, proc.stderr)
    check_output(run)
    return run


def bs_many(ws: Path, commands: dict[str, list[str]]) -> dict[str, Run]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(bs, ws, *argv) for name, argv in commands.items()}
        return {name: f.result() for name, f in futures.items()}


# --------------------------------------------------------------------------- snapshots


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under *root* (not following symlinks) -> what it is and holds."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", st.st_mode, st.st_mtime_ns)
            else:
                data = path.read_bytes()
                found[rel] = (
                    "file",
                    st.st_mode,
                    st.st_size,
                    st.st_mtime_ns,
                    hashlib.sha256(data).hexdigest(),
                )
    return found


def digest(root: Path) -> str:
    return hashlib.sha256(repr(sorted(snapshot(root).items())).encode()).hexdigest()


def _connect(db: Path) -> sqlite3.Connection:
    """Read *db* without leaving anything behind.

    A plain ``mode=ro`` open of a WAL DB with no ``-wal`` file creates ``-wal``/``-shm``
    files it cannot remove; ``immutable`` creates nothing (and there is no log to miss).
    """
    if Path(f"{db}-wal").exists():
        return sqlite3.connect(db)
    return sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)


def db_rows(db: Path) -> set[str]:
    conn = _connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT cache_key FROM tasks")}
    finally:
        conn.close()


def integrity_ok(db: Path) -> bool:
    conn = _connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def columns(db: Path) -> set[str]:
    conn = _connect(db)
    try:
        return {r[1] for r in conn.execute("PRAGMA table_info(tasks)")}
    finally:
        conn.close()


def is_run_artifact(rel: str, ws_rel: str) -> bool:
    """A file a real run may add: the lock file or a log at the workspace top level."""
    parent, _, name = rel.rpartition("/")
    return parent == ws_rel and not name.endswith((*DB_SUFFIXES, ".bin", "-wal", "-shm"))


def totals_and_groups(doc: dict) -> tuple:
    groups = sorted(
        (g["db"], g["function"], g["reason"], g["rows"], g["files"], g["bytes"])
        for g in doc["groups"]
    )
    return doc["totals"], groups


# --------------------------------------------------------------------------- upstream


@pytest.fixture
def up_ws(tmp_path: Path) -> Path:
    dest = tmp_path / ".beautyspot"
    shutil.copytree(UPSTREAM, dest)
    stamp = WRITTEN.timestamp()
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
        if path.is_file():
            os.utime(path, (stamp, stamp))
    return dest


LLM_ASK = "8c4ea8d3eb78f2677b571cad9e7be0d6c8867fccc9edcdd85e5ffb14d2610bff"
LLM_EMBED = "d95e4a4e10acffd0eb25ac1daea1fbacbdba3930ee38772ada63ed3670588504"


def test_upstream_read_commands_change_nothing(up_ws: Path) -> None:
    before = digest(up_ws.parent)
    runs = bs_many(
        up_ws,
        {
            "ls": ["ls"],
            "ls-db-filtered": ["ls", "--db", "llm.db", "--expired", "-q"],
            "show": ["show", LLM_ASK[:12]],
            "show-raw": ["show", "--raw", LLM_EMBED],
            "gc-n-json": ["--json", "gc", "-n"],
            "prune-n": ["prune", "--older-than", "30d", "--dry-run"],
            "clear-n": ["clear", "--dry-run"],
        },
    )
    assert digest(up_ws.parent) == before
    for name, run in runs.items():
        assert run.code == 0, f"{name}: {run}"
    assert runs["show-raw"].out == (up_ws / "blobs" / "llm" / f"{LLM_EMBED}.bin").read_bytes()
    assert len(runs["ls-db-filtered"].stdout.split()) == 15
    assert runs["gc-n-json"].json()["totals"]["rows"] == 15
    assert "would delete 20 tasks and 2 blob files" in runs["prune-n"].stdout
    assert "would delete 66 tasks and 12 blob files" in runs["clear-n"].stdout


def test_upstream_gc_dry_run_equals_real_run_and_is_idempotent(up_ws: Path) -> None:
    root = up_ws.parent
    dry = bs(up_ws, "--json", "gc", "--dry-run")
    before = snapshot(root)
    llm_before = db_rows(up_ws / "llm.db")
    real = bs(up_ws, "--json", "gc")
    assert (dry.code, real.code) == (0, 0)
    assert totals_and_groups(real.json()) == totals_and_groups(dry.json())
    assert real.json()["totals"]["rows"] == 15 and real.json()["totals"]["files"] == 6
    after = snapshot(root)
    gone = set(before) - set(after)
    web = ".beautyspot/blobs/web"
    assert gone == {web, *(p for p in before if p.startswith(web + "/"))}
    added = set(after) - set(before)
    assert all(is_run_artifact(p, ".beautyspot") for p in added), added
    assert len(llm_before - db_rows(up_ws / "llm.db")) == 15
    assert len(db_rows(up_ws / "etl.db")) == 6
    for p in before.keys() & after.keys():
        if before[p][0] == "file" and not p.endswith(DB_SUFFIXES):
            assert after[p] == before[p] or is_run_artifact(p, ".beautyspot"), p
    assert integrity_ok(up_ws / "llm.db") and integrity_ok(up_ws / "etl.db")

    again = bs(up_ws, "--json", "gc")
    assert again.code == 0
    assert again.json()["totals"] == {"rows": 0, "files": 0, "bytes": 0}
    assert {p for p in snapshot(root) if not is_run_artifact(p, ".beautyspot")} == {
        p for p in after if not is_run_artifact(p, ".beautyspot")
    }


def test_upstream_prune_30d(up_ws: Path) -> None:
    dry = bs(up_ws, "--json", "prune", "--older-than", "30d", "--dry-run")
    before = snapshot(up_ws.parent)
    real = bs(up_ws, "--json", "prune", "--older-than", "30d", "--yes")
    assert (dry.code, real.code) == (0, 0)
    assert totals_and_groups(real.json()) == totals_and_groups(dry.json())
    rows_by_func = {g["function"]: g["rows"] for g in real.json()["groups"]}
    assert rows_by_func == {"__main__.ask": 13, "__main__.embed": 2, "__main__.ephemeral": 5}
    after = snapshot(up_ws.parent)
    gone = set(before) - set(after)
    # Rows 12 and 42 of llm.db (rowid % 3 == 0) are the two old embed rows.
    assert gone == {
        ".beautyspot/blobs/llm/8aec6190d5962588b40f4e23a9fdaf37823003cfce069fa47603fc309c759114.bin",
        ".beautyspot/blobs/llm/6e8c898f8f343e4a14f7ea260e5499fed8e4932eccdfa85ad47254482207ed16.bin",
    }
    assert len(db_rows(up_ws / "llm.db")) == 40 and len(db_rows(up_ws / "etl.db")) == 6


def test_concurrent_gc_runs(up_ws: Path) -> None:
    """Both succeed (the lock serializes them), or the loser reports the lock: exit 1."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _: bs(up_ws, "--json", "--timeout", "10", "gc"), range(2)))
    codes = sorted(r.code for r in runs)
    assert codes in ([0, 0], [0, 1]), [str(r) for r in runs]
    if codes == [0, 1]:
        loser = next(r for r in runs if r.code == 1)
        assert "lock" in loser.stderr or "pid" in loser.stderr
    winners = [r.json() for r in runs if r.code == 0]
    assert sum(w["totals"]["rows"] for w in winners) == 15
    assert sum(w["totals"]["files"] for w in winners) == 6
    assert len(db_rows(up_ws / "llm.db")) == 45
    assert not (up_ws / "blobs" / "web").exists()


def test_python_m_version(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "beautyspot", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("beautyspot ") and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- hostile


def hostile_ws(root: Path) -> dict:
    expect = make_hostile_workspace(root, NOW)
    assert expect["now"] == NOW_ENV
    return expect


GOOD_DBS = ("times", "hostile", "legacy")


def all_rows(ws: Path) -> dict[str, set[str]]:
    return {name: db_rows(ws / f"{name}.db") for name in GOOD_DBS}


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every read command and dry run on one hostile workspace, and the digests around them."""
    root = tmp_path_factory.mktemp("hostile-reads")
    expect = hostile_ws(root)
    ws = expect["workspace"]
    keys = expect["keys"]
    hb = ["--db", "hostile.db"]
    commands = {
        "ls": ["ls"],
        "ls-json": ["--json", "ls"],
        "ls-hostile": ["ls", "hostile", "--limit", "100"],
        "ls-hostile-q": ["ls", "hostile", "-q"],
        "ls-times-expired": ["--json", "ls", "times", "--expired", "--limit", "1000"],
        "ls-times-old": ["--json", "ls", "times", "--older-than", "30d", "--limit", "1000"],
        "ls-corrupt": ["ls", "--db", "corrupt.db"],
        "gc-n": ["gc", "--dry-run"],
        "gc-n-json": ["--json", "gc", "--dry-run"],
        "prune-n-json": ["--json", "prune", "--older-than", "30d", "--dry-run"],
        "show-legacy": ["--json", "show", "leg-old-T", "--db", "legacy.db"],
        "show-unparsable": ["--json", "show", keys["unparsable_expiry"], "--db", "times"],
        "show-noident": ["show", keys["no_ident"], "--db", "times"],
        "show-evil-symlink": ["show", "evil-symlink", *hb],
        "show-evil-symlink-raw": ["show", "--raw", "evil-symlink", *hb],
        "show-evil-abs-raw": ["show", "--raw", "evil-abs", *hb],
        **{f"show-{name}": ["show", key, *hb] for name, key in keys.items() if name in (
            "markup", "ansi", "bad_msgpack", "ext_nested", "dangling"
        )},
        "show-markup-json": ["--json", "show", keys["markup"], *hb],
    }  # fmt: skip
    before = snapshot(root)
    runs = bs_many(ws, commands)
    return {"expect": expect, "runs": runs, "before": before, "after": snapshot(root)}


def test_hostile_reads_change_nothing(reads: dict) -> None:
    assert reads["after"] == reads["before"]


def test_hostile_read_exit_codes(reads: dict) -> None:
    runs = reads["runs"]
    # Workspace-wide commands meet the two unreadable DBs: reported, skipped, exit 1.
    wide = {"ls", "ls-json", "gc-n", "gc-n-json", "prune-n-json"}
    for name in wide:
        assert runs[name].code == 1, runs[name]
    for name in ("ls", "gc-n"):
        assert "corrupt" in runs[name].stderr and "alien" in runs[name].stderr
    failing = {"ls-corrupt", "show-evil-symlink-raw", "show-evil-abs-raw"}
    for name in failing:
        assert runs[name].code == 1, runs[name]
    for name in set(runs) - wide - failing:
        assert runs[name].code == 0, runs[name]


def test_hostile_ls_workspace(reads: dict) -> None:
    doc = reads["runs"]["ls-json"].json()
    by_name = {d["name"]: d for d in doc["dbs"]}
    assert set(by_name) == {"times", "hostile", "legacy", "corrupt", "alien"}
    assert by_name["corrupt"]["error"] and by_name["alien"]["error"]
    assert by_name["times"]["tasks"] == 46 and by_name["times"]["expired"] == 10
    assert by_name["hostile"]["tasks"] == 18
    assert by_name["legacy"]["tasks"] == 3
    assert by_name["legacy"]["expired"] == 0
    assert by_name["legacy"]["blob_files"] == 5  # legacy <name>/blobs/ layout
    assert sorted(z["name"] for z in doc["zombies"]) == ["ghost", "oldghost"]


def test_hostile_timestamp_classification(reads: dict) -> None:
    c = reads["expect"]["classification"]
    runs = reads["runs"]
    expired = {t["cache_key"] for t in runs["ls-times-expired"].json()["tasks"]}
    assert expired == c["expired"] | {"t-exp-file"}
    old_tasks = runs["ls-times-old"].json()["tasks"]
    assert {t["cache_key"] for t in old_tasks} == c["old"] | {"t-old-file"}
    # Newest first, by instant, whatever the format (naive values are UTC).
    stamps = [_utc(t["updated_at"]) for t in old_tasks]
    assert stamps == sorted(stamps, reverse=True)
    show = runs["show-unparsable"].json()
    assert show["state"].startswith("unparsable") and show["expires_at"] == "not a date"
    gc_groups = {(g["db"], g["function"]): g for g in runs["gc-n-json"].json()["groups"]}
    assert gc_groups[("times", "tests.exp_probe")]["rows"] == len(c["expired"])
    prune_groups = {(g["db"], g["function"]): g for g in runs["prune-n-json"].json()["groups"]}
    assert prune_groups[("times", "tests.age_probe")]["rows"] == len(c["old"])
    assert prune_groups[("legacy", "leg_fn")]["rows"] == 2


def _utc(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def test_hostile_strings_are_literal(reads: dict) -> None:
    runs = reads["runs"]
    strings = reads["expect"]["hostile_strings"]
    out = runs["ls-hostile"].stdout
    assert strings["markup"][0] in out and strings["markup"][1] in out
    for shown in strings["escaped"].values():
        assert shown in out, shown
    # -q is for pipes: a key is printed as it is or not at all (its escaped text could
    # be another key's), and a newline in a key never splits it across two lines.
    quiet = runs["ls-hostile-q"]
    assert strings["markup"][0] in quiet.stdout
    printed = quiet.stdout.splitlines()
    hidden = [raw for raw in strings["escaped"] if raw.startswith(("esc-", "nl-"))]
    assert hidden and not any(h in printed for h in hidden)
    assert not any(
        shown in quiet.stdout for raw, shown in strings["escaped"].items() if raw in hidden
    )
    warning = [line for line in quiet.stderr.splitlines() if "keys not printed" in line]
    assert len(warning) == 1
    assert len(printed) + int(warning[0].split("warning: ")[1].split()[0]) == 18
    markup = runs["show-markup"].stdout
    assert "[bold]boom[/]" in markup and "[link=http://x]click[/link]" in markup
    assert "[red]payload[/red]" in markup
    doc = runs["show-markup-json"].json()
    assert doc["cache_key"] == "[bold]boom[/]" and doc["func_name"] == "[link=http://x]click[/link]"
    ansi = runs["show-ansi"].stdout
    assert "esc-\\x1b[31mred\\x1b[0m" in ansi and "\\x1b[5mblink\\x1b[0m" in ansi
    assert "ansi\\x1b[2J\\x1b]8;;http://evil\\x07osc" in ansi


def test_hostile_payloads(reads: dict) -> None:
    runs = reads["runs"]
    bad = runs["show-bad_msgpack"]
    assert "c1 c1 ff" in bad.stdout and "warning" in bad.stderr
    assert "<ext code=42, 4 bytes>" in runs["show-ext_nested"].stdout
    dangling = runs["show-dangling"]
    assert "gone.bin" in dangling.stdout + dangling.stderr
    assert "not found" in dangling.stderr
    legacy = runs["show-legacy"].json()
    assert legacy["function"] == "leg_fn"
    assert legacy["blob_bytes"] == len(b"leg-old-T" * 20)
    assert "plain_fn" in runs["show-noident"].stdout  # NULL func_identifier falls back


def test_hostile_show_never_reads_outside(reads: dict) -> None:
    runs = reads["runs"]
    for name in ("show-evil-symlink", "show-evil-symlink-raw", "show-evil-abs-raw"):
        run = runs[name]
        assert b"victim: " not in run.out + run.err, run  # the victims' contents
    assert runs["show-evil-symlink-raw"].out == b""
    assert runs["show-evil-abs-raw"].out == b""


def test_hostile_dry_runs_warn_about_unsafe_locations(reads: dict) -> None:
    err = reads["runs"]["gc-n"].stderr
    for location in reads["expect"]["unsafe_locations"]:
        if location != "link.bin":  # a safe name; its symlink target is refused quietly
            assert repr(location) in err or location in err, location


def _real_run(root: Path, argv: list[str], spec: dict, dry: bool = True) -> Run:
    """Dry run (if *dry*), real run; check totals match and the exact effects of *spec*."""
    expect_ws = root / ".beautyspot"
    outside_before = {p: Path(p).read_bytes() for p in spec["_outside"]}
    corrupt_before = {n: (expect_ws / n).read_bytes() for n in spec["_corrupt"]}
    preview = bs(expect_ws, "--json", *argv, "--dry-run") if dry else None
    before = snapshot(root)
    rows_before = all_rows(expect_ws)
    real = bs(expect_ws, "--json", *argv, "--yes")
    after = snapshot(root)
    rows_after = all_rows(expect_ws)

    # Two unreadable DBs: reported, skipped, exit 1; the good DBs are still maintained.
    assert real.code == 1, str(real)
    assert {e["db"] for e in real.json()["errors"]} == {"corrupt", "alien"}
    if preview is not None:
        assert preview.code == 1, str(preview)
        assert totals_and_groups(real.json()) == totals_and_groups(preview.json())
    assert real.json()["kept"] == []

    assert {db: rows_before[db] - rows_after[db] for db in GOOD_DBS} == spec["rows"]
    gone = set(before) - set(after)
    gone_files = {p for p in gone if before[p][0] != "dir"}
    gone_dirs = {p for p in gone if before[p][0] == "dir"}
    assert gone_files == spec["files"]
    assert gone_dirs == spec["dirs"]
    added = set(after) - set(before)
    assert all(is_run_artifact(p, ".beautyspot") for p in added), added
    for p in spec["kept_files"]:
        assert after.get(p) == before[p], p
    for p in before.keys() & after.keys():  # nothing else was rewritten
        if before[p][0] == "file" and not p.endswith(DB_SUFFIXES):
            if is_run_artifact(p, ".beautyspot"):
                continue
            assert after[p] == before[p], p
    for path, data in outside_before.items():
        assert Path(path).read_bytes() == data
    for name, data in corrupt_before.items():
        assert (expect_ws / name).read_bytes() == data
    for db in GOOD_DBS:
        assert integrity_ok(expect_ws / f"{db}.db"), db
    # The alien DB got no tasks table (never created from a gc/maintenance path).
    alien = _connect(expect_ws / "alien.sqlite")
    try:
        assert [r[0] for r in alien.execute("SELECT name FROM sqlite_master")] == ["other"]
    finally:
        alien.close()
    return real


def _spec(expect: dict, name: str) -> dict:
    return {**expect[name], "_outside": expect["outside"], "_corrupt": expect["corrupt"]}


def test_hostile_gc(tmp_path: Path) -> None:
    expect = hostile_ws(tmp_path)
    ws = expect["workspace"]
    legacy_columns = columns(ws / "legacy.db")
    real = _real_run(tmp_path, ["gc"], _spec(expect, "gc"))
    assert real.json()["totals"]["rows"] == 19
    assert columns(ws / "legacy.db") == legacy_columns  # gc runs no migration
    before = snapshot(tmp_path)
    again = bs(ws, "--json", "gc")
    assert again.code == 1  # the unreadable DBs are still there
    assert again.json()["totals"] == {"rows": 0, "files": 0, "bytes": 0}
    after = snapshot(tmp_path)
    assert {p for p in after if not is_run_artifact(p, ".beautyspot")} == {
        p for p in before if not is_run_artifact(p, ".beautyspot")
    }


def test_hostile_prune(tmp_path: Path) -> None:
    expect = hostile_ws(tmp_path)
    _real_run(tmp_path, ["prune", "--older-than", "30d"], _spec(expect, "prune"))


def test_hostile_clear(tmp_path: Path) -> None:
    """``clear --func`` three times, then ``clear``: each with its own exact effects."""
    expect = hostile_ws(tmp_path)
    done_rows: dict[str, set[str]] = {db: set() for db in GOOD_DBS}
    done_files: set[str] = set()
    for which in ("clear_evil", "clear_blobby", "clear_legacy"):
        spec = _spec(expect, which)
        _real_run(tmp_path, ["clear", "--func", spec["func"]], spec, dry=which == "clear_evil")
        for db in GOOD_DBS:
            done_rows[db] |= spec["rows"][db]
        done_files |= spec["files"]
    spec = _spec(expect, "clear_all")
    spec["rows"] = {db: spec["rows"][db] - done_rows[db] for db in GOOD_DBS}
    spec["files"] = spec["files"] - done_files
    _real_run(tmp_path, ["clear"], spec)
    assert all_rows(expect["workspace"]) == {db: set() for db in GOOD_DBS}


def test_hostile_gc_single_db(tmp_path: Path) -> None:
    """--db: that DB only (exit 0 despite the corrupt one), no zombie sweep."""
    expect = hostile_ws(tmp_path)
    ws = expect["workspace"]
    before = snapshot(tmp_path)
    times_rows = db_rows(ws / "times.db")
    run = bs(ws, "--json", "gc", "--db", "hostile.db")
    assert run.code == 0, run
    after = snapshot(tmp_path)
    gone = {p for p in set(before) - set(after) if before[p][0] != "dir"}
    assert gone == {p for p in expect["gc"]["files"] if p.startswith(".beautyspot/blobs/hostile/")}
    assert db_rows(ws / "times.db") == times_rows
    assert expect["gc"]["rows"]["hostile"].isdisjoint(db_rows(ws / "hostile.db"))
    assert "times" not in {g["db"] for g in run.json()["groups"]}


def _pty_run(ws: Path, *args: str) -> bytes:
    """Run on a pseudo-terminal (Rich output path); return everything written."""
    master, slave = pty.openpty()
    # A wide terminal, so Rich does not wrap the cells the test looks for.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
    env = _env(ws, {"TERM": "xterm-256color"})
    proc = subprocess.Popen(
        [str(BIN), *args], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ws.parent
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks)
    return b"".join(chunks)


def test_hostile_strings_on_a_terminal(tmp_path: Path) -> None:
    """On a TTY (Rich tables), markup is shown literally and no hostile sequence escapes."""
    expect = hostile_ws(tmp_path)
    ws = expect["workspace"]
    before = digest(tmp_path)
    outputs = [
        _pty_run(ws, "ls", "hostile", "--limit", "100"),
        _pty_run(ws, "show", "[bold]boom[/]", "--db", "hostile.db"),
    ]
    assert digest(tmp_path) == before
    for out in outputs:
        assert b"Traceback" not in out
        for raw in (b"\x1b[31m", b"\x1b[2J", b"\x1b]8;;", b"\x1b[5m", b"\x07"):
            assert raw not in out, (raw, out)
    # Rich may wrap a narrow table cell, so look for the pieces.
    text = b"".join(outputs).decode("utf-8", "replace")
    assert "[bold]boom[/]" in text
    assert "[red]payload[/red]" in text
    assert "\\x1b[31mred" in text  # the ANSI key, in the ls table
