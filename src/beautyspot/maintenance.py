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

import datetime as dt
import errno
import os
import posixpath
import sqlite3
import stat as stat_mod
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from . import sql as q
from .db import TaskReader, describe_sqlite_error
from .errors import BeautySpotError, DBError, LockHeldError, UnsafePathError
from .storage import LocalStorage
from .timeutil import to_instant
from .workspace import DBEntry, Workspace, ZombieDir

EXPIRED = "expired"
OLDER = "older than cutoff"
CLEARED = "cleared"
REMOVED = "removed"
ORPHAN = "orphan"
TEMP = "stale temp file"
ZOMBIE = "zombie dir"

OLDEST_SHOWN = 5

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
class DBFailure:
    db: str
    path: str
    message: str


@dataclass(frozen=True)
class DBPlan:
    name: str
    path: str
    blob_dir: str
    reason: str | None
    rfilter: q.RowFilter | None
    groups: tuple[Group, ...]
    files: tuple[PlannedFile, ...]
    oldest: tuple[tuple[str, str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)


@dataclass(frozen=True)
class ZombiePlan:
    name: str
    path: str
    files: tuple[PlannedFile, ...]
    kept: int  # files too young (or not blobs) that keep the directory alive


@dataclass(frozen=True)
class Plan:
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

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.dbs)

    @property
    def files(self) -> int:
        return sum(g.files for g in self.groups)

    @property
    def bytes(self) -> int:
        return sum(g.bytes for g in self.groups)


@dataclass(frozen=True)
class Result:
    """What :func:`execute` did; ``groups`` mirror the plan's, with real numbers."""

    command: str
    groups: tuple[Group, ...]
    kept: tuple[tuple[str, str], ...]  # (path, why the planned file was kept)
    failures: tuple[DBFailure, ...]
    dirs_removed: int = 0

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)

    @property
    def files(self) -> int:
        return sum(g.files for g in self.groups)

    @property
    def bytes(self) -> int:
        return sum(g.bytes for g in self.groups)


# --------------------------------------------------------------------------- helpers


def normalize_location(location: object) -> str | None:
    """A DB's blob location as a relative POSIX path, or None if it cannot be one."""
    if not isinstance(location, str) or not location or "\x00" in location:
        return None
    norm = posixpath.normpath(location.replace("\\", "/"))
    if norm.startswith(("/", "../")) or norm in ("..", "."):
        return None
    return norm


