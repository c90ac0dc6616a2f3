"""Maintenance core: reports, deletion plans, and their execution.

No Typer or Rich here.  A *plan* (``plan_gc``, ``plan_prune``, ``plan_clear``,
``plan_rm``) is frozen data: which rows (as a :class:`~beautyspot.sql.RowFilter`
with ``now`` and the cutoff fixed), which files (with the size and mtime seen),
and how many bytes that frees.  ``--dry-run`` renders a plan; the real run calls
:func:`execute` on that same plan, which follows the safety rules of SPEC §6:

* rows go first, in committed batches;
* a blob file is unlinked only after its rows are gone, and only if, just before,
  no row names it and its size and mtime are still what the plan saw; it is first
  renamed aside and its inode checked, so a writer's atomic re-save in between is
  put back, never lost;
* orphans and temp files younger than the grace period are kept (a writer saves
  the blob before its row);
* a DB that cannot be read is reported and its blob directory is left alone.

"Bytes" are payload bytes: blob file sizes plus inline ``result_data`` sizes.  The
DB file itself does not shrink until SQLite reuses or vacuums the pages.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import errno
import heapq
import json
import os
import posixpath
import sqlite3
import stat as stat_mod
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import sql as q
from .db import TaskReader, describe_sqlite_error
from .errors import BeautySpotError, DBError, LockHeldError, UnsafePathError, UsageError
from .lookup import DBFailure, TaskDetail, find_tasks, load_detail  # noqa: F401 (re-export)
from .readonly import file_uri
from .storage import BLOB_SUFFIX, LocalStorage
from .timeutil import from_instant, parse_instant, to_instant, utc_text
from .workspace import DBEntry, Workspace, ZombieDir, is_remote

EXPIRED = "expired"
OLDER = "older than cutoff"
CLEARED = "cleared"
REMOVED = "removed"
ORPHAN = "orphan"
TEMP = "stale temp file"
ZOMBIE = "zombie dir"
OVER_BUDGET = "over budget"
DANGLING = "dangling"

OLDEST_SHOWN = 5
WRITE_CACHE_KIB = 16 * 1024  # page cache of the deleting connection
# A whole-table pass (plain clear) on a DB up to this size is one DELETE, SQLite's
# truncate (~0.7 s for 577 MB here); bigger ones go in batches, whose locks stay short.
TRUNCATE_MAX_BYTES = 1 << 30
SQLITE_AUTOCHECKPOINT = 1000  # SQLite's default wal_autocheckpoint (pages)
WRITER_GAP = 0.1  # seconds between batches while another connection writes
WRITER_BATCHES = 5  # batches that a writer's last commit keeps those gaps for

Progress = Callable[[int], None]


def _no_progress(n: int) -> None:
    return None


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Group:
    """Rows and files of one DB, function and reason (a line of the preview table)."""

    db: str
    function: str
    reason: str
    rows: int = 0
    files: int = 0
    bytes: int = 0
    oldest: str | None = None


@dataclass(frozen=True)
class PlannedFile:
    """A file the plan deletes, with what it looked like when planned."""

    db: str
    path: str
    location: str
    reason: str
    size: int
    mtime_ns: int
    ino: int
    function: str = "-"


@dataclass(frozen=True)
class PlannedFiles:
    """The files one DB's plan deletes, column by column, sorted by location.

    A million-row ``clear`` plans ~100k blob files: a :class:`PlannedFile` each (with
    its path string) held ~60 MB; these columns hold a fifth of that.  The path is
    derived from the location when needed (:func:`_entry_path`).  ``kinds`` indexes
    ``kind_table``: the (function, reason) of each file.
    """

    db: str
    blob_dir: str
    locations: tuple[str, ...] = ()
    sizes: array = field(default_factory=lambda: array("q"))
    mtimes_ns: array = field(default_factory=lambda: array("q"))
    inodes: array = field(default_factory=lambda: array("Q"))
    kinds: array = field(default_factory=lambda: array("I"))
    kind_table: tuple[tuple[str, str], ...] = ()

    @classmethod
    def build(cls, db: str, blob_dir: str, items: list[tuple]) -> PlannedFiles:
        """From (location, size, mtime_ns, ino, function, reason) tuples (any order)."""
        items.sort(key=lambda t: t[0])
        table: dict[tuple[str, str], int] = {}
        kinds = array("I", (table.setdefault((t[4], t[5]), len(table)) for t in items))
        return cls(
            db,
            blob_dir,
            tuple(t[0] for t in items),
            array("q", (t[1] for t in items)),
            array("q", (t[2] for t in items)),
            array("Q", (t[3] for t in items)),
            kinds,
            tuple(table),
        )

    def __len__(self) -> int:
        return len(self.locations)

    def kind(self, i: int) -> tuple[str, str]:
        """(function, reason) of file *i*."""
        return self.kind_table[self.kinds[i]]

    def find(self, location: str) -> int:
        """Index of *location*, or -1."""
        i = bisect.bisect_left(self.locations, location)
        return i if i < len(self.locations) and self.locations[i] == location else -1

    def __getitem__(self, i: int) -> PlannedFile:
        function, reason = self.kind(i)
        location = self.locations[i]
        return PlannedFile(
            self.db,
            str(_entry_path(LocalStorage(self.blob_dir), location)),
            location,
            reason,
            self.sizes[i],
            self.mtimes_ns[i],
            self.inodes[i],
            function,
        )

    def __iter__(self) -> Iterator[PlannedFile]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True)
class RowPass:
    """One sweep of rows: which (``rfilter``) and why (``reason``).

    ``only_dangling``: at execution, a row is deleted only if its blob is still
    missing (``verify --fix``: a writer may have re-saved the key meanwhile).
    """

    reason: str
    rfilter: q.RowFilter
    only_dangling: bool = False
    # A server DB's plan (beautyspot.remote): rows last written after this instant (µs),
    # the plan's `now`, are not the plan's.  (A SQLite plan bounds rowids instead.)
    written_before: int | None = None


@dataclass(frozen=True)
class DBPlan:
    name: str
    path: str
    blob_dir: str
    passes: tuple[RowPass, ...]
    groups: tuple[Group, ...]
    files: PlannedFiles
    oldest: tuple[tuple[str, str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    sharers: tuple[str, ...] = ()  # other DBs using blob_dir (DBEntry.sharers)

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)


@dataclass(frozen=True)
class ZombiePlan:
    name: str
    path: str
    files: tuple[PlannedFile, ...]
    kept: int  # files too young (or not blobs) that keep the directory alive


class _Totals:
    """rows, files and bytes summed over ``groups`` (a plan's, or a result's)."""

    groups: tuple[Group, ...] | list[Group]

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)

    @property
    def files(self) -> int:
        return sum(g.files for g in self.groups)

    @property
    def bytes(self) -> int:
        return sum(g.bytes for g in self.groups)


@dataclass(frozen=True)
class Plan(_Totals):
    """Everything a maintenance command would delete, fixed at planning time."""

    command: str
    now: dt.datetime
    cutoff: dt.datetime | None
    grace_seconds: float | None
    func: str | None
    dbs: tuple[DBPlan, ...]
    zombies: tuple[ZombiePlan, ...] = ()
    failures: tuple[DBFailure, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def groups(self) -> list[Group]:
        out = [g for d in self.dbs for g in d.groups]
        for z in self.zombies:
            if z.files:
                out.append(
                    Group(z.name, "-", ZOMBIE, 0, len(z.files), sum(f.size for f in z.files))
                )
        return out


@dataclass(frozen=True)
class Result(_Totals):
    """What :func:`execute` did; ``groups`` mirror the plan's, with real numbers."""

    command: str
    groups: tuple[Group, ...]
    kept: tuple[tuple[str, str], ...]  # (path, why the planned file was kept)
    failures: tuple[DBFailure, ...]
    dirs_removed: int = 0
    truncated: tuple[str, ...] = ()  # DBs a whole-table pass emptied in one statement


