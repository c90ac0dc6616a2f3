"""The maintenance commands on a SQLite workspace and on PostgreSQL + S3, case for case.

Every ``cache`` test runs twice: ``sqlite`` (``-w WS --db cache``: SQLiteTaskDB and
LocalStorage) and ``postgres`` (``--db postgresql://… --blobs s3://…``: PostgresTaskDB on a
fresh database of the session's server, S3Storage on a fresh bucket of moto's server).  Both
hold the same logical cache (:mod:`cachekit`), written through the library, and each test
derives what a command must delete from that design, not from the product.  The installed
``beautyspot`` command runs in a subprocess with ``BEAUTYSPOT_NOW`` fixed.

Then the server-only cases: shared blobs, a blob rewritten after the plan, a missing or wrong
``--blobs``, the cross-machine maintenance lock, and writer processes saving while gc runs.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cachekit import (
    GRACE,
    GRACE_SECONDS,
    OLD_ORPHANS,
    S3_PREFIX,
    YOUNG_ORPHAN,
    Cache,
    Task,
    build,
)
from moto_server import (  # noqa: F401 (fixtures)
    FAKE_ENV,
    s3_bucket_fixture,
    s3_client_fixture,
    s3_server_fixture,
)
from pg_server import pg_server_fixture, pg_url_fixture  # noqa: F401 (fixtures)

from beautyspot.timeutil import parse_instant
from reliability import relkit

PLAN_KEYS = {
    "command", "dry_run", "now", "cutoff", "grace_seconds", "func", "totals", "groups",
    "oldest", "warnings", "kept", "errors",
}  # fmt: skip
GROUP_KEYS = {"db", "function", "reason", "rows", "files", "bytes", "oldest"}
OLDEST_KEYS = {"db", "cache_key", "function", "updated_at"}
LS_TASK_KEYS = {
    "cache_key", "function", "result_type", "result_value", "data_bytes", "updated_at",
    "expires_at", "version",
}  # fmt: skip
SHOW_KEYS = {
    "db", "cache_key", "func_name", "function", "version", "result_type", "result_value",
    "updated_at", "expires_at", "state", "blob_path", "blob_bytes", "blob_error",
    "payload_bytes", "preview", "decode_error",
}  # fmt: skip
NOTHING = {"rows": 0, "files": 0, "bytes": 0}
ASK, EMBED, RENDER = "app.jobs.ask", "app.jobs.embed", "app.jobs.render"


# --------------------------------------------------------------------------- fixtures


def server_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {
        name: request.getfixturevalue(name)
        for name in ("pg_url", "s3_server", "s3_client", "s3_bucket")
    }


@pytest.fixture(params=["sqlite", "postgres"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cache]:
    kw = server_kwargs(request) if request.param == "postgres" else {}
    c = build(request.param, tmp_path, **kw)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cache]:
    c = build("postgres", tmp_path, **server_kwargs(request))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def both(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Cache, Cache]]:
    """A server cache, then a SQLite cache with the very same clock."""
    pg = build("postgres", tmp_path / "pg", **server_kwargs(request))
    lite = build("sqlite", tmp_path / "lite", now=pg.now)
    try:
        yield lite, pg
    finally:
        lite.close()
        pg.close()


# --------------------------------------------------------------------------- helpers


def ok(r: relkit.Run, code: int = 0) -> relkit.Run:
    assert r.returncode == code and not r.traceback, r.describe()
    return r


def doc_of(r: relkit.Run, code: int = 0) -> dict:
    ok(r, code)
    return json.loads(r.stdout)


def one_line_error(r: relkit.Run) -> str:
    """The single ``beautyspot: error: …`` line a failed command must print."""
    assert not r.traceback, r.describe()
    assert len(r.error_lines) == 1, r.describe()
    line = r.error_lines[0]
    assert line.startswith("beautyspot: error: "), r.describe()
    return line


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def instant(text: str | None) -> dt.datetime | None:
    """A timestamp text of the product as an aware datetime (any of its forms)."""
    if text is None:
        return None
    us = parse_instant(text)
    assert us is not None, f"unparsable timestamp {text!r}"
    return EPOCH + dt.timedelta(microseconds=us)


def expected_groups(cache: Cache, gone: Callable[[Task], bool], reason: str) -> list[dict]:
    """Per function, sorted: rows, blob files and payload bytes of the tasks *gone* picks."""
    per: dict[str, dict] = {}
    for t in cache.tasks.values():
        if gone(t):
            g = per.setdefault(
                t.function,
                {"function": t.function, "reason": reason, "rows": 0, "files": 0, "bytes": 0},
            )
            g["rows"] += 1
            g["files"] += int(t.file)
            g["bytes"] += len(t.payload)
    return [per[f] for f in sorted(per)]


def orphan_group(locations) -> dict:
    """The orphan group of cachekit's orphans (content ``orphan <location>``)."""
    size = sum(len(b"orphan " + loc.encode()) for loc in locations)
    return {"function": "-", "reason": "orphan", "rows": 0, "files": len(locations), "bytes": size}