def _stat_file(storage: LocalStorage, location: str) -> tuple[Path, os.stat_result] | None:
    """The confined path of a blob and its lstat, or None if unsafe or missing."""
    try:
        path = storage.resolve(location)
        st = os.lstat(path)
    except (UnsafePathError, OSError):
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
    reason: str,
    rfilter: q.RowFilter | None,
    *,
    now: dt.datetime,
    grace_seconds: float | None,
    orphans: bool,
    timeout: float,
) -> DBPlan:
    storage = LocalStorage(entry.blob_dir)
    warnings: list[str] = []
    groups: dict[str, Group] = {}
    files: list[PlannedFile] = []
    oldest: tuple = ()
    with TaskReader(entry.path, timeout) as reader:
        if rfilter is not None:
            for function, rows, inline, first in reader.aggregate(rfilter):
                groups[function] = Group(entry.name, function, reason, rows, 0, inline, first)
            oldest = tuple(
                (str(k), str(f), str(u)) for k, f, u in reader.oldest(rfilter, OLDEST_SHOWN)
            )
            matched: Counter[str] = Counter()
            refs_by_row: list[tuple[str, str]] = []
            for _key, function, location in reader.file_refs(rfilter):
                norm = normalize_location(location)
                if norm is None:
                    warnings.append(f"unsafe blob location {location!r}: file not touched")
                    continue
                matched[norm] += 1
                refs_by_row.append((function or "", norm))
        all_refs = _all_refs(reader)
    if rfilter is not None:
        seen: set[str] = set()
        for function, norm in refs_by_row:
            if norm in seen or all_refs[norm] > matched[norm]:
                continue  # counted once; or still named by a row that stays
            seen.add(norm)
            found = _stat_file(storage, norm)
            if found is None:
                continue  # dangling row: nothing on disk to free
            path, st = found
            files.append(_planned(entry.name, path, norm, reason, st, function))
            g = groups[function]
            groups[function] = Group(
                g.db, g.function, g.reason, g.rows, g.files + 1, g.bytes + st.st_size, g.oldest
            )
    extra: list[Group] = []
    if orphans and grace_seconds is not None:
        limit_ns = int((now.timestamp() - grace_seconds) * 1e9)
        orphan_files = []
        for blob in storage.iter_blobs():
            if blob.location in all_refs:
                continue
            found = _stat_file(storage, blob.location)
            if found is None or found[1].st_mtime_ns >= limit_ns:
                continue  # young: a writer may be about to commit its row
            orphan_files.append(_planned(entry.name, found[0], blob.location, ORPHAN, found[1]))
        temps = []
        for tmp in storage.list_temp_files():
            found = _stat_file(storage, tmp.location)
            if found is not None and found[1].st_mtime_ns < limit_ns:
                temps.append(_planned(entry.name, found[0], tmp.location, TEMP, found[1]))
        for kind, items in ((ORPHAN, orphan_files), (TEMP, temps)):
            if items:
                files.extend(items)
                extra.append(
                    Group(entry.name, "-", kind, 0, len(items), sum(f.size for f in items))
                )
    return DBPlan(
        entry.name,
        str(entry.path),
        str(entry.blob_dir),
        reason,
        rfilter,
        tuple(sorted(groups.values(), key=lambda g: g.function)) + tuple(extra),
        tuple(files),
        oldest,
        tuple(warnings),
    )


def _all_refs(reader: TaskReader) -> Counter[str]:
    """How many rows name each (normalized) blob location."""
    refs: Counter[str] = Counter()
    for location in reader.iter_blob_locations():
        norm = normalize_location(location)
        if norm is not None:
            refs[norm] += 1
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
    reason: str,
    rfilter: q.RowFilter | None,
    *,
    now: dt.datetime,
    cutoff: dt.datetime | None = None,
    grace_seconds: float | None = None,
    func: str | None = None,
    orphans: bool = False,
    timeout: float = 30.0,
) -> Plan:
    dbs, failures = [], []
    for entry in ws.dbs:
        try:
            dbs.append(
                _plan_db(
                    entry,
                    reason,
                    rfilter,
                    now=now,
                    grace_seconds=grace_seconds,
                    orphans=orphans,
                    timeout=timeout,
                )
            )
        except BeautySpotError as exc:
            failures.append(DBFailure(entry.name, str(entry.path), str(exc)))
    zombies = ()
    if orphans and grace_seconds is not None and not ws.single_db:
        zombies = tuple(_plan_zombie(z, now, grace_seconds) for z in ws.zombies)
    return Plan(command, now, cutoff, grace_seconds, func, tuple(dbs), zombies, tuple(failures))


def plan_gc(
    ws: Workspace,
    now: dt.datetime,
    grace: dt.timedelta = dt.timedelta(hours=1),
    *,
    expired: bool = True,
    orphans: bool = True,
    timeout: float = 30.0,
) -> Plan:
    """Expired rows and their blobs; orphans, stale temp files and zombie dirs past *grace*."""
    rfilter = q.RowFilter(expired_before=to_instant(now)) if expired else None
    return _make_plan(
        "gc",
        ws,
        EXPIRED,
        rfilter,
        now=now,
        grace_seconds=grace.total_seconds(),
        orphans=orphans,
        timeout=timeout,
    )


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
        "prune", ws, OLDER, rfilter, now=now, cutoff=cutoff, func=func, timeout=timeout
    )