@dataclass(frozen=True)
class Budget:
    """``gc --max-size/--max-entries``: evict least recently updated tasks past these.

    Size is payload bytes (blob files plus inline results) of the tasks that stay.
    Tasks with an unparsable updated_at are never old: they are evicted last.
    """

    max_bytes: int | None = None
    max_entries: int | None = None
    per_db: bool = False


# --------------------------------------------------------------------------- helpers


def normalize_location(location: object) -> str | None:
    """A DB's blob location as a relative POSIX path, or None if it cannot be one.

    Safe or not is decided as :class:`LocalStorage` decides it (``\\`` counts as a
    separator there, so ``..\\x.bin`` from a DB written on Windows is refused); a safe
    location is then taken as written, ``\\`` being part of a file name on POSIX, as
    when ``show`` or the library reads it.  Reading ``x\\y.bin`` as ``x/y.bin`` here
    made gc take the file ``x\\y.bin`` a live row names for an orphan.
    """
    if not isinstance(location, str) or not location or "\x00" in location:
        return None
    if "/" not in location and "\\" not in location and location not in (".", ".."):
        return location  # a plain name (upstream's `<key>.bin`): normpath would keep it
    try:
        LocalStorage.check_syntax(location)
    except UnsafePathError:
        return None
    return posixpath.normpath(location)


def _entry_path(storage: LocalStorage, location: str) -> Path:
    """The confined path of a blob location (raises UnsafePathError)."""
    if "/" not in location and location not in ("", ".", ".."):
        # A plain name (upstream's `<key>.bin`): an entry of the blob dir itself;
        # lstat does not follow a symlink, and only a regular file is accepted.
        return storage.base_dir / location
    return storage.resolve(location)


def _stat_file(storage: LocalStorage, location: str) -> tuple[Path, os.stat_result] | None:
    """The confined path of a blob and its lstat, or None if unsafe or missing."""
    try:
        path = _entry_path(storage, location)
        st = os.lstat(path)
    except (UnsafePathError, OSError, ValueError):
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        return None
    return path, st


def _planned(db: str, path: Path, location: str, reason: str, st, function="-") -> PlannedFile:
    return PlannedFile(
        db, str(path), location, reason, st.st_size, st.st_mtime_ns, st.st_ino, function
    )


# --------------------------------------------------------------------------- planning


def _plan_db(
    entry: DBEntry,
    passes: list[RowPass],
    *,
    now: dt.datetime,
    grace_seconds: float | None,
    orphans: bool,
    timeout: float,
) -> DBPlan:
    if is_remote(entry):
        from . import remote

        return remote.plan_db(
            entry, passes, now=now, grace_seconds=grace_seconds, orphans=orphans, timeout=timeout
        )
    storage = LocalStorage(entry.blob_dir)
    warnings: list[str] = []
    groups: dict[tuple[str, str], Group] = {}
    files: list[tuple] = []  # (location, size, mtime_ns, ino, function, reason)
    oldest: list[tuple[str, str, str]] = []
    # Location -> [rows of the plan naming it, all rows naming it, kind of the first]:
    # one small entry per location (a million-row clear names ~100k blob files).
    named: dict[str, list[int]] = {}
    kinds: dict[tuple[str, str], int] = {}  # (function, reason) -> kind
    all_refs: set[str] | None = None
    # What the DBs sharing the blob dir name (None: one cannot be read; touch no file).
    shared: set[str] | None = set()
    for sharer in entry.sharers:
        try:
            shared |= _locations_of(sharer, timeout)  # type: ignore[operator]
        except BeautySpotError as exc:
            warnings.append(
                f"blob dir {entry.blob_dir} is shared with {sharer}, which cannot be read"
                f" ({exc}): no blob file is deleted"
            )
            shared = None
            break
    with TaskReader(entry.path, timeout) as reader:
        if passes:
            # The rows that exist now: a row saved after the plan (a new rowid) is not
            # the plan's, so the run leaves it alone.
            top = reader.max_rowid()
            passes = [
                dataclasses.replace(rp, rfilter=rp.rfilter._replace(rowid_at_most=top))
                for rp in passes
            ]
        for rp in passes:
            # One streamed pass per row pass: counts, bytes and oldest per function,
            # the five oldest rows, and the blob files the rows name.
            tally: dict[str, list] = {}
            first: list[tuple[float, str, str, str]] = []
            for key, function, inline, jd, location, updated in reader.iter_matching(rp.rfilter):
                if type(function) is not str:
                    function = _function_name(function)
                t = tally.get(function)
                if t is None:
                    t = tally[function] = [0, 0, None]
                t[0] += 1
                t[1] += inline or 0
                if jd is not None:
                    if t[2] is None or jd < t[2]:
                        t[2] = jd
                    if len(first) < OLDEST_SHOWN:
                        heapq.heappush(first, (-jd, str(key), function, str(updated)))
                    elif -jd >= first[0][0]:
                        item = (-jd, str(key), function, str(updated))
                        if item > first[0]:
                            heapq.heapreplace(first, item)
                if location is not None:
                    norm = normalize_location(location)
                    if norm is None:
                        warnings.append(f"unsafe blob location {location!r}: file not touched")
                        continue
                    entry_refs = named.get(norm)
                    if entry_refs is None:
                        kind = kinds.setdefault((function, rp.reason), len(kinds))
                        named[norm] = [1, 0, kind]
                    else:
                        entry_refs[0] += 1
            for function, (rows, inline, jd) in tally.items():
                groups[(function, rp.reason)] = Group(
                    entry.name, function, rp.reason, rows, 0, inline, _jd_text(jd)
                )
            oldest += [(k, f, u) for _jd, k, f, u in sorted(first, reverse=True)]
        # Every row naming a file: the plan's rows, and rows that stay (which keep it).
        want_all = orphans and grace_seconds is not None
        all_refs = set() if want_all else None
        for location in reader.iter_blob_locations():
            norm = normalize_location(location)
            if norm is None:
                continue
            entry_refs = named.get(norm)
            if entry_refs is not None:
                entry_refs[1] += 1
            if all_refs is not None:
                all_refs.add(norm)
    kind_of = list(kinds)
    for norm, (matched, total, kind) in named.items():
        if total > matched or shared is None or norm in shared:
            continue  # still named by a row that stays (here, or in a sharing DB)
        function, reason = kind_of[kind]
        if not norm.endswith(BLOB_SUFFIX):
            # SPEC §2: .gitignore, *.spot_tmp (a write in progress) and other non-.bin
            # files are never blobs, whatever a row says.
            warnings.append(f"blob location {norm!r} is not a *.bin file: file not touched")
            continue
        found = _stat_file(storage, norm)
        if found is None:
            try:
                storage.resolve(norm)
            except UnsafePathError:  # e.g. a symlink out of the blob dir
                warnings.append(f"unsafe blob location {norm!r}: file not touched")
            continue  # else a dangling row: nothing on disk to free
        st = found[1]
        files.append((norm, st.st_size, st.st_mtime_ns, st.st_ino, function, reason))
        g = groups[(function, reason)]
        groups[(function, reason)] = Group(
            g.db, g.function, g.reason, g.rows, g.files + 1, g.bytes + st.st_size, g.oldest
        )
    del named
    extra: list[Group] = []
    if orphans and grace_seconds is not None and shared is not None:
        limit_ns = int((now.timestamp() - grace_seconds) * 1e9)
        orphan_files = []
        assert all_refs is not None
        all_refs |= shared
        for blob in storage.iter_blobs():
            if blob.location in all_refs:
                continue
            found = _stat_file(storage, blob.location)
            if found is None or found[1].st_mtime_ns >= limit_ns:
                continue  # young: a writer may be about to commit its row
            st = found[1]
            orphan_files.append((blob.location, st.st_size, st.st_mtime_ns, st.st_ino, "-", ORPHAN))
        temps = []
        for tmp in storage.list_temp_files():
            found = _stat_file(storage, tmp.location)
            if found is not None and found[1].st_mtime_ns < limit_ns:
                st = found[1]
                temps.append((tmp.location, st.st_size, st.st_mtime_ns, st.st_ino, "-", TEMP))
        for kind, items in ((ORPHAN, orphan_files), (TEMP, temps)):
            if items:
                files.extend(items)
                extra.append(Group(entry.name, "-", kind, 0, len(items), sum(f[1] for f in items)))
    oldest.sort(key=lambda o: parse_instant(o[2]) or 0)
    return DBPlan(
        entry.name,
        str(entry.path),
        str(entry.blob_dir),
        tuple(passes),
        tuple(sorted(groups.values(), key=lambda g: (g.reason, g.function))) + tuple(extra),
        PlannedFiles.build(entry.name, str(entry.blob_dir), files),
        tuple(oldest[:OLDEST_SHOWN]),
        tuple(warnings),
        tuple(str(p) for p in entry.sharers),
    )


