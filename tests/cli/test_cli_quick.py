"""Quick in-process CLI tests on the upstream 2.7.7 fixture.

``typer.testing.CliRunner`` drives the app for the happy paths (and ``show --raw`` bytes);
error paths go through :func:`beautyspot.cli.app.run`, the one place that maps errors to an
exit code and a single ``beautyspot: error:`` line, with ``capsys``.

The clock is always injected (``BEAUTYSPOT_NOW``): the fixture's live rows expire on
2027-01-02.  Expected numbers come from the fixture's README and from reading the fixture
with plain ``sqlite3``, never from the code under test.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import random
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from beautyspot import __version__
from beautyspot.cli.app import app, run
from beautyspot.errors import UsageError
from conftest import FIXTURE_NOW

NOW_ENV = FIXTURE_NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
# When upstream wrote the fixture; blob mtimes are pinned here so that "older than the
# grace period" does not depend on when the fixture was copied.
WRITTEN = dt.datetime(2026, 12, 3, 12, 38, 11, tzinfo=dt.timezone.utc)
CUTOFF_30D = FIXTURE_NOW - dt.timedelta(days=30)
HEX64 = set("0123456789abcdef")

runner = CliRunner()


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def ws(upstream_ws: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The upstream workspace copy, with pinned mtimes, the clock and workspace in the env."""
    stamp = WRITTEN.timestamp()
    for path in upstream_ws.rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))
    for var in ("BEAUTYSPOT_DB", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BEAUTYSPOT_NOW", NOW_ENV)
    monkeypatch.setenv("BEAUTYSPOT_WORKSPACE", str(upstream_ws))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    return upstream_ws


def invoke(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stdout
    return result


def invoke_json(*args: str) -> dict:
    return json.loads(invoke("--json", *args).stdout)


def call(
    capsys: pytest.CaptureFixture, *args: str, error_line: bool = True
) -> tuple[int, str, str]:
    """``run(argv)`` -> (exit code, stdout, stderr); checks the error-line contract."""
    code = run(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code != 0 and error_line:
        errors = [line for line in err.splitlines() if line.startswith("beautyspot: error:")]
        assert errors, f"exit {code} without an error line: {err!r}"
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("beautyspot: error: ")
    return lines[0]


def rows(db: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT cache_key, func_name, result_value, result_data, expires_at, updated_at"
                " FROM tasks"
            )
        }
    finally:
        conn.close()


def instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        h.update(f"{path.relative_to(root)}|{st.st_mode}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        if path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def blob_names(ws: Path, name: str) -> set[str]:
    d = ws / "blobs" / name
    return {p.name for p in d.glob("*.bin")} if d.is_dir() else set()


# The fixture as plain sqlite3 sees it (the oracle for every number below).


def expired_keys(ws: Path) -> set[str]:
    return {k for k, r in rows(ws / "llm.db").items() if r[3] and instant(r[3]) < FIXTURE_NOW} | {
        k for k, r in rows(ws / "etl.db").items() if r[3] and instant(r[3]) < FIXTURE_NOW
    }


def old_keys(ws: Path) -> dict[str, str]:
    """Keys of llm rows updated before the 30-day cutoff -> their result_value."""
    return {k: r[1] for k, r in rows(ws / "llm.db").items() if instant(r[4]) < CUTOFF_30D}


# --------------------------------------------------------------------------- ls


def test_ls_workspace_table(ws: Path) -> None:
    out = invoke("ls").stdout
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    assert lines["llm"][1] == "60"
    assert lines["etl"][1] == "6"
    header = out.splitlines()[1].split()
    assert header[:2] == ["db", "tasks"]
    # blobs and expired columns (sizes are "12.3 kB": two tokens each before them)
    assert lines["llm"][4] == "6" and lines["llm"][7] == "15"
    assert lines["etl"][4] == "6" and lines["etl"][7] == "0"
    assert "zombie" in out and str(ws / "blobs" / "web") in out


def test_ls_workspace_json(ws: Path) -> None:
    doc = invoke_json("ls")
    by_name = {d["name"]: d for d in doc["dbs"]}
    assert set(by_name) == {"llm", "etl"}
    assert by_name["llm"]["tasks"] == 60
    assert by_name["llm"]["expired"] == 15 == len(expired_keys(ws))
    assert by_name["llm"]["blob_files"] == 6
    assert by_name["llm"]["blob_bytes"] == sum(
        p.stat().st_size for p in (ws / "blobs" / "llm").glob("*.bin")
    )
    assert by_name["llm"]["db_bytes"] == (ws / "llm.db").stat().st_size
    assert by_name["etl"]["tasks"] == 6 and by_name["etl"]["expired"] == 0
    assert by_name["etl"]["blob_files"] == 6
    assert by_name["llm"]["oldest"].startswith("2026-10-24 12:38:12")
    assert by_name["llm"]["newest"].startswith("2026-12-03 12:38:11")
    assert [z["name"] for z in doc["zombies"]] == ["web"]
    assert doc["now"].startswith("2026-12-10T12:00:00")


def test_ls_db_limit(ws: Path) -> None:
    out = invoke("ls", "llm", "--limit", "5").stdout.splitlines()
    assert out[0].startswith("llm: 5 task")
    body = [line for line in out[2:] if line.strip()]
    assert len(body) == 5
    doc = invoke_json("ls", "llm", "--limit", "5")
    assert len(doc["tasks"]) == 5


def test_ls_db_newest_first_across_formats(ws: Path) -> None:
    """Ordering is by instant: the 20 rows moved back 40 days (T form) come last."""
    doc = invoke_json("ls", "llm", "--limit", "1000")
    keys = [t["cache_key"] for t in doc["tasks"]]
    assert len(keys) == 60
    assert set(keys[-20:]) == set(old_keys(ws))
    stamps = [instant(t["updated_at"]) for t in doc["tasks"]]
    assert stamps == sorted(stamps, reverse=True)


def test_ls_quiet_func(ws: Path) -> None:
    out = invoke("ls", "--db", "llm.db", "-q", "--func", "ask").stdout
    keys = out.splitlines()
    expected = {k for k, r in rows(ws / "llm.db").items() if r[0] == "ask"}
    assert len(keys) == 39 and set(keys) == expected
    assert all(len(k) == 64 and set(k) <= HEX64 for k in keys)
    qualified = invoke("ls", "--db", "llm.db", "-q", "--func", "__main__.ask").stdout
    assert set(qualified.splitlines()) == expected


def test_ls_db_filters(ws: Path) -> None:
    expired = invoke_json("ls", "llm", "--expired", "--limit", "1000")["tasks"]
    assert {t["cache_key"] for t in expired} == expired_keys(ws)
    old = invoke_json("ls", "llm", "--older-than", "30d", "--limit", "1000")["tasks"]
    assert {t["cache_key"] for t in old} == set(old_keys(ws))


def test_ls_filters_without_db_are_usage_errors(ws: Path, capsys) -> None:
    code, _, err = call(capsys, "ls", "--func", "ask")
    assert code == 2
    one_error_line(err)


# --------------------------------------------------------------------------- show


ASK_KEY = "8c4ea8d3eb78f2677b571cad9e7be0d6c8867fccc9edcdd85e5ffb14d2610bff"
EMBED_KEY = "d95e4a4e10acffd0eb25ac1daea1fbacbdba3930ee38772ada63ed3670588504"


@pytest.mark.parametrize("key", [ASK_KEY, ASK_KEY[:6]], ids=["exact", "prefix"])
def test_show_exact_and_prefix(ws: Path, key: str) -> None:
    out = invoke("show", key).stdout
    assert ASK_KEY in out
    assert "__main__.ask" in out and "v1" in out
    assert "question number 2?" in out
    assert "live" in out


def test_show_json_file_row(ws: Path) -> None:
    doc = invoke_json("show", EMBED_KEY)
    blob = ws / "blobs" / "llm" / f"{EMBED_KEY}.bin"
    assert doc["cache_key"] == EMBED_KEY
    assert doc["result_type"] == "FILE"
    assert Path(doc["blob_path"]).resolve() == blob.resolve()
    assert doc["blob_bytes"] == blob.stat().st_size
    assert doc["state"] == "live"
    assert doc["decode_error"] is None


def test_show_expired_state(ws: Path) -> None:
    key = sorted(expired_keys(ws))[0]
    assert invoke_json("show", key)["state"] == "expired"


def test_show_ambiguous_prefix(ws: Path, capsys) -> None:
    code, out, err = call(capsys, "show", "0")
    assert code == 2
    line = one_error_line(err)
    assert "8" in line  # "'0' matches 8 tasks"
    candidates = [ln.split()[0] for ln in out.splitlines() if ln.strip()]
    all_keys = set(rows(ws / "llm.db")) | set(rows(ws / "etl.db"))
    assert set(candidates) == {k for k in all_keys if k.startswith("0")}
    assert len(candidates) == 8


def test_show_ambiguous_json(ws: Path, capsys) -> None:
    # --json: the candidates are the JSON document (stdout stays one document).
    code, out, _ = call(capsys, "--json", "show", "0", error_line=False)
    assert code == 2
    doc = json.loads(out)
    assert doc["error"] == "ambiguous" and len(doc["candidates"]) == 8


@pytest.mark.parametrize("key", ["zzz", "0" * 64])
def test_show_missing(ws: Path, capsys, key: str) -> None:
    code, out, err = call(capsys, "show", key)
    assert code == 1
    assert out == ""
    one_error_line(err)


def test_show_empty_key(ws: Path, capsys) -> None:
    code, _, err = call(capsys, "show", "")
    assert code == 2
    one_error_line(err)


def test_show_raw_inline(ws: Path) -> None:
    result = invoke("show", "--raw", ASK_KEY)
    assert result.stdout_bytes == rows(ws / "llm.db")[ASK_KEY][2]


def test_show_raw_file(ws: Path) -> None:
    result = invoke("show", "--raw", EMBED_KEY[:10])
    assert result.stdout_bytes == (ws / "blobs" / "llm" / f"{EMBED_KEY}.bin").read_bytes()


# --------------------------------------------------------------------------- gc


def test_gc_dry_run_json(ws: Path) -> None:
    before = digest(ws)
    doc = invoke_json("gc", "--dry-run")
    assert digest(ws) == before
    llm = rows(ws / "llm.db")
    inline = sum(len(llm[k][2]) for k in expired_keys(ws))
    web = sum(p.stat().st_size for p in (ws / "blobs" / "web").glob("*.bin"))
    assert doc["dry_run"] is True
    assert doc["totals"] == {"rows": 15, "files": 6, "bytes": inline + web}
    groups = {(g["db"], g["reason"]): g for g in doc["groups"]}
    assert groups[("llm", "expired")]["function"] == "__main__.ephemeral"
    assert groups[("llm", "expired")]["rows"] == 15
    assert groups[("web", "zombie dir")]["files"] == 6
    assert groups[("web", "zombie dir")]["bytes"] == web
    assert doc["errors"] == []


def test_gc_table_totals_line(ws: Path) -> None:
    out = invoke("gc", "-n").stdout
    assert "would delete 15 tasks and 6 blob files" in out


def test_gc_real_matches_dry_run(ws: Path) -> None:
    dry = invoke_json("gc", "--dry-run")
    expired = expired_keys(ws)
    llm_blobs, etl_blobs = blob_names(ws, "llm"), blob_names(ws, "etl")
    real = invoke_json("gc")
    assert real["dry_run"] is False
    assert real["totals"] == dry["totals"]
    left = rows(ws / "llm.db")
    assert len(left) == 45 and not expired & set(left)
    assert len(rows(ws / "etl.db")) == 6
    assert not (ws / "blobs" / "web").exists()
    assert blob_names(ws, "llm") == llm_blobs and blob_names(ws, "etl") == etl_blobs
    again = invoke_json("gc")
    assert again["totals"] == {"rows": 0, "files": 0, "bytes": 0}


def test_gc_grace_keeps_young_zombie_files(ws: Path) -> None:
    young = (FIXTURE_NOW - dt.timedelta(minutes=5)).timestamp()
    for p in (ws / "blobs" / "web").glob("*.bin"):
        os.utime(p, (young, young))
    assert invoke_json("gc", "-n")["totals"]["files"] == 0
    assert invoke_json("gc", "-n", "--grace", "1m")["totals"]["files"] == 6


# --------------------------------------------------------------------------- prune / clear


def test_prune_dry_run_json(ws: Path) -> None:
    before = digest(ws)
    doc = invoke_json("prune", "--older-than", "30d", "--dry-run")
    assert digest(ws) == before
    groups = {g["function"]: g for g in doc["groups"]}
    assert {f: g["rows"] for f, g in groups.items()} == {
        "__main__.ask": 13,
        "__main__.embed": 2,
        "__main__.ephemeral": 5,
    }
    assert groups["__main__.embed"]["files"] == 2
    assert groups["__main__.ask"]["files"] == groups["__main__.ephemeral"]["files"] == 0
    old = old_keys(ws)
    llm = rows(ws / "llm.db")
    blob_bytes = sum((ws / "blobs" / "llm" / llm[k][1]).stat().st_size for k in old if llm[k][1])
    inline = sum(len(llm[k][2]) for k in old if llm[k][2])
    assert doc["totals"] == {"rows": 20, "files": 2, "bytes": blob_bytes + inline}
    assert instant(doc["cutoff"]) == CUTOFF_30D


def test_prune_real_matches_dry_run(ws: Path) -> None:
    dry = invoke_json("prune", "--older-than", "30d", "--dry-run")
    old = old_keys(ws)
    gone_blobs = {v for v in old.values() if v}
    real = invoke_json("prune", "--older-than", "30d", "--yes")
    assert real["totals"] == dry["totals"]
    assert [(g["function"], g["rows"], g["files"]) for g in real["groups"]] == [
        (g["function"], g["rows"], g["files"]) for g in dry["groups"]
    ]
    left = rows(ws / "llm.db")
    assert len(left) == 40 and not set(old) & set(left)
    assert len(gone_blobs) == 2 and not gone_blobs & blob_names(ws, "llm")
    assert len(blob_names(ws, "llm")) == 4 and len(blob_names(ws, "etl")) == 6
    assert (ws / "blobs" / "web").is_dir()  # prune never sweeps zombies


def test_prune_func_filter(ws: Path) -> None:
    doc = invoke_json("prune", "--older-than", "30d", "--func", "ask", "-n")
    assert doc["totals"]["rows"] == 13 and doc["totals"]["files"] == 0


def test_prune_iso_date_cutoff(ws: Path) -> None:
    doc = invoke_json("prune", "--older-than", "2026-11-01", "-n")
    assert doc["totals"]["rows"] == 20
    doc = invoke_json("prune", "--older-than", "2026-10-24T12:38:12+00:00", "-n")
    assert doc["totals"]["rows"] == 0  # the 40-day-old rows are 0.758482 s later


def test_clear_real_matches_dry_run(ws: Path) -> None:
    dry = invoke_json("clear", "--dry-run")
    assert dry["totals"]["rows"] == 66 and dry["totals"]["files"] == 12
    real = invoke_json("clear", "--yes")
    assert real["totals"] == dry["totals"]
    assert rows(ws / "llm.db") == {} and rows(ws / "etl.db") == {}
    assert blob_names(ws, "llm") == set() and blob_names(ws, "etl") == set()
    assert (ws / "llm.db").is_file() and (ws / "etl.db").is_file()  # never deletes a DB


def test_clear_func(ws: Path) -> None:
    real = invoke_json("clear", "--func", "embed", "-y")
    assert real["totals"]["rows"] == 6 and real["totals"]["files"] == 6
    assert blob_names(ws, "llm") == set()
    assert len(rows(ws / "llm.db")) == 54


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "--older-than", "30d"],
        ["prune", "--older-than", "30d", "--func", "ask"],
        ["clear"],
        ["clear", "--func", "embed"],
    ],
)
def test_destructive_without_yes_off_a_tty(ws: Path, capsys, argv: list[str]) -> None:
    before = digest(ws)
    code, out, err = call(capsys, *argv)
    assert code == 2
    one_error_line(err)
    assert "--yes" in err
    assert digest(ws) == before


