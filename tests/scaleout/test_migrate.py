"""`beautyspot migrate`: a SQLite task DB and its blobs into PostgreSQL and S3.

Real parts only: the installed command in a subprocess, the upstream 2.7.7 workspace (or
DBs written like it), a PostgreSQL server and moto's S3 server, both started by the
fixtures.  Each test checks the target row by row against the source, not just counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from moto_server import (  # noqa: F401 (fixtures)
    FAKE_ENV,
    s3_bucket_fixture,
    s3_client_fixture,
    s3_server_fixture,
)
from pg_server import pg_server_fixture, pg_url_fixture  # noqa: F401 (fixtures)

from beautyspot.timeutil import parse_instant, to_instant
from conftest import UPSTREAM
from reliability import relkit

PREFIX = "teams/etl"


@pytest.fixture
def env(s3_server) -> dict[str, str]:
    return relkit.cli_env(BEAUTYSPOT_S3_ENDPOINT=s3_server.endpoint_url, **FAKE_ENV)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    dest = tmp_path / ".beautyspot"
    shutil.copytree(UPSTREAM, dest)
    return dest


def migrate(env, *args) -> relkit.Run:
    return relkit.run(["migrate", *args, "--json"], env=env, timeout=300)


def report(r: relkit.Run) -> dict:
    assert not r.traceback and r.stdout, r.describe()
    return json.loads(r.stdout)


def source_rows(path: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT cache_key, func_name, func_identifier, input_id, version, result_type,"
                " content_type, result_value, result_data, expires_at, updated_at FROM tasks"
            )
        }
    finally:
        conn.close()


def target_rows(url: str) -> dict[str, tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT cache_key, func_name, func_identifier, input_id, version, result_type,"
            " content_type, result_value, result_data, expires_at, updated_at FROM tasks"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def same_instant(source_value, target_value: dt.datetime | None) -> bool:
    if source_value is None or target_value is None:
        return source_value is None and target_value is None
    return parse_instant(source_value) == to_instant(target_value)


def assert_copied(src: dict, dst: dict, keys) -> None:
    for key in keys:
        s, d = src[key], dst[key]
        assert s[:7] == d[:7], key  # names, ids, version, types, location
        assert bytes(d[7]) == s[7] if s[7] is not None else d[7] is None, key
        assert same_instant(s[8], d[8]) and same_instant(s[9], d[9]), key


def s3_objects(client, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents") or []:
            out[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upstream_db_to_postgres_and_s3(ws, env, pg_url, s3_bucket, s3_client) -> None:
    before = {p.name: digest(p) for p in ws.glob("*.db")}
    r = migrate(
        env, "-w", ws, "--from", "llm", "--to", pg_url, "--blobs", f"s3://{s3_bucket}/{PREFIX}"
    )
    doc = report(r)
    assert r.returncode == 0, r.describe()
    src = source_rows(ws / "llm.db")
    assert (doc["rows"], doc["copied"], doc["present"], doc["skipped"]) == (60, 60, 0, 0)
    assert (doc["blobs_copied"], doc["verified"], doc["missing"], doc["ok"]) == (6, 60, 0, True)
    dst = target_rows(pg_url)
    assert set(dst) == set(src)
    assert_copied(src, dst, src)
    objects = s3_objects(s3_client, s3_bucket)
    files = {k: v for k, v in src.items() if v[4] == "FILE"}
    assert set(objects) == {f"{PREFIX}/{v[6]}" for v in files.values()}
    for v in files.values():
        assert objects[f"{PREFIX}/{v[6]}"] == (ws / "blobs" / "llm" / v[6]).read_bytes()
    # The source is only read: same bytes, no -wal/-shm left, nothing new in the workspace.
    assert {p.name: digest(p) for p in ws.glob("*.db")} == before
    assert not list(ws.glob("*-wal")) and not list(ws.glob("*-shm"))


def test_rerun_copies_nothing_and_dry_run_writes_nothing(ws, env, pg_url, s3_bucket, s3_client):
    blobs = f"s3://{s3_bucket}/{PREFIX}"
    dry = report(migrate(env, "-w", ws, "--from", "etl", "--to", pg_url, "--blobs", blobs, "-n"))
    assert (dry["rows"], dry["copied"], dry["blobs_copied"], dry["dry_run"]) == (6, 6, 6, True)
    assert s3_objects(s3_client, s3_bucket) == {}
    assert not table_exists(pg_url)  # a dry run creates nothing, not even the table
    first = migrate(env, "-w", ws, "--from", "etl", "--to", pg_url, "--blobs", blobs)
    assert first.returncode == 0, first.describe()
    again = migrate(env, "-w", ws, "--from", "etl", "--to", pg_url, "--blobs", blobs)
    doc = report(again)
    assert again.returncode == 0, again.describe()
    assert (doc["copied"], doc["present"], doc["blobs_copied"], doc["verified"]) == (0, 6, 0, 6)


def test_resumes_where_a_partial_copy_stopped(ws, env, pg_url, s3_bucket, s3_client) -> None:
    blobs = f"S3://{s3_bucket}/{PREFIX}"  # the scheme in any case, as for gc's --blobs
    half = ws.parent / "half" / "llm.db"
    half.parent.mkdir()
    shutil.copy(ws / "llm.db", half)
    shutil.copytree(ws / "blobs", half.parent / "blobs")
    conn = sqlite3.connect(half)
    conn.execute("DELETE FROM tasks WHERE rowid % 2 = 0")
    conn.commit()
    kept = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    conn.close()
    first = report(migrate(env, "--from", half, "--to", pg_url, "--blobs", blobs))
    assert first["copied"] == kept == 30
    doc = report(migrate(env, "-w", ws, "--from", "llm", "--to", pg_url, "--blobs", blobs))
    assert (doc["copied"], doc["present"], doc["verified"], doc["ok"]) == (30, 30, 60, True)
    assert set(target_rows(pg_url)) == set(source_rows(ws / "llm.db"))
    assert len(s3_objects(s3_client, s3_bucket)) == 6  # llm.db's 6 blobs, in the bucket


def test_a_newer_row_in_the_target_wins(ws, env, pg_url) -> None:
    from beautyspot.postgres import PostgresTaskDB

    src = source_rows(ws / "llm.db")
    key = next(k for k, v in src.items() if v[4] == "DIRECT_BLOB")
    later = dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)
    db = PostgresTaskDB(pg_url, clock=lambda: later)
    try:
        db.save(key, "ask", "__main__.ask", "in", "v2", "DIRECT_BLOB", None, None, b"\x01")
    finally:
        db.shutdown()
    # Only DIRECT rows in this DB copy, so no --blobs is needed.
    conn = sqlite3.connect(ws / "llm.db")
    conn.execute("DELETE FROM tasks WHERE result_type = 'FILE'")
    conn.commit()
    conn.close()
    r = migrate(env, "-w", ws, "--from", "llm", "--to", pg_url)
    doc = report(r)
    assert r.returncode == 0, r.describe()
    assert (doc["rows"], doc["copied"], doc["present"], doc["verified"]) == (54, 53, 1, 54)
    dst = target_rows(pg_url)
    assert bytes(dst[key][7]) == b"\x01" and dst[key][3] == "v2"


def test_rows_that_cannot_be_copied_are_listed_and_fail_the_run(tmp_path, env, pg_url) -> None:
    past = "2026-11-01 00:00:00+00:00"
    rows = [
        relkit.inline_row("good", "m.f", b"\x01", None, past),
        relkit.inline_row("bad-updated", "m.f", b"\x01", None, "yesterday"),
        relkit.inline_row("bad-expiry", "m.f", b"\x01", "soon", past),
        relkit.inline_row("nul\x00key", "m.f", b"\x01", None, past),
    ]
    relkit.create_db(tmp_path / "x.db", rows)
    r = migrate(env, "--from", tmp_path / "x.db", "--to", pg_url)
    doc = report(r)
    assert r.returncode == 1, r.describe()
    assert (doc["rows"], doc["copied"], doc["skipped"], doc["verified"]) == (4, 1, 3, 1)
    reasons = dict((row["cache_key"], row["reason"]) for row in doc["skipped_rows"])
    assert reasons["bad-updated"] == "updated_at is missing or unparsable"
    assert reasons["bad-expiry"] == "expires_at is unparsable"
    assert [r for k, r in reasons.items() if k.startswith("nul")] == [
        "cache_key contains a NUL character: PostgreSQL text cannot hold it"
    ]
    assert set(target_rows(pg_url)) == {"good"}
    assert "3 rows could not be copied" in r.stderr


def test_refuses_before_writing_anything(ws, env, pg_url) -> None:
    no_blobs = migrate(env, "-w", ws, "--from", "llm", "--to", pg_url)
    assert no_blobs.returncode == 2 and "--blobs" in no_blobs.stderr, no_blobs.describe()
    assert target_rows(pg_url) == {}
    not_url = migrate(env, "-w", ws, "--from", "llm", "--to", str(ws / "other.db"))
    assert not_url.returncode == 2 and "postgresql://" in not_url.stderr
    assert not (ws / "other.db").exists()
    missing = migrate(env, "-w", ws, "--from", "nope", "--to", pg_url)
    assert missing.returncode == 2 and not missing.traceback


def test_killed_run_is_resumed_exactly(tmp_path, env, pg_url) -> None:
    """kill -9 in the middle of a copy, then run again: every row once, verified."""
    n = 20_000
    past = "2026-11-01 00:00:00.000001+00:00"
    relkit.create_db(
        tmp_path / "big.db",
        [
            relkit.inline_row(f"k{i:06d}", f"m.f{i % 7}", os.urandom(40), None, past)
            for i in range(n)
        ],
    )
    proc = relkit.popen(
        ["migrate", "--from", tmp_path / "big.db", "--to", pg_url, "--batch", "200"], env=env
    )
    deadline = time.monotonic() + 120
    copied = 0
    while time.monotonic() < deadline and proc.poll() is None:
        copied = relkit_count(pg_url)
        if copied >= 2000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert 0 < copied < n, "the run ended before it could be interrupted"
    partial = relkit_count(pg_url)
    r = migrate(env, "--from", tmp_path / "big.db", "--to", pg_url)
    doc = report(r)
    assert r.returncode == 0, r.describe()
    assert doc["present"] == partial and doc["copied"] == n - partial
    assert (doc["verified"], doc["missing"]) == (n, 0)
    assert relkit_count(pg_url) == n


def table_exists(url: str) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('tasks')").fetchone()[0] is not None


def relkit_count(url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def test_migrate_help(env) -> None:
    r = relkit.run(["migrate", "--help"], env=env)
    assert r.returncode == 0 and "--from" in r.stdout and "--blobs" in r.stdout


def test_a_newer_file_row_keeps_its_blob(ws, env, pg_url, s3_bucket, s3_client) -> None:
    """A worker already wrote the key (row and blob) after the source did: migrate leaves
    both, and the server's conditional upsert would keep the row even if it raced."""
    from beautyspot.postgres import PostgresTaskDB
    from beautyspot.s3storage import S3Storage

    src = source_rows(ws / "etl.db")
    key, row = next(iter(src.items()))
    S3Storage(s3_bucket, PREFIX, client=s3_client).save(row[6][:-4], b"worker's fresh bytes")
    later = dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)
    db = PostgresTaskDB(pg_url, clock=lambda: later)
    try:
        db.save(key, "load_chunk", "__main__.load_chunk", "in", "new", "FILE", None, row[6])
        assert (
            db.save_many([(key, *row[:8], None, "2020-01-01 00:00:00+00:00")], newer_only=True) == 0
        )
    finally:
        db.shutdown()
    r = migrate(
        env, "-w", ws, "--from", "etl", "--to", pg_url, "--blobs", f"s3://{s3_bucket}/{PREFIX}"
    )
    doc = report(r)
    assert r.returncode == 0, r.describe()
    assert (doc["copied"], doc["present"], doc["verified"]) == (5, 1, 6)
    assert target_rows(pg_url)[key][3] == "new"
    assert s3_objects(s3_client, s3_bucket)[f"{PREFIX}/{row[6]}"] == b"worker's fresh bytes"