def _function_name(value: object) -> str:
    """A row's function as text: a BLOB (or number) in func_identifier/func_name must
    not stop the run (groups are sorted by it) nor differ between plan and result."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _locations_of(path: Path | str, timeout: float) -> set[str]:
    """The normalized blob locations the rows of the DB at *path* name."""
    with TaskReader(path, timeout) as reader:
        return {
            norm
            for norm in map(normalize_location, reader.iter_blob_locations())
            if norm is not None
        }


def _jd_text(jd: float | None) -> str | None:
    """A julianday() value as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    if jd is None:
        return None
    try:
        moment = from_instant(round((jd - 2440587.5) * 86_400_000) * 1000)
    except OverflowError:
        return None
    return utc_text(moment)


def _all_refs(reader: TaskReader) -> Counter[str]:
    """How many rows name each (normalized) blob location."""
    return normalized_counts((location, 1) for location in reader.iter_blob_locations())


def normalized_counts(counts: Iterable[tuple[object, int]]) -> Counter[str]:
    """Rows naming each blob location, from (location as stored, rows) pairs: locations
    normalized (``./a.bin`` is ``a.bin``), unsafe ones left out."""
    refs: Counter[str] = Counter()
    for location, n in counts:
        norm = normalize_location(location)
        if norm is not None:
            refs[norm] += n
    return refs


def _plan_zombie(zombie: ZombieDir, now: dt.datetime, grace_seconds: float) -> ZombiePlan:
    storage = LocalStorage(zombie.path)
    limit_ns = int((now.timestamp() - grace_seconds) * 1e9)
    files, kept = [], 0
    for blob in [*storage.iter_blobs(), *storage.list_temp_files()]:
        found = _stat_file(storage, blob.location)
        if found is not None and found[1].st_mtime_ns < limit_ns:
            files.append(_planned(zombie.name, found[0], blob.location, ZOMBIE, found[1]))
        else:
            kept += 1
    return ZombiePlan(zombie.name, str(zombie.path), tuple(files), kept)


def _make_plan(
    command: str,
    ws: Workspace,
    passes_for: Callable[[DBEntry], list[RowPass]],
    *,
    now: dt.datetime,
    cutoff: dt.datetime | None = None,
    grace_seconds: float | None = None,
    func: str | None = None,
    orphans: bool = False,
    timeout: float = 30.0,
    entries: tuple[DBEntry, ...] | None = None,
    warnings: tuple[str, ...] = (),
) -> Plan:
    dbs, failures = [], []
    for entry in ws.dbs if entries is None else entries:
        try:
            passes = passes_for(entry)
            dbs.append(
                _plan_db(
                    entry,
                    passes,
                    now=now,
                    grace_seconds=grace_seconds,
                    orphans=orphans,
                    timeout=timeout,
                )
            )
        except BeautySpotError as exc:
            failures.append(DBFailure(entry.name, str(entry.path), str(exc)))
    zombies = ()
    if orphans and grace_seconds is not None and not ws.single_db and entries is None:
        zombies = tuple(_plan_zombie(z, now, grace_seconds) for z in ws.zombies)
    return Plan(
        command, now, cutoff, grace_seconds, func, tuple(dbs), zombies, tuple(failures), warnings
    )


def plan_gc(
    ws: Workspace,
    now: dt.datetime,
    grace: dt.timedelta = dt.timedelta(hours=1),
    *,
    expired: bool = True,
    orphans: bool = True,
    budget: Budget | None = None,
    timeout: float = 30.0,
) -> Plan:
    """Expired rows and their blobs; orphans, stale temp files and zombie dirs past *grace*;
    then, with a *budget*, the least recently updated tasks until under it."""
    now_i = to_instant(now)
    bounds: dict[str, tuple[float, int]] = {}
    warnings: tuple[str, ...] = ()
    if budget is not None and (budget.max_bytes is not None or budget.max_entries is not None):
        if any(is_remote(e) for e in ws.dbs):
            raise UsageError("--max-size/--max-entries are not supported on a PostgreSQL task DB")
        bounds, warnings = _budget_bounds(ws, budget, now_i, timeout)

    def passes_for(entry: DBEntry) -> list[RowPass]:
        out = []
        if expired:
            out.append(RowPass(EXPIRED, q.RowFilter(expired_before=now_i)))
        if entry.name in bounds:
            out.append(
                RowPass(
                    OVER_BUDGET,
                    q.RowFilter(live_at=now_i, order_at_or_before=bounds[entry.name]),
                )
            )
        return out

    return _make_plan(
        "gc",
        ws,
        passes_for,
        now=now,
        grace_seconds=grace.total_seconds(),
        orphans=orphans,
        timeout=timeout,
        warnings=warnings,
    )


def _budget_bounds(
    ws: Workspace, budget: Budget, now_i: int, timeout: float
) -> tuple[dict[str, tuple[float, int]], tuple[str, ...]]:
    """Per DB, the (julianday, rowid) of its most recent task to evict (and older ones).

    Walks tasks most recent first (merged across DBs unless per_db), adding up
    payload bytes, until the budget is passed.
    """
    readers: list[tuple[DBEntry, TaskReader]] = []
    bounds: dict[str, tuple[float, int]] = {}
    warnings: list[str] = []
    streams: list[Iterator] = []
    try:
        for entry in ws.dbs:
            try:
                readers.append((entry, TaskReader(entry.path, timeout)))
            except BeautySpotError:
                continue  # reported by the plan itself
        streams = [_sized_rows(entry, reader.iter_by_recency(now_i)) for entry, reader in readers]
        groups = [[s] for s in streams] if budget.per_db else [streams]
        for group in groups:
            count = size = 0
            # Most recent first: unparsable (flag 1) before parsable, then julianday desc.
            merged = heapq.merge(*group, key=lambda r: (-r[0], -(r[1] or 0.0), -r[2]))
            for unparsable, jd, rowid, nbytes, name in merged:
                count += 1
                size += nbytes
                over = (budget.max_entries is not None and count > budget.max_entries) or (
                    budget.max_bytes is not None and size > budget.max_bytes
                )
                if not over or name in bounds:
                    continue
                if unparsable:
                    warnings.append(
                        f"{name}: over budget, but tasks with unparsable updated_at are never"
                        " evicted"
                    )
                    continue
                bounds[name] = (jd, rowid)
                if len(bounds) == len(group):
                    break
    finally:
        for stream in streams:  # stop the cursors before their connections close
            stream.close()
        for _entry, reader in readers:
            reader.close()
    return bounds, tuple(dict.fromkeys(warnings))