def test_destructive_without_yes_cli_runner(ws: Path) -> None:
    before = digest(ws)
    result = runner.invoke(app, ["clear"], input="y\n")
    # Through the bare app the error is raised, not mapped (run() maps it to exit 2).
    assert isinstance(result.exception, UsageError)
    assert result.exception.exit_code == 2
    assert digest(ws) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "--older-than", "30x"],
        ["prune", "--older-than", "0d"],
        ["prune", "--older-than", "-1d"],
        ["prune", "--older-than", "2027-01-01"],
        ["prune", "--older-than", "2026-12-10T13:00:00Z"],
        ["prune", "--older-than", ""],
        ["prune", "--older-than", "30"],
        ["prune"],
        ["gc", "--grace", "5x"],
        ["gc", "--grace", "-1h"],
        ["ls", "llm", "--older-than", "soon"],
        ["ls", "llm", "--limit", "0"],
        ["nosuchcommand"],
    ],
)
def test_bad_arguments_are_usage_errors(ws: Path, capsys, argv: list[str]) -> None:
    before = digest(ws)
    args = [*argv, "--dry-run"] if argv[0] == "prune" else argv  # never delete by accident
    code, _, err = call(capsys, *args)
    assert code == 2
    one_error_line(err)
    assert digest(ws) == before


