"""Copy one SQLite task DB, and its blob files, to a shared task DB (and blob store).

``beautyspot migrate --from .beautyspot/x.db --to postgresql://… --blobs s3://bucket/x``
is how a team moves an existing cache to the scale-out backends.  Decisions:

* **Nothing at the source changes.**  The source is read through :class:`TaskReader`
  (read-only, no migration), its blob files are only read.
* **The newer write wins.**  A row the target already holds with the same or a later
  ``updated_at`` is left alone (a re-run, or a worker that has already written there);
  otherwise the source row is upserted with its own ``updated_at``, so ages, ``prune``
  and history stay what they were.  The server applies the rule again as it writes
  (a conditional upsert), so a worker's write landing meanwhile is never replaced.  The
  target is looked up batch by batch, by key: nothing assumes that SQLite (whose order
  depends on the DB's text encoding) and PostgreSQL sort keys alike.
* **Resumable.**  Rows are copied a batch per transaction, and a FILE row's blob is
  uploaded before the row that names it (a reader never sees a row without its blob).
  A run that is killed is simply run again: what it copied is found present and not
  copied twice; a blob missing for a row already there is uploaded then.
* **A dry run only reads** the target (no table created, no migration).
* **Verified by counts.**  After copying, the source is walked again against the
  target: every row that could be copied must be there with the same or a later
  ``updated_at``, and every blob it names must be in the store with its size.
* **What cannot be copied is reported, never guessed.**  A timestamp that does not
  parse (``timestamptz`` cannot hold it), text that is not UTF-8 or holds NUL (PostgreSQL
  text cannot), an unsafe or nested blob location: the row is skipped and listed, and
  the run exits 1.  A FILE row whose blob file is missing (dangling) is not copied
  either: the cache recomputes it; it is counted, not an error.
* Expired rows are copied like any other: ``gc`` on the target removes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

from .errors import StorageError, UnsafePathError, UsageError
from .reader import TaskReader
from .storage import BLOB_SUFFIX, LocalStorage
from .timeutil import parse_datetime, parse_instant, to_instant
from .workspace import DBEntry

FILE = "FILE"
SKIPPED_SHOWN = 50  # rows listed by key in a report; the count is always complete


class BlobStore(Protocol):
    """What migrate needs of a target blob store (S3Storage, LocalStorage)."""

    def save(self, key: str, data: bytes) -> str: ...

    def iter_blobs(self) -> Iterator: ...


class TargetDB(Protocol):
    """What migrate needs of a target task DB (PostgresTaskDB; a dry run only reads)."""

    def save_many(self, rows: Iterable[tuple], *, newer_only: bool = False) -> int: ...

    def updated_at_of(self, keys: list[str]) -> dict[str, str]: ...


class MigrationReport(NamedTuple):
    """What a migration did (or, with ``dry_run``, would do)."""

    source: str
    target: str
    blobs: str | None
    dry_run: bool
    rows: int  # rows in the source
    copied: int  # rows written to the target (dry run: that would be)
    present: int  # already in the target with the same or a later updated_at
    dangling: int  # FILE rows whose blob file is missing at the source: not copied
    blobs_copied: int
    blobs_present: int  # already in the store with the same size
    skipped: int  # rows that cannot be copied (see `skipped_rows`)
    skipped_rows: tuple[tuple[str, str], ...]  # (cache_key, reason), the first SKIPPED_SHOWN
    verified: int  # rows found in the target afterwards (0 for a dry run)
    missing: int  # rows that should be in the target and are not (or a blob is not)

    @property
    def expected(self) -> int:
        """Rows that must be in the target after the run."""
        return self.rows - self.skipped - self.dangling

    @property
    def ok(self) -> bool:
        return self.skipped == 0 and self.missing == 0


def open_blob_store(target: str, source_dir) -> BlobStore:
    """``s3://BUCKET/PREFIX`` (the scheme in any case, as ``--blobs`` of the other commands
    takes it) or a directory the workers share, which must not be the source's own."""
    if target[:5].lower() == "s3://":
        from .s3storage import S3Storage

        return S3Storage.from_url(target)
    store = LocalStorage(target)
    if store.base_dir == LocalStorage(source_dir).base_dir:
        raise UsageError(f"--blobs {target} is the source's own blob directory")
    return store


class _Row(NamedTuple):
    values: tuple  # save() order + updated_at, ready for TargetDB.save_many
    instant: int  # updated_at, µs
    blob: str | None  # location of a FILE row's blob


def _prepare(raw: tuple, storage: LocalStorage) -> _Row | str:
    """The row to copy, or why it cannot be copied."""
    from .postgres import SAVE_COLUMNS, check_text

    for column, value in zip(SAVE_COLUMNS, raw, strict=True):
        try:
            check_text(column, value)
        except ValueError as exc:
            return str(exc)
    key, *_rest = raw
    if not isinstance(key, str) or not key:
        return "cache_key is not text"
    updated = parse_datetime(raw[10])
    if updated is None:
        return "updated_at is missing or unparsable"
    expires = raw[9]
    if expires is not None:
        expires = parse_datetime(expires)
        if expires is None:
            return "expires_at is unparsable"
    location = raw[7]
    blob = None
    if raw[5] == FILE and location is not None:
        if not isinstance(location, str):
            return "result_value is not text"
        if "/" in location or "\\" in location or not location.endswith(BLOB_SUFFIX):
            return f"blob location {location!r} is not a plain <name>.bin"
        try:
            storage.resolve(location)
        except UnsafePathError:
            return f"unsafe blob location {location!r}"
        blob = location
    return _Row((*raw[:9], expires, updated), to_instant(updated), blob)