def bare(groups: list[dict]) -> list[dict]:
    """Groups without the DB name and oldest text (checked apart)."""
    return [{k: v for k, v in g.items() if k not in ("db", "oldest")} for g in groups]


def totals_of(groups: list[dict]) -> dict:
    return {k: sum(g[k] for g in groups) for k in ("rows", "files", "bytes")}


def check_plan(
    cache: Cache,
    doc: dict,
    command: str,
    *,
    dry_run: bool,
    groups: list[dict],
    gone: Callable[[Task], bool],
) -> None:
    """A gc/prune/clear/rm document: shape, exact groups and totals, oldest rows."""
    assert set(doc) == PLAN_KEYS, doc
    assert (doc["command"], doc["dry_run"]) == (command, dry_run)
    assert instant(doc["now"]) == cache.now
    assert set(doc["totals"]) == {"rows", "files", "bytes"}
    for g in doc["groups"]:
        assert set(g) == GROUP_KEYS, g
    assert bare(doc["groups"]) == groups, doc["groups"]
    assert doc["totals"] == totals_of(groups)
    assert (doc["warnings"], doc["kept"], doc["errors"]) == ([], [], [])
    picked = [t for t in cache.tasks.values() if gone(t)]
    for g in doc["groups"]:
        # A preview names each group's oldest row; a real run's groups are what went.
        mine = [t.updated_at for t in picked if t.function == g["function"]]
        want = min(mine) if mine and dry_run else None
        assert instant(g["oldest"]) == want, g
    first = sorted(picked, key=lambda t: (t.updated_at, t.key))[:5]
    for o in doc["oldest"]:
        assert set(o) == OLDEST_KEYS, o
    assert [(o["cache_key"], o["function"], instant(o["updated_at"])) for o in doc["oldest"]] == [
        (t.key, t.function, t.updated_at) for t in first
    ]


def kept_keys(cache: Cache, gone: Callable[[Task], bool]) -> set[str]:
    return {k for k, t in cache.tasks.items() if not gone(t)}


def kept_blobs(cache: Cache, gone: Callable[[Task], bool], orphans=()) -> set[str]:
    return {t.location for t in cache.tasks.values() if t.file and not gone(t)} | set(orphans)


ALL_ORPHANS = (*OLD_ORPHANS, YOUNG_ORPHAN)


def summary_line(doc: dict) -> str:
    t = doc["totals"]
    return f"would delete {t['rows']} tasks and {t['files']} blob files"


def prefix_of(cache: Cache, key: str, n: int = 12) -> str:
    assert sum(k.startswith(key[:n]) for k in cache.tasks) == 1
    return key[:n]


def ambiguous_prefix(keys) -> tuple[str, list[str]]:
    """A one-character prefix at least two of *keys* share, and those keys."""
    for c in "0123456789abcdef":
        hits = sorted(k for k in keys if k.startswith(c))
        if len(hits) >= 2:
            return c, hits
    raise AssertionError("no shared prefix")


def pick(cache: Cache, *, file: bool, expired: bool | None) -> Task:
    for t in cache.tasks.values():
        if t.file != file:
            continue
        if expired is None and t.expires_at is None:
            return t
        if expired is not None and t.expires_at is not None and t.expired(cache.now) == expired:
            return t
    raise AssertionError("the design has no such task")


# --------------------------------------------------------------------------- the design


def test_design_covers_every_combination(cache: Cache) -> None:
    """The cache as built holds what the design says, in every combination the cases need."""
    now, tasks = cache.now, cache.tasks.values()
    assert cache.keys() == set(cache.tasks)
    assert cache.blobs() == {t.location for t in tasks if t.file} | set(ALL_ORPHANS)
    combos = {(t.file, t.expired(now), t.updated_at < now - dt.timedelta(days=30)) for t in tasks}
    assert len(combos) == 8, combos
    assert any(t.expires_at is None for t in tasks)
    assert {t.function for t in tasks} == {ASK, EMBED, RENDER}


# --------------------------------------------------------------------------- gc


def test_gc_dry_run_previews_exactly_and_deletes_nothing(cache: Cache) -> None:
    expired = lambda t: t.expired(cache.now)  # noqa: E731
    before = cache.state()
    doc = doc_of(cache.run("gc", "--dry-run", "--json", "--grace", GRACE))
    groups = expected_groups(cache, expired, "expired") + [orphan_group(OLD_ORPHANS)]
    check_plan(cache, doc, "gc", dry_run=True, groups=groups, gone=expired)
    assert (doc["grace_seconds"], doc["cutoff"], doc["func"]) == (GRACE_SECONDS, None, None)
    assert doc["totals"]["rows"] == 16 and doc["totals"]["files"] == 6
    table = ok(cache.run("gc", "--dry-run", "--grace", GRACE))
    assert summary_line(doc) in table.stdout, table.describe()
    assert cache.state() == before