def test_bad_durations_even_with_yes(ws: Path, capsys) -> None:
    before = digest(ws)
    for bad in ("30x", "0d", "-1d", "2027-01-01"):
        code, _, err = call(capsys, "prune", "--older-than", bad, "--yes")
        assert code == 2, bad
        one_error_line(err)
    assert digest(ws) == before


# --------------------------------------------------------------------------- misc


def test_version(capsys) -> None:
    code, out, _ = call(capsys, "--version")
    assert code == 0 and out.strip() == f"beautyspot {__version__}"


def test_missing_workspace_is_usage_error_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BEAUTYSPOT_NOW", NOW_ENV)
    missing = tmp_path / "nope" / ".beautyspot"
    for argv in (["ls"], ["gc"], ["gc", "-n"], ["show", "abc"]):
        code, _, err = call(capsys, "-w", str(missing), *argv)
        assert code == 2, argv
        one_error_line(err)
    assert not (tmp_path / "nope").exists()


def test_missing_db_is_usage_error_and_creates_nothing(ws: Path, capsys) -> None:
    before = digest(ws)
    for argv in (["ls", "nosuch"], ["ls", "--db", "nosuch.db"], ["gc", "--db", "nosuch.db"]):
        code, _, err = call(capsys, *argv)
        assert code == 2, argv
        one_error_line(err)
    assert digest(ws) == before