def plan_clear(
    ws: Workspace, now: dt.datetime, func: str | None = None, *, timeout: float = 30.0
) -> Plan:
    """Every row (or every row of one function) and its blobs."""
    return _make_plan(
        "clear", ws, CLEARED, q.RowFilter(func=func), now=now, func=func, timeout=timeout
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

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BeautySpotError(f"cannot create lock file {self.path}: {exc.strerror}") from None
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


def _open_writer(path: str, timeout: float) -> sqlite3.Connection:
    """A write connection that never creates the file (``mode=rw``) and never migrates."""
    uri = "file:" + quote(str(Path(path).absolute()), safe="/") + "?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        q.register_functions(conn)
        schema = q.read_schema(conn)
    except sqlite3.Error as exc:
        raise describe_sqlite_error(path, exc) from None
    if schema is None:
        conn.close()
        raise DBError(f"{path}: no 'tasks' table (not a beautyspot task DB)")
    return conn


def _unlink_checked(planned: PlannedFile, conn: sqlite3.Connection | None) -> str | None:
    """Delete *planned* if it is still the file the plan saw; else say why it was kept."""
    if conn is not None and q.is_referenced(conn, planned.location):
        return "still referenced by a row"
    path = planned.path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "already gone"
    if (st.st_size, st.st_mtime_ns, st.st_ino) != (planned.size, planned.mtime_ns, planned.ino):
        return "changed since the plan"
    aside = f"{path}.gc{os.getpid()}.spot_tmp"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return "already gone"
    moved = os.lstat(aside)
    if (moved.st_ino, moved.st_mtime_ns) != (planned.ino, planned.mtime_ns):
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
    g = groups.get(key) or Group(*key)
    groups[key] = Group(
        g.db, g.function, g.reason, g.rows + rows, g.files + files, g.bytes + size, g.oldest
    )


def _execute_db(
    dbp: DBPlan,
    groups: dict,
    kept: list,
    progress: Progress,
    timeout: float,
    batch: int,
) -> None:
    conn = _open_writer(dbp.path, timeout)
    try:
        schema = q.read_schema(conn)
        try:
            conn.execute("BEGIN IMMEDIATE")
            q.ensure_indexes(conn, schema)
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        row_files = {f.location: f for f in dbp.files if f.reason == dbp.reason}
        if dbp.rfilter is not None:
            after = None
            while True:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    rows, after = q.select_batch(conn, schema, dbp.rfilter, after, batch)
                    q.delete_rowids(conn, [r.rowid for r in rows])
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                for r in rows:
                    _add(groups, (dbp.name, r.function or "", dbp.reason), 1, 0, r.data_size or 0)
                # Rows are committed as gone: now their files, each re-checked.
                for r in rows:
                    planned = row_files.pop(normalize_location(r.result_value) or "", None)
                    if planned is None:
                        continue
                    why = _unlink_checked(planned, conn)
                    if why is None:
                        _add(groups, (dbp.name, planned.function, dbp.reason), 0, 1, planned.size)
                    else:
                        kept.append((planned.path, why))
                progress(len(rows))
                if len(rows) < batch:
                    break
        for planned in dbp.files:
            if planned.reason in (ORPHAN, TEMP):
                why = _unlink_checked(planned, conn if planned.reason == ORPHAN else None)
                if why is None:
                    _add(groups, (dbp.name, "-", planned.reason), 0, 1, planned.size)
                else:
                    kept.append((planned.path, why))
                progress(1)
    finally:
        conn.close()


def _execute_zombie(zp: ZombiePlan, groups: dict, kept: list, progress: Progress) -> int:
    root = Path(zp.path)
    owner = root.parent if root.parent.name == "blobs" else root.parent.parent
    if any((owner / f"{zp.name}{s}").exists() for s in (".db", ".sqlite")):
        kept.extend((f.path, "its DB reappeared") for f in zp.files)
        return 0
    for planned in zp.files:
        why = _unlink_checked(planned, None)
        if why is None:
            _add(groups, (zp.name, "-", ZOMBIE), 0, 1, planned.size)
        else:
            kept.append((planned.path, why))
        progress(1)
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
) -> Result:
    """Carry out *plan* under the workspace lock; return what was really deleted."""
    groups: dict[tuple[str, str, str], Group] = {}
    for g in plan.groups:  # same lines as the preview, even where nothing went
        groups[(g.db, g.function, g.reason)] = Group(g.db, g.function, g.reason)
    kept: list[tuple[str, str]] = []
    failures = list(plan.failures)
    dirs_removed = 0
    with WorkspaceLock(ws.lock_path, lock_wait):
        for dbp in plan.dbs:
            try:
                _execute_db(dbp, groups, kept, progress, timeout, batch)
            except (sqlite3.Error, BeautySpotError) as exc:
                err = (
                    describe_sqlite_error(dbp.path, exc) if isinstance(exc, sqlite3.Error) else exc
                )
                failures.append(DBFailure(dbp.name, dbp.path, str(err)))
                continue
            if plan.command == "gc":
                dirs_removed += LocalStorage(dbp.blob_dir).prune_empty_dirs()
        for zp in plan.zombies:
            dirs_removed += _execute_zombie(zp, groups, kept, progress)
    return Result(plan.command, tuple(groups.values()), tuple(kept), tuple(failures), dirs_removed)


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
                expired = reader.count_matching(q.RowFilter(expired_before=to_instant(now)))
                oldest, newest = reader.time_range()
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