def test_gc_deletes_exactly_the_plan(cache: Cache) -> None:
    expired = lambda t: t.expired(cache.now)  # noqa: E731
    plan = doc_of(cache.run("gc", "--dry-run", "--json", "--grace", GRACE))
    young = cache.blob_bytes(YOUNG_ORPHAN)
    live_blobs = {t.location: t.payload for t in cache.tasks.values() if t.file and not expired(t)}
    doc = doc_of(cache.run("gc", "--json", "--grace", GRACE))
    groups = expected_groups(cache, expired, "expired") + [orphan_group(OLD_ORPHANS)]
    check_plan(cache, doc, "gc", dry_run=False, groups=groups, gone=expired)
    assert bare(doc["groups"]) == bare(plan["groups"]) and doc["totals"] == plan["totals"]
    assert cache.keys() == kept_keys(cache, expired)
    assert cache.blobs() == set(live_blobs) | {YOUNG_ORPHAN}
    assert cache.blob_bytes(YOUNG_ORPHAN) == young
    for location, payload in live_blobs.items():
        assert cache.blob_bytes(location) == payload
    again = doc_of(cache.run("gc", "--json", "--grace", GRACE))
    assert (again["totals"], again["groups"]) == (NOTHING, [])


@pytest.mark.parametrize("grace", [None, "1000d"])
def test_gc_grace_keeps_young_orphans(cache: Cache, grace: str | None) -> None:
    """The default grace (1h), or a long one, keeps every orphan (all a few seconds old)."""
    expired = lambda t: t.expired(cache.now)  # noqa: E731
    args = [] if grace is None else ["--grace", grace]
    plan = doc_of(cache.run("gc", "--dry-run", "--json", *args))
    groups = expected_groups(cache, expired, "expired")
    check_plan(cache, plan, "gc", dry_run=True, groups=groups, gone=expired)
    assert plan["grace_seconds"] == (3600 if grace is None else 1000 * 86400)
    doc = doc_of(cache.run("gc", "--json", *args))
    check_plan(cache, doc, "gc", dry_run=False, groups=groups, gone=expired)
    assert cache.keys() == kept_keys(cache, expired)
    assert cache.blobs() == kept_blobs(cache, expired, ALL_ORPHANS)


# --------------------------------------------------------------------------- prune / clear


def test_prune_older_than_dry_run_then_yes(cache: Cache) -> None:
    cutoff = cache.now - dt.timedelta(days=30)
    old = lambda t: t.updated_at < cutoff  # noqa: E731
    before = cache.state()
    plan = doc_of(cache.run("prune", "--older-than", "30d", "--dry-run", "--json"))
    groups = expected_groups(cache, old, "older than cutoff")
    check_plan(cache, plan, "prune", dry_run=True, groups=groups, gone=old)
    assert instant(plan["cutoff"]) == cutoff and plan["func"] is None
    table = ok(cache.run("prune", "--older-than", "30d", "--dry-run"))
    assert summary_line(plan) in table.stdout, table.describe()
    assert cache.state() == before
    doc = doc_of(cache.run("prune", "--older-than", "30d", "--yes", "--json"))
    check_plan(cache, doc, "prune", dry_run=False, groups=groups, gone=old)
    assert cache.keys() == kept_keys(cache, old)
    assert cache.blobs() == kept_blobs(cache, old, ALL_ORPHANS)  # prune sweeps no orphan


@pytest.mark.parametrize("func", ["ask", ASK])
def test_prune_one_function(cache: Cache, func: str) -> None:
    """``--func`` takes the short or the qualified name."""
    cutoff = cache.now - dt.timedelta(days=30)
    gone = lambda t: t.updated_at < cutoff and t.function == ASK  # noqa: E731
    args = ("prune", "--older-than", "30d", "--func", func)
    plan = doc_of(cache.run(*args, "--dry-run", "--json"))
    groups = expected_groups(cache, gone, "older than cutoff")
    assert [g["function"] for g in groups] == [ASK]
    check_plan(cache, plan, "prune", dry_run=True, groups=groups, gone=gone)
    assert plan["func"] == func
    doc = doc_of(cache.run(*args, "--yes", "--json"))
    check_plan(cache, doc, "prune", dry_run=False, groups=groups, gone=gone)
    assert cache.keys() == kept_keys(cache, gone)
    assert cache.blobs() == kept_blobs(cache, gone, ALL_ORPHANS)


