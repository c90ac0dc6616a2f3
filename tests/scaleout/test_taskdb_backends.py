"""The same task-DB behaviour, case for case, on SQLite and on a real PostgreSQL server.

Every test runs twice: ``sqlite`` (SQLiteTaskDB on a temp file) and ``postgres``
(PostgresTaskDB on a fresh database of the session's server, see ``pg_server.py``).  Both
get one injected clock, and small delete batches (7 rows), so the maintenance cases also
exercise batching.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pg_server import pg_server_fixture, pg_url_fixture  # noqa: F401 (fixtures)

from beautyspot import db as bsdb
from beautyspot.backends import is_server_url, open_task_db
from beautyspot.db import (
    Flushable,
    Maintenable,
    Shutdownable,
    SQLiteTaskDB,
    TaskDBBase,
    TaskDBCore,
    TaskDBMaintenable,
)
from beautyspot.timeutil import format_ts

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BATCH = 7
HISTORY_COLUMNS = [
    "cache_key",
    "func_name",
    "func_identifier",
    "input_id",
    "result_type",
    "result_value",
    "content_type",
    "version",
    "expires_at",
    "updated_at",
]


class Clock:
    def __init__(self, now: dt.datetime = T0):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Backend:
    kind: str
    db: Any
    clock: Clock
    target: str  # what count_tasks takes: a path or a URL

    def count(self) -> int:
        return type(self.db).count_tasks(self.target)


def make(kind: str, clock: Clock, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    if kind == "sqlite":
        path = tmp_path / "ws" / "t.db"
        return Backend(kind, SQLiteTaskDB(path, clock=clock), clock, str(path))
    from beautyspot.postgres import PostgresTaskDB

    url = request.getfixturevalue("pg_url")
    return Backend(kind, PostgresTaskDB(url, clock=clock, delete_batch=BATCH), clock, url)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    monkeypatch.setattr(bsdb, "DELETE_BATCH", BATCH)
    b = make(request.param, Clock(), tmp_path, request)
    try:
        yield b
    finally:
        b.db.shutdown()


def save(db: Any, key: str, func: str = "f", **kw: Any) -> None:
    kw.setdefault("result_data", b"\xa1x")
    db.save(
        key,
        func,
        kw.pop("ident", f"mod.{func}"),
        kw.pop("input_id", "in"),
        kw.pop("version", None),
        kw.pop("rt", "DIRECT_BLOB"),
        kw.pop("content_type", None),
        **kw,
    )


def history_rows(db: Any) -> dict[str, dict[str, Any]]:
    return {r["cache_key"]: r for r in db.get_history().to_dict("records")}


def keys_of(b: Backend) -> list[str]:
    return sorted(b.db.get_history(limit=100_000)["cache_key"])


# --------------------------------------------------------------------------- core


def test_protocols_are_satisfied(backend: Backend) -> None:
    for proto in (TaskDBCore, Flushable, Shutdownable, Maintenable, TaskDBMaintenable):
        assert isinstance(backend.db, proto), proto.__name__
    assert isinstance(backend.db, TaskDBBase)


def test_save_get_roundtrip_bytes_and_none_fields(backend: Backend) -> None:
    db = backend.db
    payload = bytes(range(256)) + b"\x00\x00"
    db.save("inline", "f", "mod.f", "in", None, "DIRECT_BLOB", None, result_data=payload)
    db.save(
        "file",
        "g",
        None,
        "in2",
        "v1",
        "FILE",
        "application/json",
        result_value="file.bin",
        expires_at=T0 + dt.timedelta(hours=1),
    )
    assert db.get("inline") == {
        "result_type": "DIRECT_BLOB",
        "result_value": None,
        "result_data": payload,
        "expires_at": None,
    }
    assert db.get("file") == {
        "result_type": "FILE",
        "result_value": "file.bin",
        "result_data": None,
        "expires_at": "2026-06-01 13:00:00+00:00",
    }
    assert db.get("missing") is None
    hist = history_rows(db)
    assert hist["file"]["version"] == "v1"
    assert hist["file"]["content_type"] == "application/json"
    assert hist["file"]["input_id"] == "in2"
    assert hist["file"]["expires_at"] == "2026-06-01 13:00:00+00:00"
    assert pd.isna(hist["inline"]["version"]) and pd.isna(hist["inline"]["expires_at"])
    assert hist["inline"]["updated_at"] == "2026-06-01 12:00:00+00:00"


def test_expired_rows_are_a_miss_unless_include_expired(backend: Backend) -> None:
    db, clock = backend.db, backend.clock
    save(db, "soon", expires_at=T0 + dt.timedelta(hours=1))
    save(db, "naive", expires_at=dt.datetime(2026, 6, 1, 12, 30))  # naive = UTC
    save(db, "text", expires_at="2026-06-01 12:30:00+00:00")
    save(db, "never")
    assert all(db.get(k) is not None for k in ("soon", "naive", "text", "never"))
    clock.now = T0 + dt.timedelta(minutes=45)
    assert db.get("naive") is None and db.get("text") is None
    assert db.get("soon") is not None and db.get("never") is not None
    rec = db.get("text", include_expired=True)
    assert rec is not None and rec["expires_at"] == "2026-06-01 12:30:00+00:00"
    assert db.get("soon", now=T0 + dt.timedelta(hours=2)) is None
    assert db.get("naive", now=T0) is not None  # an explicit now wins over the clock
    clock.now = T0 + dt.timedelta(hours=1)  # exactly the expiry: not before now, still live
    assert db.get("soon") is not None


def test_func_identifier_defaults_to_func_name(backend: Backend) -> None:
    db, clock = backend.db, backend.clock
    db.save("plain", "f", None, "in", None, "DIRECT_BLOB", None, result_data=b"1")
    db.save("qualified", "g", "mod.g", "in", None, "DIRECT_BLOB", None, result_data=b"2")
    clock.now = T0 + dt.timedelta(days=1)
    assert db.get_outdated_tasks(T0 + dt.timedelta(hours=1)) == [
        ("plain", "f", "2026-06-01 12:00:00+00:00"),
        ("qualified", "mod.g", "2026-06-01 12:00:00+00:00"),
    ]
    assert history_rows(db)["plain"]["func_identifier"] == "f"
    assert db.delete_all(func_name="f") == 1  # matched through func_name and identifier alike
    assert keys_of(backend) == ["qualified"]


def test_resave_replaces_and_refreshes_updated_at(backend: Backend) -> None:
    db, clock = backend.db, backend.clock
    save(db, "k", result_data=b"1", expires_at=T0 + dt.timedelta(minutes=5))
    clock.now = T0 + dt.timedelta(hours=1)
    save(db, "k", func="g", result_data=b"2")  # no expiry now, another function
    assert db.get("k") == {
        "result_type": "DIRECT_BLOB",
        "result_value": None,
        "result_data": b"2",
        "expires_at": None,
    }
    assert backend.count() == 1
    assert db.get_outdated_tasks(T0 + dt.timedelta(minutes=30)) == []
    assert db.get_outdated_tasks(T0 + dt.timedelta(hours=2)) == [
        ("k", "mod.g", "2026-06-01 13:00:00+00:00")
    ]


def test_delete_returns_whether_a_row_went(backend: Backend) -> None:
    save(backend.db, "k")
    save(backend.db, "other")
    assert backend.db.delete("k") is True
    assert backend.db.delete("k") is False
    assert backend.db.delete("never-there") is False
    assert keys_of(backend) == ["other"]


# --------------------------------------------------------------------------- maintenance


def test_delete_all_with_and_without_func(backend: Backend) -> None:
    db = backend.db
    for i in range(10):
        save(db, f"a{i}", func="a")  # identifier mod.a
    for i in range(12):
        save(db, f"b{i}", func="b")
    save(db, "c0", func="c", ident="pkg.special")
    assert db.delete_all(func_name="mod.a") == 10  # by identifier
    assert db.delete_all(func_name="b") == 12  # by name
    assert db.delete_all(func_name="nothing") == 0
    assert keys_of(backend) == ["c0"]
    save(db, "d0", func="d")
    assert db.delete_all() == 2
    assert backend.count() == 0


def test_prune_with_datetime_timedelta_and_func(backend: Backend) -> None:
    db, clock = backend.db, backend.clock
    clock.now = T0 - dt.timedelta(days=10)
    for i in range(9):
        save(db, f"old{i}", func="a" if i % 3 == 0 else "b")  # a: old0 old3 old6
    clock.now = T0 - dt.timedelta(days=3)
    for i in range(4):
        save(db, f"mid{i}", func="a")
    clock.now = T0
    save(db, "new", func="a")
    assert db.prune(T0 - dt.timedelta(days=20)) == 0
    assert db.prune(T0 - dt.timedelta(days=5), func_name="a") == 3
    assert db.prune(dt.timedelta(days=5), func_name="mod.b") == 6  # an age, by identifier
    assert keys_of(backend) == ["mid0", "mid1", "mid2", "mid3", "new"]
    assert db.prune(dt.timedelta(days=1)) == 4
    assert db.prune(T0) == 0  # updated exactly at the cutoff: kept
    assert keys_of(backend) == ["new"]


def test_get_outdated_tasks_content_and_order(backend: Backend) -> None:
    db, clock = backend.db, backend.clock
    times = {"k3": 1, "k1": 2, "k2": 3, "k0": 5}  # hours after T0
    for key, hours in times.items():
        clock.now = T0 + dt.timedelta(hours=hours)
        save(db, key, func="g" if key == "k2" else "f", ident=None if key == "k1" else "m.x")
    clock.now = T0 + dt.timedelta(days=1)
    outdated = db.get_outdated_tasks(T0 + dt.timedelta(hours=4))
    assert outdated == [
        ("k3", "m.x", "2026-06-01 13:00:00+00:00"),
        ("k1", "f", "2026-06-01 14:00:00+00:00"),
        ("k2", "m.x", "2026-06-01 15:00:00+00:00"),
    ]
    assert db.get_outdated_tasks(T0 + dt.timedelta(hours=4), func_name="f") == outdated[:2]
    assert db.get_outdated_tasks(dt.timedelta(hours=20), func_name="g") == [outdated[2]]
    assert [k for k, _, _ in db.get_outdated_tasks(dt.timedelta(0))] == ["k3", "k1", "k2", "k0"]


def test_delete_expired_count_and_what_stays(backend: Backend) -> None:
    db, clock = backend.db, backend.clock
    for i in range(20):
        save(db, f"past{i:02}", expires_at=T0 - dt.timedelta(minutes=i + 1))
    save(db, "at_now", expires_at=T0)
    save(db, "future", expires_at=T0 + dt.timedelta(seconds=1))
    save(db, "never")
    assert db.delete_expired(now=T0) == 20
    assert keys_of(backend) == ["at_now", "future", "never"]
    assert db.delete_expired(now=T0) == 0
    clock.now = T0 + dt.timedelta(seconds=1)
    assert db.delete_expired() == 1  # the clock's now: at_now is before it, future is not
    assert keys_of(backend) == ["future", "never"]


def test_get_blob_refs(backend: Backend) -> None:
    db = backend.db
    save(db, "a", rt="FILE", result_value="a.bin", result_data=None)
    save(db, "a2", rt="FILE", result_value="a.bin", result_data=None)  # shared blob
    save(db, "b", rt="FILE", result_value="sub/b.bin", result_data=None)
    save(db, "inline")
    assert db.get_blob_refs() == {"a.bin", "sub/b.bin"}
    db.delete("b")
    assert db.get_blob_refs() == {"a.bin"}


def test_keys_start_with_literal_case_sensitive_sorted_bounded(backend: Backend) -> None:
    db = backend.db
    for key in ["ab%", "ab%c", "abc", "abd", "aB", "ab_", "ab\\", "ab\\x", "b", "ABC", "a"]:
        save(db, key)
    assert db.get_keys_start_with("ab%") == ["ab%", "ab%c"]
    assert db.get_keys_start_with("ab_") == ["ab_"]
    assert db.get_keys_start_with("ab\\") == ["ab\\", "ab\\x"]
    assert db.get_keys_start_with("ab") == ["ab%", "ab%c", "ab\\", "ab\\x", "ab_", "abc", "abd"]
    assert db.get_keys_start_with("aB") == ["aB"]
    assert db.get_keys_start_with("A") == ["ABC"]
    assert db.get_keys_start_with("zz") == []
    assert db.get_keys_start_with("\udcff") == []  # unstorable prefix: no match, no crash
    for i in range(80):
        save(db, f"z{i:03}")
    assert db.get_keys_start_with("z") == [f"z{i:03}" for i in range(50)]
    everything = db.get_keys_start_with("")
    assert len(everything) == bsdb.MAX_PREFIX_RESULTS
    assert everything[:4] == ["ABC", "a", "aB", "ab%"]  # byte order
    assert everything == sorted(everything)


def test_keys_start_with_max_code_point(backend: Backend) -> None:
    top = "\U0010ffff"
    for key in ["a" + top, "a" + top + "x", "a" + top + top, "b", "a\U0010fffe"]:
        save(backend.db, key)
    assert backend.db.get_keys_start_with("a" + top) == ["a" + top, "a" + top + "x", "a" + top * 2]
    assert backend.db.get_keys_start_with(top) == []
    assert backend.db.get_keys_start_with("a") == [
        "a\U0010fffe",
        "a" + top,
        "a" + top + "x",
        "a" + top * 2,
    ]


def test_get_history_newest_first_and_limit(backend: Backend) -> None:
    db, clock = backend.db, backend.clock
    for i, key in enumerate(["b", "c", "a"]):
        clock.now = T0 + dt.timedelta(minutes=i)
        save(db, key, rt="FILE" if key == "c" else "DIRECT_BLOB")
    hist = db.get_history()
    assert list(hist.columns) == HISTORY_COLUMNS
    assert list(hist["cache_key"]) == ["a", "c", "b"]
    assert list(hist["updated_at"]) == [format_ts(T0 + dt.timedelta(minutes=m)) for m in (2, 1, 0)]
    assert list(hist["result_type"]) == ["DIRECT_BLOB", "FILE", "DIRECT_BLOB"]
    assert list(db.get_history(limit=2)["cache_key"]) == ["a", "c"]


def test_batched_deletes_over_several_batches(backend: Backend) -> None:
    db, clock = backend.db, backend.clock
    clock.now = T0 - dt.timedelta(days=30)
    for i in range(45):  # 6 batches and a bit, whichever delete runs
        save(db, f"old{i:03}", func="old")
    clock.now = T0
    for i in range(38):
        save(db, f"exp{i:03}", func="exp", expires_at=T0 - dt.timedelta(seconds=i % 5 + 1))
    for i in range(29):
        save(db, f"gen{i:03}", func="gen")
    save(db, "keep", func="keep", expires_at=T0 + dt.timedelta(days=1))
    assert db.delete_expired(now=T0) == 38
    assert db.prune(dt.timedelta(days=1)) == 45
    assert db.delete_all(func_name="gen") == 29
    assert keys_of(backend) == ["keep"]
    assert db.delete_all() == 1
    assert backend.count() == 0


# --------------------------------------------------------------------------- life cycle


def test_flush_and_shutdown(backend: Backend) -> None:
    db = backend.db
    save(db, "a")
    assert db.flush() is True
    assert db.flush(timeout=5) is True
    db.shutdown()
    db.shutdown()  # idempotent
    db.shutdown(wait=False)
    assert db.flush() is False
    calls = [
        lambda: save(db, "b"),
        lambda: db.get("a"),
        lambda: db.delete("a"),
        lambda: db.delete_expired(),
        lambda: db.prune(T0),
        lambda: db.delete_all(),
        lambda: db.get_keys_start_with("a"),
        lambda: db.get_history(),
        lambda: db.get_outdated_tasks(T0),
        lambda: db.get_blob_refs(),
        lambda: db.init_schema(),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match="shutting down"):
            call()
    assert backend.count() == 1  # what was written before shutdown stays


def test_eight_threads_five_hundred_saves_each(backend: Backend) -> None:
    db = backend.db
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(500):
                save(db, f"t{t}-{i:03}", result_data=f"{t}:{i}".encode())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert db.flush() is True
    assert backend.count() == 4000
    assert db.get("t7-499")["result_data"] == b"7:499"
    assert db.get_keys_start_with("t3-04") == [f"t3-04{i}" for i in range(10)]


def test_count_tasks_and_bad_targets(backend: Backend, tmp_path: Path) -> None:
    for i in range(13):
        save(backend.db, f"k{i}")
    assert backend.count() == 13
    cls = type(backend.db)
    if backend.kind == "sqlite":
        bad = [str(tmp_path / "nope.db"), str(tmp_path)]
    else:
        base = backend.target.split("?")[0].rsplit("/", 1)[0]
        bad = [
            backend.target.replace("/t", "/no_such_db_", 1),
            f"{base}/x?host=/nonexistent-dir&port=1",
            "postgresql://user:secret@[broken",
        ]
    for target in bad:
        assert cls.count_tasks(target, timeout=2) == -1, target


def test_open_task_db_selects_the_backend(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(backend.db, "shared")
    assert is_server_url(backend.target) is (backend.kind == "postgres")
    opened = open_task_db(backend.target)
    try:
        assert type(opened) is type(backend.db)
        assert opened.get("shared") is not None
    finally:
        opened.shutdown()
    monkeypatch.setenv("BEAUTYSPOT_DB", backend.target)
    from_env = open_task_db(timeout=5.0)
    try:
        assert type(from_env) is type(backend.db)
        assert from_env.get("shared") is not None
    finally:
        from_env.shutdown()
    monkeypatch.delenv("BEAUTYSPOT_DB")
    monkeypatch.chdir(tmp_path)
    default = open_task_db()
    try:
        assert isinstance(default, SQLiteTaskDB)
        assert default.db_path == bsdb.DEFAULT_DB_PATH
    finally:
        default.shutdown()
    assert (tmp_path / ".beautyspot" / "beautyspot.db").exists()