def test_a_rerun_uploads_a_blob_the_first_run_missed(ws, env, pg_url, s3_bucket, s3_client):
    blobs = f"s3://{s3_bucket}/{PREFIX}"
    assert migrate(env, "-w", ws, "--from", "etl", "--to", pg_url, "--blobs", blobs).returncode == 0
    objects = sorted(s3_objects(s3_client, s3_bucket))
    s3_client.delete_object(Bucket=s3_bucket, Key=objects[0])
    doc = report(migrate(env, "-w", ws, "--from", "etl", "--to", pg_url, "--blobs", blobs))
    assert (doc["copied"], doc["present"], doc["blobs_copied"], doc["ok"]) == (0, 6, 1, True)
    assert sorted(s3_objects(s3_client, s3_bucket)) == objects


def test_a_utf16_source_is_copied_whatever_its_key_order(tmp_path, env, pg_url) -> None:
    """SQLite orders UTF-16 text by its bytes, not by code point: the copy must not care."""
    path = tmp_path / "u16.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA encoding='UTF-16le'")
    conn.close()
    past = "2026-11-01 00:00:00+00:00"
    keys = ["b", "\u0101", "c", "\u0102", "\U0001f600", "\uff5e"]
    relkit.create_db(path, [relkit.inline_row(k, "m.f", b"\x01", None, past) for k in keys])
    for _ in range(2):
        r = migrate(env, "--from", path, "--to", pg_url)
        doc = report(r)
        assert r.returncode == 0 and doc["missing"] == 0 and doc["verified"] == 6, r.describe()
    assert doc["copied"] == 0 and set(target_rows(pg_url)) == set(keys)