def test_clear_one_function(cache: Cache) -> None:
    gone = lambda t: t.function == RENDER  # noqa: E731
    before = cache.state()
    plan = doc_of(cache.run("clear", "--func", RENDER, "--dry-run", "--json"))
    groups = expected_groups(cache, gone, "cleared")
    check_plan(cache, plan, "clear", dry_run=True, groups=groups, gone=gone)
    assert cache.state() == before
    doc = doc_of(cache.run("clear", "--func", RENDER, "--yes", "--json"))
    check_plan(cache, doc, "clear", dry_run=False, groups=groups, gone=gone)
    assert cache.keys() == kept_keys(cache, gone)
    assert cache.blobs() == kept_blobs(cache, gone, ALL_ORPHANS)


def test_clear_everything_then_gc_collects_old_orphans(cache: Cache) -> None:
    every = lambda t: True  # noqa: E731
    doc = doc_of(cache.run("clear", "--yes", "--json"))
    check_plan(cache, doc, "clear", dry_run=False, gone=every,
               groups=expected_groups(cache, every, "cleared"))  # fmt: skip
    assert cache.keys() == set()
    assert cache.blobs() == set(ALL_ORPHANS)
    gc = doc_of(cache.run("gc", "--json", "--grace", GRACE))
    if cache.kind == "sqlite":
        assert bare(gc["groups"]) == [orphan_group(OLD_ORPHANS)]
        assert cache.blobs() == {YOUNG_ORPHAN}
        return
    # A server DB's --blobs is only taken for its own store while its rows name blobs
    # in it (docs/scale-out.md): an empty DB collects no orphans, and says why.
    assert gc["groups"] == [] and cache.blobs() == set(ALL_ORPHANS)
    assert len(gc["warnings"]) == 1 and "not collected as orphans" in gc["warnings"][0]


# --------------------------------------------------------------------------- rm


def test_rm_keys_by_key_and_unique_prefix(cache: Cache) -> None:
    a = pick(cache, file=True, expired=False)
    b = pick(cache, file=False, expired=True)
    gone = lambda t: t.key in (a.key, b.key)  # noqa: E731
    before = cache.state()
    plan = doc_of(cache.run("rm", a.key, prefix_of(cache, b.key), "--dry-run", "--json"))
    groups = expected_groups(cache, gone, "removed")
    check_plan(cache, plan, "rm", dry_run=True, groups=groups, gone=gone)
    assert cache.state() == before
    doc = doc_of(cache.run("rm", a.key, prefix_of(cache, b.key), "--yes", "--json"))
    check_plan(cache, doc, "rm", dry_run=False, groups=groups, gone=gone)
    assert cache.keys() == kept_keys(cache, gone)
    assert cache.blobs() == kept_blobs(cache, gone, ALL_ORPHANS)


def test_rm_ambiguous_or_unknown_deletes_nothing(cache: Cache) -> None:
    prefix, hits = ambiguous_prefix(cache.tasks)
    other = next(k for k in cache.tasks if not k.startswith(prefix))
    before = cache.state()
    r = cache.run("rm", other, prefix, "--yes")
    assert r.returncode == 2, r.describe()
    line = one_line_error(r)
    assert f"{prefix!r} matches {len(hits)} tasks" in line, line
    for key in hits:
        assert key in r.stdout + r.stderr, r.describe()
    unknown = cache.run("rm", other, "zz-no-such-key", "--yes")
    assert unknown.returncode == 1, unknown.describe()
    assert "zz-no-such-key" in one_line_error(unknown)
    assert cache.state() == before


# --------------------------------------------------------------------------- ls / show


def newest_first(cache: Cache, tasks=None) -> list[str]:
    tasks = cache.tasks.values() if tasks is None else tasks
    return [t.key for t in sorted(tasks, key=lambda t: t.updated_at, reverse=True)]


def check_ls_entry(cache: Cache, entry: dict) -> None:
    t = cache.tasks[entry["cache_key"]]
    assert set(entry) == LS_TASK_KEYS, entry
    assert entry["function"] == t.function
    assert entry["result_type"] == t.result_type
    assert entry["result_value"] == t.location
    assert entry["data_bytes"] == (None if t.file else len(t.payload))
    assert entry["version"] == "v1"
    assert instant(entry["updated_at"]) == t.updated_at
    assert instant(entry["expires_at"]) == t.expires_at


def test_ls_json_filters_and_limit(cache: Cache) -> None:
    doc = doc_of(cache.run("ls", "--json"))
    assert set(doc) == {"db", "path", "tasks"}
    assert [e["cache_key"] for e in doc["tasks"]] == newest_first(cache)
    for entry in doc["tasks"]:
        check_ls_entry(cache, entry)
    five = doc_of(cache.run("ls", "--json", "--limit", "5"))
    assert five["tasks"] == doc["tasks"][:5]
    asks = doc_of(cache.run("ls", "--json", "--func", "ask"))
    assert [e["cache_key"] for e in asks["tasks"]] == newest_first(
        cache, [t for t in cache.tasks.values() if t.function == ASK]
    )
    exp = doc_of(cache.run("ls", "--json", "--expired"))
    assert [e["cache_key"] for e in exp["tasks"]] == newest_first(
        cache, [t for t in cache.tasks.values() if t.expired(cache.now)]
    )
    table = ok(cache.run("ls", "--limit", "5"))
    shown = [line.split()[0] for line in table.stdout.splitlines() if line[:64] in cache.tasks]
    assert shown == newest_first(cache)[:5], table.describe()