def _sized_rows(entry: DBEntry, rows) -> Iterator[tuple[int, float | None, int, int, str]]:
    storage = LocalStorage(entry.blob_dir)
    try:
        for unparsable, jd, rowid, inline, location in rows:
            nbytes = inline or 0
            norm = normalize_location(location) if location is not None else None
            if norm is not None:
                found = _stat_file(storage, norm)
                if found is not None:
                    nbytes += found[1].st_size
            yield unparsable, jd, rowid, nbytes, entry.name
    finally:
        rows.close()


def plan_prune(
    ws: Workspace,
    now: dt.datetime,
    cutoff: dt.datetime,
    func: str | None = None,
    *,
    timeout: float = 30.0,
) -> Plan:
    """Rows last updated before *cutoff* (optionally of one function) and their blobs."""
    rfilter = q.RowFilter(updated_before=to_instant(cutoff), func=func)
    return _make_plan(
        "prune",
        ws,
        lambda entry: [RowPass(OLDER, rfilter)],
        now=now,
        cutoff=cutoff,
        func=func,
        timeout=timeout,
    )


def plan_clear(
    ws: Workspace, now: dt.datetime, func: str | None = None, *, timeout: float = 30.0
) -> Plan:
    """Every row (or every row of one function) and its blobs."""
    rfilter = q.RowFilter(func=func)
    return _make_plan(
        "clear",
        ws,
        lambda entry: [RowPass(CLEARED, rfilter)],
        now=now,
        func=func,
        timeout=timeout,
    )


class AmbiguousKeyError(UsageError):
    """A prefix that matches several tasks; ``candidates`` lists (db, key) pairs."""

    def __init__(self, prefix: str, candidates: list[tuple[str, str]]):
        super().__init__(f"{prefix!r} matches {len(candidates)} tasks; give more of the key")
        self.prefix = prefix
        self.candidates = candidates


def resolve_keys(
    ws: Workspace, args: list[str], timeout: float = 30.0
) -> tuple[dict[str, list[str]], list[DBFailure]]:
    """Map each KEY or unique PREFIX to (db name -> keys); refuse ambiguity or no match.

    An exact key is taken in every DB that has it; a prefix must match exactly one
    task across the workspace.  Nothing is deleted until every argument resolves.
    """
    by_db: dict[str, list[str]] = {}
    failures: list[DBFailure] = []
    for arg in args:
        if not arg:
            raise UsageError("empty key")
        matches, failed = find_tasks(ws, arg, limit=20, timeout=timeout)
        failures.extend(f for f in failed if f not in failures)
        exact = [(e, k) for e, k in matches if k == arg]
        chosen = exact or matches
        if not chosen:
            raise BeautySpotError(f"no task matches {arg!r}")
        if not exact and len(chosen) > 1:
            raise AmbiguousKeyError(arg, [(e.name, k) for e, k in chosen])
        for entry, key in chosen:
            keys = by_db.setdefault(entry.name, [])
            if key not in keys:
                keys.append(key)
    return by_db, failures