@dataclass(frozen=True)
class TaskDetail:
    db: str
    db_path: str
    row: q.TaskRow
    expired: bool | None  # None: no expiry, or unparsable
    blob_path: str | None
    blob_size: int | None
    blob_error: str | None
    payload: bytes | None = field(repr=False, default=None)


def find_tasks(
    ws: Workspace, key: str, limit: int = 50, timeout: float = 5.0
) -> tuple[list[tuple[DBEntry, str]], list[DBFailure]]:
    """(db, key) pairs whose key equals *key*, else those starting with it (bounded)."""
    exact, prefixed, failures = [], [], []
    for entry in ws.dbs:
        try:
            with TaskReader(entry.path, timeout) as reader:
                if reader.get_row(key) is not None:
                    exact.append((entry, key))
                    continue
                prefixed.extend((entry, k) for k in reader.keys_with_prefix(key, limit + 1))
        except BeautySpotError as exc:
            failures.append(DBFailure(entry.name, str(entry.path), str(exc)))
    return (exact or sorted(prefixed, key=lambda p: (p[1], p[0].name))), failures


def load_detail(entry: DBEntry, key: str, now: dt.datetime, timeout: float = 5.0) -> TaskDetail:
    """Everything ``show`` prints about one task; reads the payload (inline or blob)."""
    from .timeutil import parse_instant

    with TaskReader(entry.path, timeout) as reader:
        row = reader.get_row(key)
        if row is None:
            raise DBError(f"{entry.path}: task {key!r} vanished")
        payload = reader.get_payload(key)
    expiry = parse_instant(row.expires_at)
    expired = None if expiry is None else expiry < to_instant(now)
    blob_path = blob_size = blob_error = None
    if row.result_value is not None:
        storage = LocalStorage(entry.blob_dir)
        try:
            path = storage.resolve(row.result_value)
            blob_path = str(path)
            payload = storage.load(row.result_value)
            blob_size = len(payload)
        except BeautySpotError as exc:
            blob_error = str(exc)
            payload = None
    return TaskDetail(
        entry.name, str(entry.path), row, expired, blob_path, blob_size, blob_error, payload
    )


def iter_tasks(
    entry: DBEntry,
    rfilter: q.RowFilter,
    limit: int | None,
    timeout: float = 5.0,
) -> list[q.TaskRow]:
    """The tasks of one DB for ``ls DB``, newest first."""
    with TaskReader(entry.path, timeout) as reader:
        return reader.list_tasks(rfilter, limit)