SHOWN = [
    ({"file": True, "expired": False}, "live"),
    ({"file": True, "expired": True}, "expired"),
    ({"file": False, "expired": True}, "expired"),
    ({"file": False, "expired": None}, "no expiry"),
]


def test_show_json(cache: Cache) -> None:
    """A live and an expired FILE row, an expired inline row, one that never expires."""
    for kind, state in SHOWN:
        t = pick(cache, **kind)
        doc = doc_of(cache.run("show", prefix_of(cache, t.key), "--json"))
        assert set(doc) == SHOW_KEYS, doc
        assert (doc["cache_key"], doc["function"], doc["func_name"]) == (
            t.key, t.function, t.name,
        )  # fmt: skip
        assert (doc["result_type"], doc["result_value"], doc["version"]) == (
            t.result_type, t.location, "v1",
        )  # fmt: skip
        assert doc["state"] == state, (kind, doc)
        assert instant(doc["updated_at"]) == t.updated_at
        assert instant(doc["expires_at"]) == t.expires_at
        assert doc["payload_bytes"] == len(t.payload)
        assert (doc["blob_error"], doc["decode_error"]) == (None, None)
        if t.file:
            assert doc["blob_bytes"] == len(t.payload)
            assert doc["blob_path"].endswith("/" + t.location)
        else:
            assert (doc["blob_bytes"], doc["blob_path"]) == (None, None)
        assert f'"function": "{t.function}"' in doc["preview"]
    prefix, hits = ambiguous_prefix(cache.tasks)
    r = cache.run("show", prefix, "--json")
    assert r.returncode == 2 and not r.traceback, r.describe()
    doc = json.loads(r.stdout)
    assert doc["error"] == "ambiguous"
    assert sorted(c["cache_key"] for c in doc["candidates"]) == hits


# --------------------------------------------------------------------------- refusals


def test_destructive_without_yes_off_a_terminal_refuses(cache: Cache) -> None:
    """prune, clear (all, one function) and rm, in table and JSON form: exit 2, one error
    line naming --yes, empty stdout for --json, nothing deleted."""
    key = next(iter(cache.tasks))
    before = cache.state()
    for args in (["prune", "--older-than", "30d"], ["clear"], ["clear", "--func", ASK],
                 ["rm", key]):  # fmt: skip
        for extra in ([], ["--json"]):
            r = cache.run(*args, *extra)
            assert r.returncode == 2, r.describe()
            assert "--yes" in one_line_error(r)
            if extra:
                assert r.stdout == "", r.describe()
            assert cache.state() == before, args


# --------------------------------------------------------------------------- both at once


def normalized(doc: Any, cache: Cache) -> Any:
    """*doc* without what names the backend: DB name and path, blob paths (to their
    location), and timestamps (to instants; their text is compared apart, in
    test_group_oldest_text_is_the_same_on_both_backends)."""
    if isinstance(doc, list):
        return [normalized(v, cache) for v in doc]
    if not isinstance(doc, dict):
        return doc
    out = {}
    for k, v in doc.items():
        if k == "db" and isinstance(v, str):
            v = "<db>"
        elif k == "path" and isinstance(v, str):
            v = v.rsplit("/", 1)[-1] if v.endswith(".bin") else "<path>"
        elif k == "blob_path" and v is not None:
            v = v.rsplit("/", 1)[-1]
        elif k in ("oldest", "updated_at", "expires_at", "now", "cutoff") and isinstance(v, str):
            v = instant(v)
        else:
            v = normalized(v, cache)
        out[k] = v
    return out


