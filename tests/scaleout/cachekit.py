"""One small logical cache, built through the library in a SQLite workspace or on
PostgreSQL + S3, and the means to run the ``beautyspot`` command against it.

The design (:func:`design`) is plain data computed from ``now``, so a test derives what every
command must delete from it, independently of the product.  :func:`build` writes it with the
library only (``SQLiteTaskDB``/``LocalStorage`` or ``PostgresTaskDB``/``S3Storage``), each row's
``updated_at`` coming from an injected clock.

Blob ages.  S3's ``LastModified`` is the real upload time (whole seconds), so both backends
use ages of a few real seconds: the old orphans are written first, at second ``s0``; ``now``
is ``s0 + 2``; the young orphan is written at ``now - 1`` or later (on SQLite the mtimes are
set to exactly those values).  With ``--grace 1s`` (:data:`GRACE`) the old orphans (2 s old)
are collectable and the young one (at most 1 s old: ``mtime < now - grace`` is false) is
not, on both backends; with the default grace (1h) no orphan is.  Every comparison is
between whole seconds fixed before the command runs, so no real-time race decides it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from reliability import relkit

UTC = dt.timezone.utc
FUNCS = ("app.jobs.embed", "app.jobs.ask", "app.jobs.render")
N_TASKS = 40
GRACE = "1s"
GRACE_SECONDS = 1
OLD_ORPHANS = ("orphan-old-0.bin", "orphan-old-1.bin")
YOUNG_ORPHAN = "orphan-young.bin"
S3_PREFIX = "teams/etl/cache"
CONTENT_TYPE = "application/msgpack"


@dataclass(frozen=True)
class Task:
    key: str
    function: str  # func_identifier
    name: str  # func_name
    input_id: str
    expires_at: dt.datetime | None
    updated_at: dt.datetime
    payload: bytes
    file: bool  # a FILE row: the payload is a blob, result_value names it

    @property
    def location(self) -> str | None:
        return self.key + ".bin" if self.file else None

    @property
    def result_type(self) -> str:
        return "FILE" if self.file else "DIRECT_BLOB"

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at < now


def key_of(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def design(now: dt.datetime) -> dict[str, Task]:
    """40 tasks over 3 functions: a fifth never expire, two fifths expired, two fifths live;
    half last updated 40-59 days before *now*, half 1-5 days before; 1 in 4 a FILE row."""
    tasks = {}
    for i in range(N_TASKS):
        key = key_of(f"task-{i}")
        function = FUNCS[i % 3]
        if (i // 3) % 2 == 0:
            updated = now - dt.timedelta(days=40 + i % 20, minutes=i)
            expired_at = updated + dt.timedelta(days=10)
        else:
            updated = now - dt.timedelta(days=1 + i % 5, minutes=i)
            expired_at = now - dt.timedelta(minutes=5 + i)
        kind = i % 5
        if kind == 0:
            expires = None
        elif kind in (1, 2):
            expires = expired_at
        else:
            expires = now + dt.timedelta(days=30 + i)
        payload = msgpack.packb({"i": i, "function": function, "pad": "x" * (10 + 3 * i)})
        tasks[key] = Task(
            key,
            function,
            function.rsplit(".", 1)[-1],
            f"in-{i}",
            expires,
            updated,
            payload,
            i % 4 == 0,
        )
    return tasks


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Cache:
    """The cache of one backend: its design, the CLI arguments naming it, and read-back."""

    kind: str  # "sqlite" or "postgres"
    now: dt.datetime
    tasks: dict[str, Task]
    env: dict[str, str]
    target: list[str]  # -w/--db/--blobs arguments naming this DB and its blobs
    db: Any  # the library's task DB (open, same clock kind as the build)
    storage: Any  # LocalStorage or S3Storage
    clock: Clock
    ws: Path | None = None
    url: str | None = None
    bucket: str | None = None
    s3_client: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- running the command ---------------------------------------------------------

    def run(self, *args: Any, env: dict[str, str] | None = None, timeout: float = 120):
        """``beautyspot ARGS... <target>`` (the target options after the command)."""
        return relkit.run([*args, *self.target], env=env or self.env, timeout=timeout)

    # -- writing (through the library) -----------------------------------------------

    def save_task(self, task: Task, *, upload: bool = True) -> None:
        location = None
        if task.file:
            location = self.storage.save(task.key, task.payload) if upload else task.location
            assert location == task.location
        self.clock.now = task.updated_at
        self.db.save(
            task.key,
            task.name,
            task.function,
            task.input_id,
            "v1",
            task.result_type,
            CONTENT_TYPE,
            result_value=location,
            result_data=None if task.file else task.payload,
            expires_at=task.expires_at,
        )
        self.sync()

    def save_raw(self, key: str, function: str, *, location: str | None, payload: bytes,
                 expires_at: dt.datetime | None, updated_at: dt.datetime) -> None:  # fmt: skip
        self.clock.now = updated_at
        self.db.save(
            key,
            function.rsplit(".", 1)[-1],
            function,
            f"in-{key[:8]}",
            "v1",
            "FILE" if location else "DIRECT_BLOB",
            CONTENT_TYPE,
            result_value=location,
            result_data=None if location else payload,
            expires_at=expires_at,
        )
        self.sync()

    def sync(self) -> None:
        if self.kind == "sqlite":
            assert self.db.flush(30)

    def close(self) -> None:
        self.db.shutdown()

    # -- reading back (not through the product's maintenance code) --------------------

    def keys(self) -> set[str]:
        if self.kind == "sqlite":
            return set(relkit.db_rows(self.ws / "cache.db"))
        import psycopg

        with psycopg.connect(self.url) as conn:
            return {r[0] for r in conn.execute("SELECT cache_key FROM tasks")}

    def blobs(self) -> set[str]:
        """Locations of every ``*.bin`` in the blob store."""
        if self.kind == "sqlite":
            return relkit.blob_files(self.ws / "blobs" / "cache")
        out = set()
        pages = self.s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=S3_PREFIX + "/"
        )
        for page in pages:
            for item in page.get("Contents") or []:
                name = item["Key"][len(S3_PREFIX) + 1 :]
                if name.endswith(".bin"):
                    out.add(name)
        return out

    def blob_bytes(self, location: str) -> bytes:
        return self.storage.load(location)

    def state(self) -> tuple[set[str], set[str]]:
        return self.keys(), self.blobs()


def _wait_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def build(
    kind: str,
    tmp_path: Path,
    *,
    now: dt.datetime | None = None,
    pg_url: str | None = None,
    s3_server: Any = None,
    s3_client: Any = None,
    s3_bucket: str | None = None,
) -> Cache:
    """Write the designed cache in *kind*'s backend (see the module docstring).

    *now* (SQLite only: on S3 it follows from the upload time) gives a SQLite cache the
    very clock of a server cache built just before, for comparing documents exactly."""
    from moto_server import FAKE_ENV

    clock = Clock(dt.datetime.now(UTC))
    if kind == "sqlite":
        from beautyspot.db import SQLiteTaskDB
        from beautyspot.storage import LocalStorage

        ws = tmp_path / "ws"
        db = SQLiteTaskDB(ws / "cache.db", clock=clock)
        storage = LocalStorage(ws / "blobs" / "cache")
        env_extra: dict[str, str] = {}
        target = ["-w", str(ws), "--db", "cache"]
    else:
        from beautyspot.postgres import PostgresTaskDB
        from beautyspot.s3storage import S3Storage

        ws = None
        db = PostgresTaskDB(pg_url, clock=clock)
        storage = S3Storage(s3_bucket, S3_PREFIX, client=s3_client)
        env_extra = {"BEAUTYSPOT_S3_ENDPOINT": s3_server.endpoint_url, **FAKE_ENV}
        target = ["--db", pg_url, "--blobs", f"s3://{s3_bucket}/{S3_PREFIX}"]

    def put_orphan(location: str, mtime: float | None) -> int:
        storage.save(location[: -len(".bin")], b"orphan " + location.encode())
        if kind == "sqlite":
            os.utime(ws / "blobs" / "cache" / location, (mtime, mtime))
            return int(mtime)
        return int(storage.get_mtime(location))

    # Old orphans first; "now" is fixed from the second they were written.
    if kind == "sqlite":
        s0 = math.floor(time.time()) if now is None else int(now.timestamp()) - 2
        for loc in OLD_ORPHANS:
            put_orphan(loc, s0)
    else:
        assert now is None, "a server cache's now follows from its upload time"
        s0 = max(put_orphan(loc, None) for loc in OLD_ORPHANS)
    now_s = s0 + 2
    now = dt.datetime.fromtimestamp(now_s, UTC)
    tasks = design(now)
    env = relkit.cli_env(now=iso(now), **env_extra)
    cache = Cache(kind, now, tasks, env, target, db, storage, clock, ws, pg_url, s3_bucket,
                  s3_client)  # fmt: skip
    for task in tasks.values():
        cache.save_task(task)
    # The young orphan: written at now - 1 s or later.
    if kind != "sqlite":
        _wait_until(now_s - 1)
    s1 = put_orphan(YOUNG_ORPHAN, now_s - 1)
    assert s1 >= now_s - 1, (s0, s1, now_s)
    cache.extra["orphan_mtimes"] = (s0, s1)
    return cache