def test_lock_held_reports_holder(ws: Path, capsys) -> None:
    lock = ws / ".beautyspot.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"424242\n", 0)
        before = rows(ws / "llm.db")
        code, _, err = call(capsys, "--timeout", "0.3", "gc")
        assert code == 1
        assert "424242" in one_error_line(err)
        assert rows(ws / "llm.db") == before
    finally:
        os.close(fd)


def _add_corrupt_db(ws: Path) -> bytes:
    data = random.Random(7).randbytes(4096)
    (ws / "broken.db").write_bytes(data)
    return data


def test_corrupt_db_beside_good_ones(ws: Path, capsys) -> None:
    data = _add_corrupt_db(ws)
    code, out, err = call(capsys, "--json", "ls")
    assert code == 1
    by_name = {d["name"]: d for d in json.loads(out)["dbs"]}
    assert by_name["broken"]["error"] and by_name["llm"]["tasks"] == 60
    code, out, err = call(capsys, "--json", "gc")
    assert code == 1
    assert json.loads(out)["totals"]["rows"] == 15
    assert "broken" in err
    assert (ws / "broken.db").read_bytes() == data
    assert len(rows(ws / "llm.db")) == 45


def test_show_with_unreadable_db_exits_1(ws: Path, capsys) -> None:
    _add_corrupt_db(ws)
    code, out, err = call(capsys, "show", ASK_KEY)
    assert "broken" in err  # reported...
    assert ASK_KEY in out  # ...the task still shown...
    assert code == 1  # ...and the command fails like ls and gc do