def test_same_documents_on_both_backends(both: tuple[Cache, Cache]) -> None:
    """Every command's JSON document is the same on both, but for the names of the DB."""
    lite, pg = both
    assert lite.now == pg.now and lite.tasks == pg.tasks
    file_live = pick(lite, file=True, expired=False)
    inline = pick(lite, file=False, expired=True)
    prefix, _hits = ambiguous_prefix(lite.tasks)
    steps: list[tuple[tuple, int]] = [
        (("gc", "--dry-run", "--json", "--grace", GRACE), 0),
        (("gc", "--dry-run", "--json"), 0),
        (("prune", "--older-than", "30d", "--dry-run", "--json"), 0),
        (("prune", "--older-than", "30d", "--func", "ask", "--dry-run", "--json"), 0),
        (("clear", "--func", RENDER, "--dry-run", "--json"), 0),
        (("clear", "--dry-run", "--json"), 0),
        (("rm", file_live.key, inline.key, "--dry-run", "--json"), 0),
        (("ls", "--json"), 0),
        (("ls", "--json", "--limit", "5", "--func", EMBED), 0),
        (("show", file_live.key, "--json"), 0),
        (("show", inline.key[:10], "--json"), 0),
        (("show", prefix, "--json"), 2),
        (("gc", "--json", "--grace", GRACE), 0),
        (("gc", "--json", "--grace", GRACE), 0),
        (("prune", "--older-than", "30d", "--func", EMBED, "--yes", "--json"), 0),
        (("rm", file_live.key, "--yes", "--json"), 0),
        (("clear", "--func", ASK, "--yes", "--json"), 0),
        (("ls", "--json"), 0),
    ]
    for args, code in steps:
        a = json.loads(ok(lite.run(*args), code).stdout)
        b = json.loads(ok(pg.run(*args), code).stdout)
        assert normalized(a, lite) == normalized(b, pg), args
        assert lite.state() == pg.state(), args


def test_group_oldest_text_is_the_same_on_both_backends(both: tuple[Cache, Cache]) -> None:
    lite, pg = both
    args = ("gc", "--dry-run", "--json", "--grace", GRACE)
    a = doc_of(lite.run(*args))["groups"]
    b = doc_of(pg.run(*args))["groups"]
    assert [g["oldest"] for g in a] == [g["oldest"] for g in b]


# --------------------------------------------------------------------------- safety


def test_blob_named_by_a_row_that_stays_is_kept(cache: Cache) -> None:
    """Two rows name one blob: deleting one of them never takes the blob."""
    now = cache.now
    shared = cache.storage.save("shared", b"shared payload")
    pair = cache.storage.save("pair", b"both rows expire")
    day = dt.timedelta(days=1)
    rows = {
        "s-expired": (EMBED, shared, now - day),
        "s-live": (ASK, shared, now + 30 * day),
        "p-expired-1": (EMBED, pair, now - day),
        "p-expired-2": (RENDER, pair, now - day),
    }
    for key, (function, location, expires) in rows.items():
        cache.save_raw(key, function, location=location, payload=b"", expires_at=expires,
                       updated_at=now - 2 * day)  # fmt: skip
    expired = lambda t: t.expired(now)  # noqa: E731
    base = expected_groups(cache, expired, "expired")
    doc = doc_of(cache.run("gc", "--json", "--grace", GRACE))
    # 3 more rows; one more file (the pair's blob), besides the old orphans.
    assert doc["totals"]["rows"] == totals_of(base)["rows"] + 3
    assert doc["totals"]["files"] == totals_of(base)["files"] + 1 + len(OLD_ORPHANS)
    keys, blobs = cache.state()
    assert keys == kept_keys(cache, expired) | {"s-live"}
    assert shared in blobs and pair not in blobs
    assert cache.blob_bytes(shared) == b"shared payload"
    assert doc["kept"] == []
    # Now the last row naming it goes: so does the blob.
    cleared = doc_of(cache.run("clear", "--func", ASK, "--yes", "--json"))
    assert shared not in cache.blobs()
    assert sum(g["files"] for g in cleared["groups"]) == (
        sum(t.file for t in cache.tasks.values() if t.function == ASK and not expired(t)) + 1
    )


HOOK = r"""
import json, sys

import beautyspot.remote as remote
from beautyspot.postgres import PostgresTaskDB
from beautyspot.s3storage import S3Storage

spec = json.loads(sys.argv[1])
original = remote._Store.listing


def listing(self):
    seen = original(self)
    store = S3Storage.from_url(spec["blobs"])
    for location, data in spec["rewrite"].items():
        store.save(location[: -len(".bin")], data.encode())
    if spec["resave"]:
        db = PostgresTaskDB(spec["db"])
        for args in spec["resave"]:
            db.save(*args)
        db.shutdown()
    return seen


remote._Store.listing = listing
from beautyspot.cli.entry import main

sys.argv = ["beautyspot", *sys.argv[2:]]
main()
"""