def plan_rm(
    ws: Workspace, now: dt.datetime, keys_by_db: dict[str, list[str]], *, timeout: float = 30.0
) -> Plan:
    """The named tasks and their blobs."""
    entries = tuple(e for e in ws.dbs if e.name in keys_by_db)
    return _make_plan(
        "rm",
        ws,
        lambda entry: [RowPass(REMOVED, q.RowFilter(keys=tuple(keys_by_db[entry.name])))],
        now=now,
        timeout=timeout,
        entries=entries,
    )


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Check:
    """One line of ``verify``: a check on a DB, how many problems, an example."""

    db: str
    check: str
    problems: int
    example: str = ""


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[Check, ...]
    dangling: dict[str, tuple[str, ...]] = field(default_factory=dict)  # db -> keys
    failures: tuple[DBFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures and all(c.problems == 0 for c in self.checks)


def verify(
    ws: Workspace,
    now: dt.datetime,
    grace: dt.timedelta = dt.timedelta(hours=1),
    *,
    full: bool = False,
    timeout: float = 30.0,
) -> VerifyReport:
    """Check every DB and its blob dir; read-only."""
    from .serializer import loads

    checks: list[Check] = []
    dangling: dict[str, tuple[str, ...]] = {}
    failures: list[DBFailure] = []
    limit_ns = int((now.timestamp() - grace.total_seconds()) * 1e9)
    if any(is_remote(e) for e in ws.dbs):
        raise UsageError("verify is not supported on a PostgreSQL task DB")
    for entry in ws.dbs:
        storage = LocalStorage(entry.blob_dir)
        try:
            with TaskReader(entry.path, timeout) as reader:
                result = reader.integrity_check(full)
                bad_upd, bad_exp = reader.unparsable_timestamps()
                missing: list[str] = []
                unsafe: list[str] = []
                undecodable: list[str] = []
                for key, location, data in reader.iter_payloads():
                    payload = data
                    if location is not None:
                        norm = normalize_location(location)
                        found = None if norm is None else _stat_file(storage, norm)
                        if norm is None:
                            unsafe.append(str(key))
                            continue
                        if found is None:
                            missing.append(str(key))
                            continue
                        try:
                            payload = found[0].read_bytes()
                        except OSError:
                            missing.append(str(key))
                            continue
                    if payload is None:
                        continue
                    try:
                        loads(payload)
                    except BeautySpotError:
                        undecodable.append(str(key))
                refs = _all_refs(reader)
        except BeautySpotError as exc:
            failures.append(DBFailure(entry.name, str(entry.path), str(exc)))
            continue
        for sharer in entry.sharers:  # a blob a sharing DB names is no orphan
            try:
                refs.update(_locations_of(sharer, timeout))
            except BeautySpotError:
                pass  # reported on that DB's own line
        orphans = [
            b.location
            for b in storage.iter_blobs()
            if b.location not in refs and int(b.mtime * 1e9) < limit_ns
        ]
        temps = [t.location for t in storage.list_temp_files() if int(t.mtime * 1e9) < limit_ns]
        integrity_bad = [r for r in result if r != "ok"]
        name = entry.name
        checks += [
            Check(
                name,
                "integrity_check" if full else "quick_check",
                len(integrity_bad),
                integrity_bad[0] if integrity_bad else "ok",
            ),
            Check(
                name, "dangling rows (blob missing)", len(missing), missing[0] if missing else ""
            ),
            Check(name, "unsafe blob locations", len(unsafe), unsafe[0] if unsafe else ""),
            Check(name, "orphan blobs past grace", len(orphans), orphans[0] if orphans else ""),
            Check(name, "stale temp files", len(temps), temps[0] if temps else ""),
            Check(name, "unparsable updated_at", bad_upd),
            Check(name, "unparsable expires_at", bad_exp),
            Check(
                name,
                "undecodable payloads",
                len(undecodable),
                undecodable[0] if undecodable else "",
            ),
        ]
        if missing:
            dangling[name] = tuple(missing)
    return VerifyReport(tuple(checks), dangling, tuple(failures))


def plan_verify_fix(
    ws: Workspace,
    now: dt.datetime,
    report: VerifyReport,
    grace: dt.timedelta = dt.timedelta(hours=1),
    *,
    timeout: float = 30.0,
) -> Plan:
    """Dangling rows (so the cache recomputes them) and gc's orphans/temp files."""

    def passes_for(entry: DBEntry) -> list[RowPass]:
        keys = report.dangling.get(entry.name)
        if not keys:
            return []
        return [RowPass(DANGLING, q.RowFilter(keys=keys), only_dangling=True)]

    return _make_plan(
        "verify --fix",
        ws,
        passes_for,
        now=now,
        grace_seconds=grace.total_seconds(),
        orphans=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- execution


class WorkspaceLock:
    """An exclusive ``flock`` on ``<workspace>/.beautyspot.lock``, holding our pid.

    The kernel drops the lock when its process dies, so a lock left by a killed
    run is simply taken over; the file itself stays (it is ignored like the rest
    of the workspace).
    """

    def __init__(self, path: Path, wait: float = 10.0):
        self.path = path
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> WorkspaceLock:
        import fcntl

        # Never through a symlink, never a FIFO or device: we truncate and write it.
        fd = _open_regular(self.path, os.O_RDWR, "lock file")
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise BeautySpotError(f"cannot lock {self.path}: {exc.strerror}") from None
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                    os.close(fd)
                    raise LockHeldError(
                        f"another maintenance run (pid {holder}) holds {self.path};"
                        " try again when it finishes"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def _open_regular(path: Path, flags: int, what: str) -> int:
    """``os.open`` of a regular file (created if missing), never through a symlink and
    never blocking on a FIFO; BeautySpotError otherwise."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BeautySpotError(f"{what} {path} is a symlink; not following it") from None
        if exc.errno == errno.ENXIO:  # a FIFO (or socket) nobody reads
            raise BeautySpotError(f"{what} {path} is not a regular file") from None
        raise BeautySpotError(f"cannot open {what} {path}: {exc.strerror}") from None
    if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BeautySpotError(f"{what} {path} is not a regular file")
    return fd


_encode_str = json.encoder.encode_basestring  # C-accelerated, ensure_ascii=False


def _json_value(value: object) -> str:
    if type(value) is str:
        return _encode_str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


class AuditLog:
    """``<workspace>/maintenance.log.jsonl``: one JSON line per deleted task or file.

    Rotated when it passes ``max_bytes`` (to ``.1``, the previous ``.1`` dropped).
    A disabled log writes nothing.
    """

    NAME = "maintenance.log.jsonl"

    def __init__(
        self,
        root: Path,
        command: str,
        now: dt.datetime,
        *,
        enabled: bool = True,
        max_bytes: int = 10 * 1024 * 1024,
    ):
        self.path = root / self.NAME
        self.command = command
        self.time = now.isoformat()
        self._time = _json_value(self.time)
        self._command = _json_value(command)
        self.enabled = enabled
        self.max_bytes = max_bytes
        self._fh = None

    def __enter__(self) -> AuditLog:
        if self.enabled:
            try:
                if os.lstat(self.path).st_size >= self.max_bytes:
                    self._rotate()
            except FileNotFoundError:
                pass
            self._open()
            if self._size > 0:
                fd = self._fh.fileno()
                if os.pread(fd, 1, self._size - 1) != b"\n":  # a run killed mid-line
                    self._fh.write("\n")
        return self

    def _open(self) -> None:
        """Open for appending; refused (before anything is deleted) if the path is a
        symlink, a FIFO (which would block the run) or anything but a regular file."""
        fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND, "audit log")
        # backslashreplace: a key or file name that is not UTF-8 (surrogates) is
        # logged as \udcXX text instead of crashing the run after it deleted things.
        self._fh = open(  # noqa: SIM115 - closed in __exit__
            fd, "a", encoding="utf-8", errors="backslashreplace"
        )
        self._size = os.fstat(fd).st_size

    def _rotate(self) -> None:
        """Move the log to ``.1``.  Best effort: if that fails (``.1`` is a directory,
        say) the log grows on rather than stop a run in the middle of its deletions."""
        if self.max_bytes <= 0:
            return
        try:
            os.replace(self.path, self.path.with_name(self.NAME + ".1"))
        except FileNotFoundError:
            pass
        except OSError:
            self.max_bytes = 0  # do not try again in this run

    def _roll(self) -> None:
        """Rotate an open log once it has passed ``max_bytes``."""
        self._fh.close()
        self._fh = None
        self._rotate()
        self._open()

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def record(
        self,
        db: str,
        reason: str,
        nbytes: int,
        *,
        key: object = None,
        function: object = None,
        path: str | None = None,
    ) -> None:
        if self._fh is None:
            return
        # Hundreds of thousands of lines per big prune: encode the strings directly
        # (json's C string encoder) instead of a json.dumps per line.
        line = (
            f'{{"time": {self._time}, "command": {self._command}, "db": {_json_value(db)},'
            f' "key": {_json_value(key)}, "function": {_json_value(function)},'
            f' "reason": {_json_value(reason)}, "bytes": {int(nbytes)}'
        )
        if path is not None:
            line += f', "path": {_json_value(path)}'
        line += "}\n"
        self._fh.write(line)
        # Rotate while writing too: one clear of 1M rows writes ~250 MB of lines.
        self._size += len(line)  # characters: close enough to bytes for a size bound
        if 0 < self.max_bytes <= self._size:
            self._roll()

    def record_rows(self, db: str, reason: str, rows: list[tuple]) -> None:
        """A line per deleted row, from a batch's (rowid, key, function, inline bytes,
        location) tuples: written a thousand lines at a time."""
        if self._fh is None or not rows:
            return
        head = f'{{"time": {self._time}, "command": {self._command}, "db": {_json_value(db)},'
        tail = f' "reason": {_json_value(reason)}, "bytes": '
        enc, js = _encode_str, _json_value
        for start in range(0, len(rows), 1000):
            text = "".join(
                [
                    f'{head} "key": {enc(k) if type(k) is str else js(k)}, "function":'
                    f" {enc(f) if type(f) is str else js(f)},{tail}{int(n or 0)}}}\n"
                    for _r, k, f, n, _l in rows[start : start + 1000]
                ]
            )
            self._fh.write(text)
            self._size += len(text)
            if 0 < self.max_bytes <= self._size:
                self._roll()

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()


def _open_writer(path: str, timeout: float) -> sqlite3.Connection:
    """A write connection that never creates the file (``mode=rw``) and never migrates."""
    uri = file_uri(str(Path(path).absolute()), "rw")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        # Per connection, not persisted: in WAL mode the batch commits then skip an
        # fsync each; _make_durable() syncs them all before any file is unlinked.
        conn.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows are zeroed where that costs no extra write (the pages that held
        # them are written anyway); pages left empty go to the freelist unwritten.
        # SQLite's own default (OFF) zeroes nothing; a build default of ON would also
        # rewrite every freed page, which doubled the page writes of a big delete.
        conn.execute("PRAGMA secure_delete=FAST")
        q.register_functions(conn)
        schema = q.read_schema(conn)
    except sqlite3.Error as exc:
        raise describe_sqlite_error(path, exc) from None
    if schema is None:
        conn.close()
        raise DBError(f"{path}: no 'tasks' table (not a beautyspot task DB)")
    return conn


def _unlink_checked(path: str, size: int, mtime_ns: int, ino: int) -> str | None:
    """Delete *path* if it is still the file the plan saw (size, mtime, inode); else say
    why it was kept.

    The file is renamed aside first and its inode checked, so an atomic re-save by a
    writer between our check and the rename is put back, never lost.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "already gone"
    if (st.st_size, st.st_mtime_ns, st.st_ino) != (size, mtime_ns, ino):
        return "changed since the plan"
    aside = f"{path}.gc{os.getpid()}.spot_tmp"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return "already gone"
    moved = os.lstat(aside)
    if (moved.st_ino, moved.st_mtime_ns) != (ino, mtime_ns):
        # A writer replaced the file between our check and the rename: put it back.
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # an even newer file is in place; ours is stale
        os.unlink(aside)
        return "changed since the plan"
    os.unlink(aside)
    return None


def _add(groups: dict, key: tuple[str, str, str], rows=0, files=0, size=0) -> None:
    """Count into *groups* (key -> [rows, files, bytes]); made Groups at the end."""
    tally = groups.get(key)
    if tally is None:
        tally = groups[key] = [0, 0, 0]
    tally[0] += rows
    tally[1] += files
    tally[2] += size


# Per-file state during a run (a bytearray, one byte per planned file).
_PENDING = 1  # its rows are gone (or it is an orphan): unlink it after the ref check
_REFERENCED = 2  # a row names it just before unlinking: keep it


class _BatchSizer:
    """Rows (and, on a rowid walk, the rowid span) of the next write transaction, sized
    by the time the last ones took: a concurrent writer waits at most about *seconds*
    for the lock, whatever the disk, the DB size or the share of rows that match.

    Bigger batches are cheaper per row (fewer commits, each index page written once per
    batch rather than once per row), so the size grows while transactions stay short.
    """

    MIN_ROWS = 16
    MAX_ROWS = 50_000  # a batch's rows are held in memory (~350 bytes each)
    MAX_SPAN = 1 << 40

    def __init__(self, rows: int, seconds: float):
        self.rows = max(self.MIN_ROWS, min(rows, self.MAX_ROWS))
        self.span = 8 * self.rows
        self.seconds = seconds

    def retarget(self, seconds: float) -> None:
        """Aim at *seconds* from now on; a shorter target shrinks the batch at once (a
        writer has just shown up: it should not wait for two more long batches)."""
        if seconds < self.seconds:
            factor = seconds / self.seconds
            self.rows = max(self.MIN_ROWS, int(self.rows * factor))
            self.span = max(self.MIN_ROWS, int(self.span * factor))
        self.seconds = seconds

    def update(self, elapsed: float) -> None:
        # At most doubling or halving per step: one odd batch (a checkpoint by another
        # connection, a cold page cache) does not swing the size.
        factor = min(2.0, max(0.5, self.seconds / max(elapsed, 1e-6)))
        self.rows = max(self.MIN_ROWS, min(self.MAX_ROWS, int(self.rows * factor)))
        self.span = max(self.MIN_ROWS, min(self.MAX_SPAN, int(self.span * factor)))


def _delete_pass(
    conn: sqlite3.Connection,
    schema: q.Schema,
    dbp: DBPlan,
    rp: RowPass,
    state: bytearray,
    row_keys: dict[int, object],
    ctx: _RunContext,
) -> None:
    """Delete the pass's rows in committed batches; mark their planned files pending."""
    storage = LocalStorage(dbp.blob_dir) if rp.only_dangling else None
    rfilter = rp.rfilter
    driving = rfilter.driving_column(schema)
    sizer = _BatchSizer(ctx.batch, ctx.batch_seconds)
    after = None
    lo, end = conn.execute("SELECT min(rowid) - 1, max(rowid) FROM tasks").fetchone()
    if lo is None:
        return  # no rows at all
    if rfilter.rowid_at_most is not None:
        end = min(end, rfilter.rowid_at_most)
    while True:
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if storage is not None:  # verify --fix: a handful of keys
                picked, after = q.select_batch(conn, schema, rfilter, after, sizer.rows)
                done = len(picked) < sizer.rows
                # re-check: a re-saved key has its blob again
                picked = [r for r in picked if not _blob_exists(storage, r.result_value)]
                q.delete_rowids(conn, [r.rowid for r in picked])
                rows = [
                    (r.rowid, r.cache_key, r.function, r.data_size, r.result_value) for r in picked
                ]
            elif driving is not None:
                rows, after = q.delete_keyset_batch(conn, schema, rfilter, after, sizer.rows)
                done = len(rows) < sizer.rows
            else:
                rows, lo = q.delete_rowid_range(
                    conn, schema, rfilter, lo, min(lo + sizer.span, end), sizer.rows
                )
                done = lo >= end
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        elapsed = time.perf_counter() - started
        _account_rows(dbp, rp, rows, state, row_keys, ctx)
        ctx.between_batches(conn, len(rows))
        sizer.retarget(ctx.batch_target())  # after between_batches: it spots writers
        sizer.update(elapsed)
        if done:
            return


def _account_rows(
    dbp: DBPlan,
    rp: RowPass,
    rows: list[tuple],
    state: bytearray,
    row_keys: dict[int, object],
    ctx: _RunContext,
) -> None:
    """Book committed deletions (:func:`q.batch_columns` tuples): the group totals, the
    planned files now pending, the audit log, the progress bar."""
    files = dbp.files
    suffix = len(BLOB_SUFFIX)
    per_function: dict[object, list[int]] = {}  # one Group update per function
    for _rowid, key, function, size, location in rows:
        if type(function) is not str:
            function = _function_name(function)
        acc = per_function.get(function)
        if acc is None:
            acc = per_function[function] = [0, 0]
        acc[0] += 1
        acc[1] += size or 0
        if location is not None and files.locations:
            norm = normalize_location(location)
            i = -1 if norm is None else files.find(norm)
            if i >= 0 and not state[i] & _PENDING and files.kind(i)[1] == rp.reason:
                state[i] |= _PENDING
                if key != norm[:-suffix]:  # the usual `<key>.bin` is not stored
                    row_keys[i] = key
    for function, (n, size) in per_function.items():
        _add(ctx.groups, (dbp.name, function or "", rp.reason), n, 0, size)
    ctx.audit.record_rows(dbp.name, rp.reason, rows)
    ctx.progress(len(rows))


def _truncate_pass(
    conn: sqlite3.Connection,
    schema: q.Schema,
    dbp: DBPlan,
    rp: RowPass,
    state: bytearray,
    row_keys: dict[int, object],
    ctx: _RunContext,
    timeout: float,
) -> bool:
    """A pass over every row (a plain ``clear``) as one ``DELETE FROM tasks``, if safe.

    Batches rewrite a page of the key index per deleted row (~4 GB of WAL for a
    million rows); SQLite's truncate frees whole pages instead: 0.7 s for 577 MB
    here, so the write lock is held about as long as three batches.  Tables above
    ``ctx.truncate_bytes`` are left to the batches, which keep every lock short.

    The rows it deletes are booked afterwards from a read transaction opened before
    the lock was taken (WAL keeps that snapshot; so only for a DB in WAL mode).  The
    snapshot is exactly what was deleted only if no other connection committed
    between it and the lock:
    ``PRAGMA data_version``, read before the snapshot and again under the lock, says
    so; and every row must still be the plan's (rowid at most the plan's top).
    Otherwise nothing is done and False returned: the batches take the pass.
    """
    rfilter = rp.rfilter
    if rp.only_dangling or rfilter._replace(rowid_at_most=None) != q.RowFilter():
        return False
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        return False  # a rollback journal: our own snapshot would block our commit
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    if page_size * pages > ctx.truncate_bytes:
        return False
    before = conn.execute("PRAGMA data_version").fetchone()[0]
    uri = file_uri(str(Path(dbp.path).absolute()), "ro")
    try:
        snap = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        snap.text_factory = conn.text_factory
        snap.execute("BEGIN")
        snap.execute("SELECT count(*) FROM tasks").fetchone()  # the snapshot starts here
        conn.execute("BEGIN IMMEDIATE")
        try:
            top = conn.execute("SELECT max(rowid) FROM tasks").fetchone()[0]
            if (
                top is None
                or conn.execute("PRAGMA data_version").fetchone()[0] != before
                or (rfilter.rowid_at_most is not None and top > rfilter.rowid_at_most)
            ):
                conn.execute("ROLLBACK")
                return False
            conn.execute("DELETE FROM tasks")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        total, after = 0, None
        select = f"SELECT {q.batch_columns(schema)} FROM tasks"
        while True:
            if after is None:
                rows = q.fetchall_text(snap, f"{select} ORDER BY rowid LIMIT 20000", ())
            else:
                rows = q.fetchall_text(
                    snap, f"{select} WHERE rowid > ? ORDER BY rowid LIMIT 20000", (after,)
                )
            if not rows:
                break
            after = rows[-1][0]
            total += len(rows)
            _account_rows(dbp, rp, rows, state, row_keys, ctx)
        ctx.between_batches(conn, total)
        ctx.truncated.append(dbp.name)
        return True
    finally:
        snap.close()


def _blob_exists(storage: LocalStorage, location: object) -> bool:
    norm = normalize_location(location)
    return norm is not None and _stat_file(storage, norm) is not None


def _make_durable(conn: sqlite3.Connection) -> None:
    """Sync the deletions to disk before files go: a power cut must not bring back
    rows whose blobs were already unlinked.  A WAL checkpoint syncs the WAL first."""
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() == "wal":
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _mark_referenced(
    conn: sqlite3.Connection, schema: q.Schema, files: PlannedFiles, state: bytearray
) -> None:
    """Flag the planned files a row names now (still, or newly): one pass over the
    column, looking each location up in the plan's sorted files (no set of them all)."""
    if not schema.has("result_value") or not files.locations:
        return
    find = files.find
    for (location,) in conn.execute(
        "SELECT result_value FROM tasks WHERE result_value IS NOT NULL"
    ):
        norm = normalize_location(location)
        if norm is not None:
            i = find(norm)
            if i >= 0:
                state[i] |= _REFERENCED


def _mark_shared(
    sharers: tuple[str, ...], files: PlannedFiles, state: bytearray, timeout: float
) -> None:
    """Flag the planned files a DB sharing the blob dir names now; all of them if one
    of those DBs cannot be read (then no file is unlinked)."""
    for sharer in sharers:
        try:
            named = _locations_of(sharer, timeout)
        except BeautySpotError:
            for i in range(len(state)):
                state[i] |= _REFERENCED
            return
        for norm in named:
            i = files.find(norm)
            if i >= 0:
                state[i] |= _REFERENCED


@dataclass
class _RunContext:
    groups: dict
    kept: list
    audit: AuditLog
    progress: Progress
    batch: int
    batch_seconds: float = 0.25
    checkpoint_rows: int = 0
    truncate_bytes: int = 0  # see _truncate_pass (0: never)
    alone_batch_seconds: float = 1.0  # batch_target() while no other connection writes
    truncated: list = field(default_factory=list)  # DBs a pass emptied in one statement
    _since_checkpoint: int = 0
    _data_version: int | None = None
    _writer_batches: int = 0

    def between_batches(self, conn: sqlite3.Connection, rows: int) -> None:
        """After each committed batch: checkpoint when due, and make way for writers.

        Alone, our connection does not auto-checkpoint (a checkpoint per batch cost more
        than the deletes): every ``checkpoint_rows`` deleted rows instead.  Once another
        connection has committed since our last look (``data_version`` moved: a live
        writer), two things change for the next ``WRITER_BATCHES`` batches:

        * our commits checkpoint at once again (SQLite's default): else the writer's own
          auto-checkpoint copied and synced our batch's pages inside its save;
        * we pause ``WRITER_GAP`` seconds before the next transaction: a writer waiting
          for the lock polls at most every 100 ms, and back-to-back batches with gaps of
          a millisecond kept one out for seconds.
        """
        self._since_checkpoint += rows
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            if self._writer_batches == 0:
                conn.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT}")
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._writer_batches = WRITER_BATCHES
        elif self._writer_batches:
            self._writer_batches -= 1
            if self._writer_batches == 0:
                conn.execute("PRAGMA wal_autocheckpoint=0")
        if self._writer_batches:
            self._since_checkpoint = 0
            time.sleep(WRITER_GAP)
        elif self.checkpoint_rows and self._since_checkpoint >= self.checkpoint_rows:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._since_checkpoint = 0
        # Our own commits do not move our data_version: read it after them, and after
        # the pause, so that the next look sees only the others' commits.
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]

    def batch_target(self) -> float:
        """Seconds the next write transaction should take: *batch_seconds* while another
        connection has committed within the last ``WRITER_BATCHES`` batches, else
        *alone_batch_seconds*.  Each batch rewrites every page of the key index it
        touches, and on a big DB that is most of them, whatever the batch's size: at 1M
        rows, 0.25 s batches took ~10 s to prune 333k rows where 1 s batches took ~6 s.
        Nobody waits on a lock nobody else wants; a writer that shows up waits for at
        most the one batch in progress, then gets short ones."""
        return self.batch_seconds if self._writer_batches else self.alone_batch_seconds

    def start_db(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        self._writer_batches = 0
        self._since_checkpoint = 0

    def unlink(self, planned: PlannedFile, key: object = None) -> None:
        self.unlink_file(
            planned.db,
            planned.path,
            planned.size,
            planned.mtime_ns,
            planned.ino,
            planned.function,
            planned.reason,
            key,
        )

    def unlink_file(
        self,
        db: str,
        path: str,
        size: int,
        mtime_ns: int,
        ino: int,
        function: str,
        reason: str,
        key: object = None,
    ) -> None:
        why = _unlink_checked(path, size, mtime_ns, ino)
        if why is None:
            _add(self.groups, (db, function, reason), 0, 1, size)
            self.audit.record(db, reason, size, key=key, function=function, path=path)
        else:
            self.kept.append((path, why))


def _execute_db(dbp: DBPlan, ctx: _RunContext, timeout: float) -> None:
    """Rows first, committed in batches; then the planned files no row names any more.

    The schema is never changed: without an index on a filter's column the batches
    walk rowids, which together scan the table once.
    """
    conn = _open_writer(dbp.path, timeout)
    try:
        # Per connection, nothing persisted: checkpoints as between_batches() says.
        ctx.start_db(conn)
        # A batch dirties a page of the key index per row: room for a whole batch's pages
        # (else they spill to the WAL mid-transaction and are read back).
        conn.execute(f"PRAGMA cache_size=-{WRITE_CACHE_KIB}")
        schema = q.read_schema(conn)
        files = dbp.files
        state = bytearray(len(files))
        row_keys: dict[int, object] = {}
        for rp in dbp.passes:
            if not _truncate_pass(conn, schema, dbp, rp, state, row_keys, ctx, timeout):
                _delete_pass(conn, schema, dbp, rp, state, row_keys, ctx)
        temps = []
        for i, kind in enumerate(files.kinds):
            reason = files.kind_table[kind][1]
            if reason == ORPHAN:
                state[i] |= _PENDING
            elif reason == TEMP:
                temps.append(i)
        if any(b & _PENDING for b in state):
            _make_durable(conn)
            # Just before unlinking: which of these files does a row (still, or newly) name?
            _mark_referenced(conn, schema, files, state)
            _mark_shared(dbp.sharers, files, state, timeout)
        storage = LocalStorage(dbp.blob_dir)
        base = str(storage.base_dir) + os.sep
        suffix = len(BLOB_SUFFIX)
        for i, flags in enumerate(state):
            if not flags & _PENDING:
                continue
            location = files.locations[i]
            if "/" not in location:  # a plain name: see _entry_path (no Path per file)
                path = base + location
            else:
                try:
                    path = str(_entry_path(storage, location))
                except UnsafePathError:
                    ctx.kept.append((base + location, "unsafe location"))
                    continue
            if flags & _REFERENCED:
                ctx.kept.append((path, "still referenced by a row"))
            else:
                function, reason = files.kind(i)
                key = row_keys.get(i, location[:-suffix] if reason != ORPHAN else None)
                ctx.unlink_file(
                    dbp.name,
                    path,
                    files.sizes[i],
                    files.mtimes_ns[i],
                    files.inodes[i],
                    function,
                    reason,
                    key,
                )
            ctx.progress(1)
        for i in temps:
            ctx.unlink(files[i])
            ctx.progress(1)
        ctx.audit.flush()
    finally:
        conn.close()


def _execute_zombie(zp: ZombiePlan, ctx: _RunContext) -> int:
    root = Path(zp.path)
    owner = root.parent if root.parent.name == "blobs" else root.parent.parent
    if any((owner / f"{zp.name}{s}").exists() for s in (".db", ".sqlite")):
        ctx.kept.extend((f.path, "its DB reappeared") for f in zp.files)
        return 0
    for planned in zp.files:
        ctx.unlink(planned)
        ctx.progress(1)
    removed = LocalStorage(root).prune_empty_dirs()
    leftovers = [p.name for p in root.iterdir()] if root.is_dir() else []
    if leftovers == [".gitignore"]:
        (root / ".gitignore").unlink()
        leftovers = []
    if root.is_dir() and not leftovers:
        root.rmdir()
        removed += 1
        if root.name == "blobs" and root.parent.is_dir() and not any(root.parent.iterdir()):
            root.parent.rmdir()  # legacy <name>/blobs/: <name>/ goes too
            removed += 1
    return removed


def execute(
    plan: Plan,
    ws: Workspace,
    *,
    progress: Progress = _no_progress,
    timeout: float = 30.0,
    lock_wait: float = 10.0,
    batch: int = 2000,
    batch_seconds: float = 0.25,
    alone_batch_seconds: float = 1.0,
    checkpoint_rows: int = 32768,
    truncate_bytes: int = TRUNCATE_MAX_BYTES,
    audit: bool = True,
) -> Result:
    """Carry out *plan* under the workspace lock; return what was really deleted.

    *batch* is the first write transaction's row count; later ones are sized so each
    takes about *batch_seconds* while another connection writes (the longest it then
    waits for the lock), and *alone_batch_seconds* while none does (fewer, bigger
    batches: see ``_RunContext.batch_target``).
    The WAL is checkpointed every *checkpoint_rows* deleted rows (0: only at the end).
    A pass over every row of a DB of at most *truncate_bytes* is one statement when
    nothing else wrote meanwhile (:func:`_truncate_pass`; 0: always batches).
    """
    groups: dict[tuple[str, str, str], list[int]] = {}
    for g in plan.groups:  # same lines as the preview, even where nothing went
        groups[(g.db, g.function, g.reason)] = [0, 0, 0]
    failures = list(plan.failures)
    dirs_removed = 0
    if not plan.dbs and not plan.zombies:
        # Nothing readable to act on (e.g. --db named a file that is not a task DB):
        # take no lock and open no log, so nothing is created beside that file.
        return Result(plan.command, (), (), tuple(failures), 0)  # no DB: no groups either
    server = any(is_remote(entry) for entry in ws.dbs)
    if server:
        from . import remote

        # One run per database across machines (an advisory lock); no audit file: a
        # server DB has no workspace directory to keep it in.
        lock = remote.run_lock(plan, lock_wait, timeout)
    else:
        lock = WorkspaceLock(ws.lock_path, lock_wait)
    with (
        lock,
        AuditLog(ws.root, plan.command, plan.now, enabled=audit and not server) as log,
    ):
        ctx = _RunContext(
            groups,
            [],
            log,
            progress,
            batch,
            batch_seconds,
            checkpoint_rows,
            truncate_bytes,
            alone_batch_seconds=alone_batch_seconds,
        )
        for dbp in plan.dbs:
            try:
                if server:
                    remote.execute_db(dbp, ctx, timeout)
                else:
                    _execute_db(dbp, ctx, timeout)
            except (sqlite3.Error, BeautySpotError) as exc:
                err = (
                    describe_sqlite_error(dbp.path, exc) if isinstance(exc, sqlite3.Error) else exc
                )
                failures.append(DBFailure(dbp.name, dbp.path, str(err)))
                continue
            except OSError as exc:
                failures.append(DBFailure(dbp.name, dbp.path, f"I/O error: {exc.strerror or exc}"))
                continue
            if plan.command in ("gc", "verify --fix") and not server:
                dirs_removed += LocalStorage(dbp.blob_dir).prune_empty_dirs()
        for zp in plan.zombies:
            try:
                dirs_removed += _execute_zombie(zp, ctx)
            except OSError as exc:
                failures.append(DBFailure(zp.name, zp.path, f"I/O error: {exc.strerror or exc}"))
    done = tuple(Group(*key, *tally) for key, tally in groups.items())
    return Result(
        plan.command, done, tuple(ctx.kept), tuple(failures), dirs_removed, tuple(ctx.truncated)
    )


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class DBSummary:
    """One line of ``beautyspot ls``."""

    name: str
    path: str
    tasks: int
    db_bytes: int
    blob_files: int
    blob_bytes: int
    expired: int | None
    oldest: str | None
    newest: str | None
    error: str | None = None


def summarize(ws: Workspace, now: dt.datetime, timeout: float = 5.0) -> list[DBSummary]:
    """The workspace table: counts, sizes, expiry and age range per DB (read-only)."""
    from .db import SQLiteTaskDB
    from .workspace import db_size

    out = []
    for entry in ws.dbs:
        files = n_bytes = 0
        for blob in LocalStorage(entry.blob_dir).iter_blobs():
            files += 1
            n_bytes += blob.size
        size = db_size(entry.path) if entry.path.is_file() else 0
        tasks = SQLiteTaskDB.count_tasks(entry.path, timeout)
        try:
            with TaskReader(entry.path, timeout) as reader:
                expired, oldest, newest = reader.summary(to_instant(now))
        except BeautySpotError as exc:
            out.append(
                DBSummary(
                    entry.name,
                    str(entry.path),
                    tasks,
                    size,
                    files,
                    n_bytes,
                    None,
                    None,
                    None,
                    str(exc),
                )
            )
            continue
        out.append(
            DBSummary(
                entry.name, str(entry.path), tasks, size, files, n_bytes, expired, oldest, newest
            )
        )
    return out


def iter_tasks(
    entry: DBEntry,
    rfilter: q.RowFilter,
    limit: int | None,
    timeout: float = 5.0,
) -> list[q.TaskRow]:
    """The tasks of one DB for ``ls DB``, newest first."""
    if is_remote(entry):
        from . import remote

        return remote.list_tasks(entry, rfilter, limit, timeout)
    with TaskReader(entry.path, timeout) as reader:
        return reader.list_tasks(rfilter, limit)