def test_run_does_not_leak_workspace_between_calls(ws, tmp_path, capsys, monkeypatch):
    assert call(capsys, "-w", str(ws), "ls")[0] == 0
    monkeypatch.delenv("BEAUTYSPOT_WORKSPACE")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./.beautyspot here
    code, out, _ = call(capsys, "ls")
    assert code == 2, f"listed {ws} again:\n{out}"


def _legacy_workspace(root: Path) -> Path:
    """A workspace whose one DB uses the legacy ``<name>/blobs/`` layout."""
    ws = root / ".beautyspot"
    (ws / "old" / "blobs").mkdir(parents=True)
    (ws / "old" / "blobs" / "k.bin").write_bytes(b"\xa1x")
    conn = sqlite3.connect(ws / "old.db")
    conn.execute(
        "CREATE TABLE tasks (cache_key TEXT PRIMARY KEY, func_name TEXT, input_id TEXT,"
        " result_type TEXT, result_value TEXT, updated_at TIMESTAMP)"
    )
    conn.execute("INSERT INTO tasks VALUES ('k', 'f', 'i', 'FILE', 'k.bin', '2026-12-01 00:00:00')")
    conn.commit()
    conn.close()
    return ws


def test_legacy_layout_db_by_file_name(tmp_path, capsys, monkeypatch) -> None:
    ws = _legacy_workspace(tmp_path)
    monkeypatch.setenv("BEAUTYSPOT_NOW", NOW_ENV)
    code, out, _ = call(capsys, "-w", str(ws), "--json", "ls", "old.db")
    assert code == 0
    assert [t["cache_key"] for t in json.loads(out)["tasks"]] == ["k"]


