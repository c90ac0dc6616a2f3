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