def test_blob_rewritten_after_the_plan_is_kept(server: Cache) -> None:
    """Right after the real run's plan listed the store, a writer rewrites the blob of an
    expired row, and re-saves another expired row (live now) with its blob: the first row
    goes but its new blob stays ("changed since the plan"), the second row and blob stay."""
    c = server
    expired = lambda t: t.expired(c.now)  # noqa: E731
    victims = [t for t in c.tasks.values() if t.file and expired(t)]
    rewritten, resaved = victims[0], victims[1]
    new_expiry = (c.now + dt.timedelta(days=30)).isoformat()
    spec = {
        "blobs": f"s3://{c.bucket}/{S3_PREFIX}",
        "db": c.url,
        "rewrite": {rewritten.location: "rewritten, longer", resaved.location: "re-saved"},
        "resave": [
            [resaved.key, resaved.name, resaved.function, resaved.input_id, "v2", "FILE",
             "application/msgpack", resaved.location, None, new_expiry],
        ],
    }  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", HOOK, json.dumps(spec), "gc", "--json", "--grace", GRACE,
         *c.target],
        capture_output=True, text=True, env=c.env, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    spared = {rewritten.key, resaved.key}
    deleted = [t for t in c.tasks.values() if expired(t) and t.key != resaved.key]
    assert doc["totals"]["rows"] == len(deleted)
    assert doc["totals"]["files"] == sum(t.file for t in deleted) - 1 + len(OLD_ORPHANS)
    shown = f"s3://{c.bucket}/{S3_PREFIX}/{rewritten.location}"
    assert doc["kept"] == [{"path": shown, "why": "changed since the plan"}]
    keys, blobs = c.state()
    assert keys == kept_keys(c, expired) | {resaved.key}
    assert blobs == kept_blobs(c, lambda t: expired(t) and t.key not in spared, [YOUNG_ORPHAN])
    assert c.blob_bytes(rewritten.location) == b"rewritten, longer"
    assert c.blob_bytes(resaved.location) == b"re-saved"


def test_gc_without_or_with_a_wrong_blobs_deletes_nothing(server: Cache) -> None:
    c = server
    before = c.state()
    no_blobs = ["--db", c.url]
    missing = ["--db", c.url, "--blobs", f"s3://bs-missing-{uuid.uuid4().hex[:12]}/{S3_PREFIX}"]
    cases = [
        (["gc", "--grace", GRACE, *no_blobs], "--blobs"),
        (["gc", "--json", *no_blobs], "--blobs"),
        (["gc", "--dry-run", "--grace", GRACE, *no_blobs], "--blobs"),
        (["prune", "--older-than", "30d", "--yes", *no_blobs], "--blobs"),
        (["clear", "--yes", *no_blobs], "--blobs"),
        (["gc", "--grace", GRACE, *missing], "bs-missing-"),
        (["gc", "--json", *missing], "bs-missing-"),
        (["prune", "--older-than", "30d", "--yes", *missing], "bs-missing-"),
    ]
    for args, says in cases:
        r = relkit.run(args, env=c.env, timeout=120)
        assert r.returncode != 0, r.describe()
        assert says in one_line_error(r), r.describe()
        assert c.state() == before, args


# --------------------------------------------------------------------------- the lock


def test_maintenance_lock_held_elsewhere(server: Cache) -> None:
    from beautyspot.pgreader import PostgresReader
    from beautyspot.postgres import PostgresTaskDB

    c = server
    blobs = f"s3://{c.bucket}/{S3_PREFIX}"
    before = c.state()
    key = next(iter(c.tasks))
    commands = [
        ["gc", "--grace", GRACE],
        ["gc", "--json"],
        ["prune", "--older-than", "30d", "--yes"],
        ["clear", "--func", ASK, "--yes"],
        ["rm", key, "--yes"],
    ]
    with PostgresReader(c.url, writable=True) as holder, holder.maintenance_lock(10):
        pid = holder.conn.info.backend_pid
        for command in commands:
            r = relkit.run(["--timeout", "1", "--db", c.url, "--blobs", blobs, *command],
                           env=c.env, timeout=60)  # fmt: skip
            assert r.returncode == 1, r.describe()
            line = one_line_error(r)
            assert "another maintenance run holds the lock" in line, line
            assert f"server pid {pid}" in line, line
            assert r.seconds < 20, r.describe()
            assert c.state() == before, command
    with PostgresTaskDB(c.url).maintenance_lock():
        r = relkit.run(["--timeout", "1", "--db", c.url, "--blobs", blobs, "gc"], env=c.env)
        assert r.returncode == 1 and "another maintenance run holds the lock" in (
            one_line_error(r)
        ), r.describe()
        assert c.state() == before
    expired = lambda t: t.expired(c.now)  # noqa: E731
    doc = doc_of(relkit.run(["--timeout", "1", "--db", c.url, "--blobs", blobs, "gc", "--json",
                             "--grace", GRACE], env=c.env))  # fmt: skip
    groups = expected_groups(c, expired, "expired") + [orphan_group(OLD_ORPHANS)]
    check_plan(c, doc, "gc", dry_run=False, groups=groups, gone=expired)
    assert c.state() == (kept_keys(c, expired), kept_blobs(c, expired, [YOUNG_ORPHAN]))


# --------------------------------------------------------------------------- writers