@pytest.mark.parametrize("argv", [["ls", "old"], ["--db", "old", "ls"], ["gc", "--db", "old"]])
def test_legacy_layout_db_by_name(tmp_path, capsys, monkeypatch, argv) -> None:
    ws = _legacy_workspace(tmp_path)
    monkeypatch.setenv("BEAUTYSPOT_NOW", NOW_ENV)
    monkeypatch.chdir(tmp_path)
    code, _, err = call(capsys, "-w", str(ws), "--json", *argv)
    assert code == 0, err


@pytest.mark.parametrize("pattern", ["%", "_", "*", "0%", "[0-9]"])
def test_show_wildcards_are_literal(ws: Path, capsys, pattern: str) -> None:
    code, out, err = call(capsys, "show", pattern)
    assert code == 1 and out == ""
    one_error_line(err)


def test_bad_injected_clock_is_usage_error(ws: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BEAUTYSPOT_NOW", "next tuesday")
    code, _, err = call(capsys, "gc", "-n")
    assert code == 2
    one_error_line(err)


def test_clear_func_matching_nothing(ws: Path) -> None:
    before = {db: rows(ws / db) for db in ("llm.db", "etl.db")}
    doc = invoke_json("clear", "--func", "no_such_function", "--yes")
    assert doc["totals"] == {"rows": 0, "files": 0, "bytes": 0}
    assert {db: rows(ws / db) for db in ("llm.db", "etl.db")} == before


@pytest.mark.parametrize("argv", [["--json", "ls", "llm", "-q"], ["ls", "llm", "-q", "--json"]])
def test_ls_quiet_with_json_prints_one_document_or_refuses(ws: Path, capsys, argv) -> None:
    code, out, err = call(capsys, *argv)
    if code == 2:  # refusing the combination is fine too
        one_error_line(err)
        return
    assert code == 0
    assert out.strip(), "--json printed nothing"
    assert json.loads(out)["keys"]
