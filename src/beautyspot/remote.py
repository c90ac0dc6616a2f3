"""Maintenance of a task DB on a server: ``--db postgresql://… --blobs s3://bucket/prefix``.

The same commands, plans and results as for a SQLite workspace (:mod:`.maintenance`
builds and renders them; this module fills them in for a server DB), with the same
safety rules, adapted to a cache that workers on several machines share:

* **One run per database.**  ``gc``/``prune``/``clear``/``rm`` hold the database's
  PostgreSQL advisory lock (the one :meth:`PostgresTaskDB.maintenance_lock` takes) for
  the whole run instead of the workspace lock file, so two machines' crons never
  overlap; the second waits ``--timeout`` at most, then says who holds it.
* **The plan is what runs.**  Its cutoff and ``now`` are fixed once; a row written after
  the plan was made (``updated_at`` later than the plan's ``now``) is not the plan's.
* **Rows first, then blobs.**  Rows go in committed batches; a blob is deleted only if,
  just before, no row names it and the store still holds the object the plan saw (size,
  modification time; on S3 a conditional DELETE on its ETag, see :mod:`.s3storage`).
* **The grace period protects writers on other machines**: a worker uploads its blob
  before it writes the row, so an unnamed object younger than ``--grace`` is kept.
* **``--blobs`` must be this DB's own store.**  Only ``<name>.bin`` objects at its top
  can be orphans (where workers save them); a store holding none of the blobs the rows
  name is the wrong one, and the DB is skipped (exit 1) before anything is deleted.
* Without ``--blobs`` no blob is ever touched: a plan whose rows name blob files is
  refused for that DB (exit 1) rather than leaving their files behind unaccounted.

Not supported on a server DB (a one-line usage error): ``verify``, and ``gc``'s
``--max-size``/``--max-entries`` budgets.  There is no audit log file for a server DB
(no workspace directory to keep it in); ``--json`` gives the same record.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

from .errors import UsageError
from .storage import BLOB_SUFFIX
from .timeutil import parse_instant, to_instant
from .workspace import DBEntry, Workspace

STORE_WORKERS = 16  # concurrent blob deletions on S3


def db_name(url: str) -> str:
    """What the tables call a server DB: its database name."""
    from .postgres import _psycopg

    try:
        params = _psycopg().conninfo.conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - reported when connecting
        return "postgres"
    return str(params.get("dbname") or params.get("user") or "postgres")


def check_store(blobs: str) -> str:
    """*blobs* as a blob store target, or UsageError: ``s3://BUCKET[/PREFIX]`` (any case)
    or an existing directory.  A store that is not there must never read as empty: the
    rows would go and their real blobs stay behind, unaccounted for."""
    if not blobs:
        raise UsageError("--blobs must not be empty")
    if blobs[:5].lower() == "s3://":
        bucket = blobs[5:].split("/", 1)[0]
        if not bucket:
            raise UsageError(f"--blobs {blobs!r} names no bucket (s3://BUCKET/PREFIX)")
        return "s3://" + blobs[5:]
    if not Path(blobs).is_dir():
        raise UsageError(f"--blobs {blobs} is not an existing directory (nor s3://...)")
    return blobs


def server_workspace(url: str, blobs: str | None) -> Workspace:
    """A one-DB "workspace" for a server DB and its blob store (*blobs*: s3:// or a dir)."""
    entry = DBEntry(db_name(url), url, check_store(blobs) if blobs is not None else "", False, ())
    return Workspace(Path("."), (entry,), (), single_db=True)


# --------------------------------------------------------------------------- blob stores


class _Store:
    """The blob store of a server DB, as the plans need it: one listing, a checked delete."""

    def __init__(self, target: str):
        self.target = target
        if target.startswith("s3://"):
            from .s3storage import S3Storage

            self.s3 = S3Storage.from_url(target)
            self.local = None
        else:
            from .storage import LocalStorage

            self.s3 = None
            self.local = LocalStorage(target)

    def listing(self) -> dict[str, tuple[int, int, int]]:
        """location -> (size, mtime_ns, inode) of every blob (*.bin) in the store."""
        out = {}
        if self.s3 is not None:
            for blob in self.s3.iter_blobs():
                out[blob.location] = (blob.size, int(round(blob.mtime * 1e9)), 0)
            return out
        from .maintenance import _stat_file

        for blob in self.local.iter_blobs():
            found = _stat_file(self.local, blob.location)
            if found is not None:
                st = found[1]
                out[blob.location] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return out

    def resolve(self, location: str) -> str:
        if self.s3 is not None:
            return self.s3.resolve(location)
        from .maintenance import _entry_path

        return str(_entry_path(self.local, location))

    def delete_checked(self, location: str, size: int, mtime_ns: int, ino: int) -> str | None:
        """Delete the blob if it is still what the plan saw; else why it was kept."""
        if self.s3 is not None:
            return self.s3.delete_if_unchanged(location, size, mtime_ns / 1e9)
        from .maintenance import _unlink_checked

        return _unlink_checked(self.resolve(location), size, mtime_ns, ino)

    def load(self, location: str) -> bytes:
        return (self.s3 or self.local).load(location)


def open_store(target: str | None) -> _Store | None:
    return _Store(target) if target else None


# --------------------------------------------------------------------------- reports


def open_reader(url: str, timeout: float, writable: bool = False):
    from .pgreader import PostgresReader

    return PostgresReader(url, timeout, writable=writable)


def list_tasks(entry: DBEntry, rfilter, limit: int | None, timeout: float):
    with open_reader(entry.path, timeout) as r:
        return r.list_tasks(rfilter, limit)


def find_in(entry: DBEntry, key: str, limit: int, timeout: float) -> tuple[bool, list[str]]:
    """(*key* exists, keys starting with it) in a server DB."""
    with open_reader(entry.path, timeout) as r:
        if r.get_row(key) is not None:
            return True, []
        return False, r.keys_with_prefix(key, limit + 1)


# --------------------------------------------------------------------------- plans


def plan_db(
    entry: DBEntry, passes: list, *, now: dt.datetime, grace_seconds, orphans: bool, timeout: float
):
    """The :class:`~beautyspot.maintenance.DBPlan` of a server DB (see the module doc)."""
    import dataclasses

    from . import maintenance as mt
    from .pgreader import predicate

    written_before = to_instant(now)
    passes = [dataclasses.replace(rp, written_before=written_before) for rp in passes]
    groups: dict[tuple[str, str], mt.Group] = {}
    oldest: list[tuple[str, str, str]] = []
    warnings: list[str] = []
    # Locations are compared normalized (``./a.bin`` is ``a.bin``), as the SQLite planner
    # does: norm -> [rows of the plan naming it, function, reason].
    named: dict[str, list] = {}
    want_orphans = orphans and grace_seconds is not None
    with open_reader(entry.path, timeout) as r:
        for rp in passes:
            if rp.only_dangling:
                raise UsageError("verify --fix is not supported on a PostgreSQL task DB")
            cond, params = predicate(rp.rfilter, written_before)
            for function, rows, inline, first in r.groups(cond, params):
                groups[(function, rp.reason)] = mt.Group(
                    entry.name, function, rp.reason, rows, 0, inline, first
                )
            oldest += r.oldest(cond, params, mt.OLDEST_SHOWN)
            for location, function, n in r.matched_locations(cond, params):
                norm = mt.normalize_location(location)
                if norm is None or not norm.endswith(BLOB_SUFFIX):
                    warnings.append(
                        f"blob location {location!r} is unsafe or not a *.bin: not touched"
                    )
                elif norm in named:
                    named[norm][0] += n
                else:
                    named[norm] = [n, function, rp.reason]
        totals = mt.normalized_counts(r.location_counts().items()) if named or want_orphans else {}
    store = open_store(entry.blob_dir)
    if store is None and named:
        raise UsageError(
            f"{len(named)} blob files are named by tasks this would delete: give --blobs"
            " s3://BUCKET/PREFIX (or the directory the workers share)"
        )
    listing = store.listing() if store is not None and (named or want_orphans) else {}
    if totals and store is not None and not any(norm in listing for norm in totals):
        # The DB names blob files and the store holds none of them: the wrong bucket,
        # prefix or directory.  Everything in it would look like an orphan.
        raise UsageError(
            f"none of the {len(totals)} blob files this DB's rows name is in --blobs"
            f" {entry.blob_dir}: is it this DB's store? Nothing deleted"
        )
    files: list[tuple] = []
    for norm, (matched, function, reason) in named.items():
        if totals.get(norm, 0) > matched:
            continue  # a row that stays still names it
        seen = listing.get(norm)
        if seen is None:
            continue  # a dangling row: nothing stored to free
        files.append((norm, seen[0], seen[1], seen[2], function, reason))
        g = groups[(function, reason)]
        groups[(function, reason)] = dataclasses.replace(
            g, files=g.files + 1, bytes=g.bytes + seen[0]
        )
    extra = []
    if want_orphans and store is not None and not totals and listing:
        warnings.append(
            f"no row names a blob file, but --blobs {entry.blob_dir} holds {len(listing)}:"
            " not collected as orphans (give --blobs only for this DB's own store)"
        )
    elif want_orphans and store is not None:
        limit_ns = int((now.timestamp() - grace_seconds) * 1e9)
        # Workers save blobs as `<key>.bin` at the top of the store: an object further
        # down (another tool's, another cache's under a longer prefix) is never an orphan.
        orphan_files = [
            (loc, size, mtime, ino, "-", mt.ORPHAN)
            for loc, (size, mtime, ino) in listing.items()
            if "/" not in loc and loc not in totals and mtime < limit_ns
        ]
        if orphan_files:
            files.extend(orphan_files)
            extra.append(
                mt.Group(
                    entry.name,
                    "-",
                    mt.ORPHAN,
                    0,
                    len(orphan_files),
                    sum(f[1] for f in orphan_files),
                )
            )
    oldest.sort(key=lambda o: parse_instant(o[2]) or 0)
    return mt.DBPlan(
        entry.name,
        entry.path,
        entry.blob_dir,
        tuple(passes),
        tuple(sorted(groups.values(), key=lambda g: (g.reason, g.function))) + tuple(extra),
        mt.PlannedFiles.build(entry.name, entry.blob_dir, files),
        tuple(oldest[: mt.OLDEST_SHOWN]),
        tuple(warnings),
        (),
    )


def run_lock(plan, wait: float, timeout: float) -> AbstractContextManager:
    """The advisory locks of every server DB of *plan*, held for the run."""
    from contextlib import ExitStack

    stack = ExitStack()
    try:
        for dbp in plan.dbs:
            reader = stack.enter_context(open_reader(dbp.path, timeout, writable=True))
            stack.enter_context(reader.maintenance_lock(wait))
    except BaseException:
        stack.close()
        raise
    return stack


def execute_db(dbp, ctx, timeout: float, batch: int = 5000) -> None:
    """Carry out one server DB's plan: rows in committed batches, then its blobs."""
    from . import maintenance as mt

    files = dbp.files
    pending = bytearray(len(files))
    with open_reader(dbp.path, timeout, writable=True) as r:
        for rp in dbp.passes:
            for rows in r.delete_batches(rp.rfilter, rp.written_before, batch):
                per_function: dict[str, list[int]] = {}
                for _key, function, size, location in rows:
                    acc = per_function.setdefault(function, [0, 0])
                    acc[0] += 1
                    acc[1] += size or 0
                    norm = mt.normalize_location(location) if location is not None else None
                    if norm is not None and len(files):
                        i = files.find(norm)
                        if i >= 0 and files.kind(i)[1] == rp.reason:
                            pending[i] = 1
                for function, (n, size) in per_function.items():
                    mt._add(ctx.groups, (dbp.name, function, rp.reason), n, 0, size)
                ctx.progress(len(rows))
        for i, kind in enumerate(files.kinds):
            if files.kind_table[kind][1] == mt.ORPHAN:
                pending[i] = 1
        if not any(pending):
            return
        # Just before deleting: which of them does a row (still, or newly) name?
        named_now = mt.normalized_counts(r.location_counts().items())
    store = open_store(dbp.blob_dir)  # planned files imply a store (plan_db)
    assert store is not None
    todo = []
    for i in range(len(files)):
        if not pending[i]:
            continue
        if files.locations[i] in named_now:
            ctx.kept.append((store.resolve(files.locations[i]), "still referenced by a row"))
            ctx.progress(1)
        else:
            todo.append(i)

    def delete(i: int) -> str | None:
        location = files.locations[i]
        return store.delete_checked(location, files.sizes[i], files.mtimes_ns[i], files.inodes[i])

    # Each check-and-delete is on its own object: on S3 that is two requests (HEAD, then a
    # DELETE conditional on the ETag) whose latency, not work, is the cost, so they overlap.
    workers = STORE_WORKERS if store.s3 is not None else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, why in zip(todo, pool.map(delete, todo), strict=True):
            function, reason = files.kind(i)
            if why is None:
                mt._add(ctx.groups, (dbp.name, function, reason), 0, 1, files.sizes[i])
            else:
                ctx.kept.append((store.resolve(files.locations[i]), why))
            ctx.progress(1)