WRITER = r"""
import datetime as dt, json, sys, time

from beautyspot.postgres import PostgresTaskDB
from beautyspot.s3storage import S3Storage

url, blobs = sys.argv[1:3]
wid, n_rows, pause = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
db = PostgresTaskDB(url, pool_size=2)
store = S3Storage.from_url(blobs)
out = {"live": [], "expired": [], "files": {}}
for i in range(n_rows):
    key = f"w{wid}-{i:04d}"
    expired = i % 13 in (3, 7, 11)
    payload = json.dumps({"writer": wid, "i": i}).encode()
    location = store.save(key, payload) if i % 4 == 0 else None
    now = dt.datetime.now(dt.timezone.utc)
    if expired:
        expires = now - dt.timedelta(minutes=1)
    elif i % 10 == 5:
        expires = None
    else:
        expires = now + dt.timedelta(days=30)
    db.save(key, "work", f"app.writer{wid}", f"in-{i}", "v1",
            "FILE" if location else "DIRECT_BLOB", "application/json",
            result_value=location, result_data=None if location else payload,
            expires_at=expires)
    out["expired" if expired else "live"].append(key)
    if location:
        out["files"][key] = location
    time.sleep(pause)
db.shutdown()
print(json.dumps(out))
"""
WRITERS = 3
WRITER_ROWS = 260  # 60 of them expired at once
WRITER_PAUSE = 0.02


def test_writer_processes_while_gc_runs(pg_url, s3_server, s3_client, s3_bucket) -> None:
    from beautyspot.postgres import PostgresTaskDB

    blobs = f"s3://{s3_bucket}/{S3_PREFIX}"
    PostgresTaskDB(pg_url).shutdown()  # the schema, before gc looks at the DB
    env = relkit.cli_env(now=None, BEAUTYSPOT_S3_ENDPOINT=s3_server.endpoint_url, **FAKE_ENV)
    target = ["--db", pg_url, "--blobs", blobs]
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                pg_url,
                blobs,
                str(w),
                str(WRITER_ROWS),
                str(WRITER_PAUSE),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )  # fmt: skip
        for w in range(WRITERS)
    ]
    runs: list[tuple[bool, relkit.Run]] = []
    try:
        deadline = time.monotonic() + 60
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not conn.execute("SELECT count(*) FROM tasks").fetchone()[0]:
                assert time.monotonic() < deadline, "no writer wrote anything"
                assert all(w.poll() is None for w in writers), "a writer died early"
                time.sleep(0.05)
        for n in range(5):
            alive = any(w.poll() is None for w in writers)
            if not alive and n >= 3:
                break
            grace = ["--grace", "10s"] if n % 2 else []
            runs.append((alive, relkit.run(["gc", "--json", *grace, *target], env=env,
                                           timeout=60)))  # fmt: skip
        results = [w.communicate(timeout=120) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=10)
    for w, (_out, err) in zip(writers, results, strict=True):
        assert w.returncode == 0 and err.strip() == "", err
    written = [json.loads(out) for out, _err in results]
    live = {k for d in written for k in d["live"]}
    gone = {k for d in written for k in d["expired"]}
    files = {k: v for d in written for k, v in d["files"].items()}
    assert len(live) == WRITERS * 200 and len(gone) == WRITERS * 60
    final = relkit.run(["gc", "--json", *target], env=env, timeout=60)
    runs.append((False, final))
    docs = []
    for _alive, r in runs:
        docs.append(doc_of(r))
        assert docs[-1]["errors"] == [] and docs[-1]["warnings"] == [], r.describe()
    assert sum(alive for alive, _r in runs) >= 2, "gc never overlapped the writers"
    during = sum(
        g["rows"] for (alive, _r), d in zip(runs, docs, strict=True) if alive for g in d["groups"]
    )
    assert during > 0, "no gc deleted anything while the writers ran"
    # Each expired row deleted exactly once (and nothing else), each of their blobs too.
    deleted = {}
    for doc in docs:
        for g in doc["groups"]:
            acc = deleted.setdefault(g["reason"], [0, 0])
            acc[0] += g["rows"]
            acc[1] += g["files"]
    assert deleted == {"expired": [len(gone), sum(k in files for k in gone)]}, docs
    # Read back with cachekit's readers (plain SQL and S3 listing); no design, no writer.
    c = Cache(
        "postgres", dt.datetime.now(dt.timezone.utc), tasks={}, env=env, target=target,
        db=None, storage=None, clock=None, url=pg_url, bucket=s3_bucket, s3_client=s3_client,
    )  # fmt: skip
    assert c.keys() == live
    assert c.blobs() == {files[k] for k in live if k in files}
    for d in written:
        key = d["live"][0] if d["live"][0] in files else next(k for k in d["live"] if k in files)
        wid, i = int(key[1]), int(key[3:])
        expected = json.dumps({"writer": wid, "i": i}).encode()
        assert (
            c.s3_client.get_object(Bucket=s3_bucket, Key=f"{S3_PREFIX}/{files[key]}")["Body"].read()
            == expected
        )
