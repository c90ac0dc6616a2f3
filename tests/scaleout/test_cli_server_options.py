"""How the CLI takes a server DB: --db URL / $BEAUTYSPOT_DB, --blobs, what it refuses.

The maintenance cases themselves, on both backends, are in test_cli_backends.py.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pg_server import pg_server_fixture, pg_url_fixture  # noqa: F401 (fixtures)

from beautyspot.postgres import PostgresTaskDB
from reliability import relkit

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 10, tzinfo=UTC)


@pytest.fixture
def filled(pg_url: str) -> str:
    db = PostgresTaskDB(pg_url, clock=lambda: NOW - dt.timedelta(days=3))
    try:
        for i in range(6):
            expires = NOW - dt.timedelta(hours=1) if i < 2 else None
            db.save(f"key{i}", "f", "m.f", "in", None, "DIRECT_BLOB", None, None, b"\x01", expires)
    finally:
        db.shutdown()
    return pg_url


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, rest = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def test_the_password_of_a_url_is_never_printed(filled: str) -> None:
    url = _with_password(filled, "s3cr%2Ft")  # trust auth: libpq sends it, the server ignores it
    for args in (
        ["--db", url, "ls", "--json"],
        ["--db", url, "show", "key0"],
        ["--db", url, "gc", "--dry-run", "--json"],
        ["--db", url.replace("/t", "/missing_db_"), "ls"],  # the error names the DB
    ):
        r = relkit.run(args)
        assert not r.traceback, r.describe()
        assert "s3cr" not in r.stdout + r.stderr, r.describe()
    r = relkit.run(["--db", url, "ls", "--json"])
    assert r.returncode == 0 and len(json.loads(r.stdout)["tasks"]) == 6


def test_beautyspot_db_in_the_environment_is_the_default_db(filled: str) -> None:
    env = relkit.cli_env(BEAUTYSPOT_DB=filled)
    r = relkit.run(["gc", "--json"], env=env)
    assert r.returncode == 0, r.describe()
    assert json.loads(r.stdout)["totals"]["rows"] == 2
    listed = relkit.run(["ls", "-q"], env=env)
    assert listed.stdout.split() == [f"key{i}" for i in range(5, 1, -1)]
    # --db on the command line wins over the environment.
    other = relkit.run(["--db", "nope.db", "ls"], env=env)
    assert other.returncode == 2 and "nope.db does not exist" in other.stderr


def test_what_a_server_db_refuses(filled: str, tmp_path: Path) -> None:
    cases = [
        (["--db", filled, "verify"], "verify is not supported on a PostgreSQL task DB"),
        (["--db", filled, "gc", "--max-entries", "1"], "--max-size/--max-entries"),
        (["-w", tmp_path, "--blobs", "s3://b/p", "ls"], "--blobs goes with a postgresql:// --db"),
    ]
    for args, message in cases:
        r = relkit.run(args)
        assert r.returncode == 2, r.describe()
        assert message in r.stderr and not r.traceback, r.describe()
    assert PostgresTaskDB.count_tasks(filled) == 6  # nothing deleted


def test_a_database_without_the_table_is_not_turned_into_a_cache(pg_url: str) -> None:
    for args in (["ls"], ["gc"], ["show", "k"], ["prune", "--older-than", "1d", "--yes"]):
        r = relkit.run(["--db", pg_url, *args])
        assert r.returncode == 1, r.describe()
        assert "no 'tasks' table" in r.stderr and not r.traceback
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('tasks')").fetchone()[0] is None


def test_show_reads_the_same_directly_and_through_the_app(filled: str) -> None:
    direct = relkit.run(["show", "key3", "--db", filled, "--json"])
    app = relkit.run(
        ["show", "key3", "--db", filled, "--json"], env=relkit.cli_env(BEAUTYSPOT_NO_DIRECT="1")
    )
    assert direct.returncode == app.returncode == 0, direct.describe()
    assert direct.stdout == app.stdout
    assert json.loads(direct.stdout)["state"] == "no expiry"


# --------------------------------------------------------------------------- review findings


def test_an_explicit_workspace_beats_beautyspot_db(filled: str, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    past = "2026-01-01 00:00:00+00:00"
    relkit.create_db(ws / "t.db", [relkit.inline_row("old", "m.f", b"\x01", past, past)])
    env = relkit.cli_env(BEAUTYSPOT_DB=filled, BEAUTYSPOT_BLOBS="s3://nowhere/x")
    r = relkit.run(["-w", ws, "gc", "--json"], env=env)
    assert r.returncode == 0, r.describe()
    assert json.loads(r.stdout)["totals"]["rows"] == 1  # the workspace's row, not the server's
    assert relkit.db_rows(ws / "t.db") == {}
    assert PostgresTaskDB.count_tasks(filled) == 6
    # An empty --db (an unset shell variable) is an error, never "no --db".
    empty = relkit.run(["-w", ws, "--db", "", "gc"], env=env)
    assert empty.returncode == 2 and not empty.traceback, empty.describe()


def test_a_query_string_password_is_never_printed(filled: str) -> None:
    url = f"{filled}&password=hunter2"
    for args in (["--db", url, "ls", "--json"], ["--db", url, "gc", "--dry-run", "--json"]):
        r = relkit.run(args)
        assert r.returncode == 0, r.describe()
        assert "hunter2" not in r.stdout + r.stderr


def test_bad_server_arguments_are_one_line_errors(filled: str, tmp_path: Path) -> None:
    cases = [
        (["--db", filled, "ls", "--func", "\udcff"], 0, None),  # matches nothing
        (["--db", "postgresql://u:p@[::1/x", "ls"], 2, "invalid PostgreSQL URL"),
        (["--db", filled, "--blobs", "s3://", "gc"], 2, "names no bucket"),
        (["--db", filled, "--blobs", tmp_path / "nope", "gc"], 2, "not an existing directory"),
        (["--db", filled, "--blobs", "", "gc"], 2, "must not be empty"),
    ]
    for args, code, message in cases:
        r = relkit.run(args)
        assert r.returncode == code and not r.traceback, r.describe()
        if message:
            assert message in r.stderr, r.describe()
    assert PostgresTaskDB.count_tasks(filled) == 6


def _file_db(url: str, rows: list[tuple[str, str, bool]]) -> None:
    """FILE rows (key, location, expired) written through the library."""
    db = PostgresTaskDB(url, clock=lambda: NOW - dt.timedelta(days=3))
    try:
        for key, location, expired in rows:
            expires = NOW - dt.timedelta(hours=1) if expired else None
            db.save(key, "f", "m.f", "in", None, "FILE", None, location, None, expires)
    finally:
        db.shutdown()


def test_locations_are_compared_normalized(pg_url: str, tmp_path: Path) -> None:
    """`a.bin` (expired row) and `./a.bin` (live row) are one file: it stays."""
    store = tmp_path / "store"
    store.mkdir()
    for name in ("a.bin", "b.bin"):
        (store / name).write_bytes(b"x")
    _file_db(pg_url, [("A", "a.bin", True), ("B", "./a.bin", False), ("C", "./b.bin", True)])
    plan = json.loads(relkit.run(["--db", pg_url, "--blobs", store, "gc", "-n", "--json"]).stdout)
    r = relkit.run(["--db", pg_url, "--blobs", store, "gc", "--json"])
    assert r.returncode == 0, r.describe()
    assert json.loads(r.stdout)["totals"] == plan["totals"] == {"rows": 2, "files": 1, "bytes": 1}
    assert sorted(p.name for p in store.iterdir()) == ["a.bin"]


def test_a_store_that_is_not_this_dbs_is_refused(pg_url: str, tmp_path: Path) -> None:
    """A wrong --blobs (another team's prefix, the bucket's root) must not look like a
    store full of orphans."""
    root = tmp_path / "bucket"
    (root / "llm").mkdir(parents=True)
    (root / "otherteam").mkdir()
    for path in (root / "llm" / "live.bin", root / "llm" / "old.bin", root / "otherteam" / "x.bin"):
        path.write_bytes(b"data")
    (root / "stray.bin").write_bytes(b"s")
    _file_db(pg_url, [("live", "live.bin", False), ("old", "old.bin", True)])
    wrong = relkit.run(["--db", pg_url, "--blobs", root / "otherteam", "gc"])
    assert wrong.returncode == 1 and "is it this DB's store?" in wrong.stderr, wrong.describe()
    # The bucket's root holds this DB's blobs one level down: nothing there is an orphan
    # (workers write `<key>.bin` at the top of their store), and the rows' blobs are not
    # at the top either, so the store is refused as well.
    at_root = relkit.run(["--db", pg_url, "--blobs", root, "gc"])
    assert at_root.returncode == 1, at_root.describe()
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.bin"))
    assert files == ["llm/live.bin", "llm/old.bin", "otherteam/x.bin", "stray.bin"]
    assert PostgresTaskDB.count_tasks(pg_url) == 2
    right = relkit.run(["--db", pg_url, "--blobs", root / "llm", "gc", "--grace", "0s"])
    assert right.returncode == 0, right.describe()
    assert sorted(p.name for p in (root / "llm").iterdir()) == ["live.bin"]