def _store_sizes(store: BlobStore | None) -> dict[str, int]:
    if store is None:
        return {}
    return {b.location: b.size for b in store.iter_blobs()}


def _instants(target: TargetDB, rows: list[_Row]) -> dict[str, int | None]:
    """The target's updated_at (µs) of those of *rows*' keys it holds."""
    have = target.updated_at_of([r.values[0] for r in rows])
    return {key: parse_instant(updated) for key, updated in have.items()}


def _batches(reader: TaskReader, source: LocalStorage, size: int) -> Iterator[list]:
    """The source rows, *size* at a time, each prepared (a _Row) or why it cannot be."""
    batch: list = []
    for raw in reader.iter_for_copy():
        batch.append((raw, _prepare(raw, source)))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _copyable(
    chunk: list, source: LocalStorage
) -> tuple[list[tuple[_Row, int | None]], list[tuple[str, str]], int]:
    """A batch split three ways: (row, blob size) of the rows to copy; (key, reason) of
    those that cannot be; how many are dangling (their blob file is missing: not copied)."""
    ready, unfit, dangling = [], [], 0
    for raw, row in chunk:
        if isinstance(row, str):
            unfit.append((str(raw[0]), row))
            continue
        size = source.size(row.blob) if row.blob is not None else None
        if row.blob is not None and size is None:
            dangling += 1
            continue
        ready.append((row, size))
    return ready, unfit, dangling


def migrate(
    entry: DBEntry,
    target: TargetDB,
    store: BlobStore | None,
    *,
    target_name: str,
    store_name: str | None = None,
    dry_run: bool = False,
    batch: int = 1000,
    timeout: float = 30.0,
    progress: Callable[[int], None] = lambda n: None,
) -> MigrationReport:
    """Copy *entry*'s rows to *target* and their blobs to *store*; see the module doc.

    The target is looked up batch by batch (no assumption on how either side orders
    keys), and written with a conditional upsert, so a worker's newer write that lands
    meanwhile is never replaced.  With *dry_run*, *target* is only read.  Raises
    UsageError when the source has FILE rows and *store* is None.
    """
    source = LocalStorage(entry.blob_dir)
    sizes = _store_sizes(store)
    rows = copied = present = dangling = blobs_copied = blobs_present = skipped = 0
    shown: list[tuple[str, str]] = []

    def upload(row: _Row, size: int) -> None:
        """The blob of *row*, unless the store already holds it (a re-run)."""
        nonlocal blobs_copied, blobs_present
        assert store is not None and row.blob is not None  # checked before the first row
        if sizes.get(row.blob) == size:
            blobs_present += 1
            return
        if not dry_run:
            location = store.save(row.blob[: -len(BLOB_SUFFIX)], source.load(row.blob))
            if location != row.blob:
                raise StorageError(f"blob store saved {row.blob!r} as {location!r}")
            sizes[row.blob] = size
        blobs_copied += 1

    with TaskReader(entry.path, timeout) as reader:
        if store is None and reader.has_file_rows():
            raise UsageError(
                f"{entry.path} has FILE rows (results in blob files): give --blobs"
                " s3://BUCKET/PREFIX, or a directory the workers share"
            )
        for chunk in _batches(reader, source, batch):
            rows += len(chunk)
            ready, unfit, missing_blob = _copyable(chunk, source)
            skipped += len(unfit)
            shown += unfit[: SKIPPED_SHOWN - len(shown)]
            dangling += missing_blob
            have = _instants(target, [row for row, _size in ready])
            to_copy = []
            for row, size in ready:
                theirs = have.get(row.values[0])
                if theirs is not None and theirs > row.instant:
                    present += 1  # a newer write at the target: its blob is its own
                    continue
                if row.blob is not None:
                    upload(row, size)  # also for a row already copied whose blob is not
                if theirs is not None and theirs == row.instant:
                    present += 1
                else:
                    to_copy.append(row)
            if to_copy and not dry_run:
                target.save_many((r.values for r in to_copy), newer_only=True)
            copied += len(to_copy)
            progress(len(chunk))
    verified = missing = 0
    if not dry_run:
        verified, missing = verify_copy(entry, target, store, batch=batch, timeout=timeout)
    return MigrationReport(
        str(entry.path),
        target_name,
        store_name,
        dry_run,
        rows,
        copied,
        present,
        dangling,
        blobs_copied,
        blobs_present,
        skipped,
        tuple(shown),
        verified,
        missing,
    )


def verify_copy(
    entry: DBEntry,
    target: TargetDB,
    store: BlobStore | None,
    *,
    batch: int = 1000,
    timeout: float = 30.0,
) -> tuple[int, int]:
    """(rows found, rows missing): every source row that can be copied must be in the
    target with the same or a later updated_at, and, unless the target's is later, its
    blob in *store* with its size."""
    source = LocalStorage(entry.blob_dir)
    sizes = _store_sizes(store)
    found = missing = 0
    with TaskReader(entry.path, timeout) as reader:
        for chunk in _batches(reader, source, batch):
            ready, _unfit, _dangling = _copyable(chunk, source)
            have = _instants(target, [row for row, _size in ready])
            for row, size in ready:
                theirs = have.get(row.values[0])
                if theirs is None or theirs < row.instant:
                    missing += 1
                elif theirs == row.instant and row.blob is not None and sizes.get(row.blob) != size:
                    missing += 1
                else:
                    found += 1
    return found, missing
