"""Finding one task by key or prefix and reading everything ``show`` prints about it.

Kept apart from :mod:`beautyspot.maintenance` (plans, deletion) so that ``show``
imports only what reading one row needs: it is the command people type most, and
its start-up time is most of its run time.
"""

from __future__ import annotations

import datetime as dt
from collections import namedtuple

from .errors import BeautySpotError, DBError
from .reader import TaskReader
from .storage import LocalStorage
from .timeutil import parse_instant, to_instant
from .workspace import DBEntry, Workspace, is_remote

# Named tuples, not dataclasses: see the note above sql.Schema.


class DBFailure(namedtuple("DBFailure", "db path message")):
    """A DB a command skipped, and why (reported, exit status 1); all three are str."""

    __slots__ = ()


_DETAIL_FIELDS = "db db_path row expired blob_path blob_size blob_error payload"


class TaskDetail(namedtuple("TaskDetail", _DETAIL_FIELDS, defaults=(None,))):
    """One task for ``show``: ``db``/``db_path`` (str), ``row`` (TaskRow), ``expired``
    (bool, None when it has no expiry or an unparsable one), the blob file's
    ``blob_path``/``blob_size``/``blob_error`` (each None when not applicable) and the
    ``payload`` bytes (inline or read from the blob; left out of the repr)."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in zip(self._fields[:-1], self[:-1], strict=True))
        return f"TaskDetail({shown})"


def find_tasks(
    ws: Workspace, key: str, limit: int = 50, timeout: float = 5.0
) -> tuple[list[tuple[DBEntry, str]], list[DBFailure]]:
    """(db, key) pairs whose key equals *key*, else those starting with it (bounded)."""
    exact, prefixed, failures = [], [], []
    for entry in ws.dbs:
        try:
            if is_remote(entry):
                from .remote import find_in

                found, keys = find_in(entry, key, limit, timeout)
                if found:
                    exact.append((entry, key))
                else:
                    prefixed.extend((entry, k) for k in keys)
                continue
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
    if is_remote(entry):
        from .remote import open_reader, open_store

        reader, storage = open_reader(entry.path, timeout), open_store(entry.blob_dir)
    else:
        reader, storage = TaskReader(entry.path, timeout), LocalStorage(entry.blob_dir)
    with reader:
        row = reader.get_row(key)
        if row is None:
            raise DBError(f"{entry.path}: task {key!r} vanished")
        payload = reader.get_payload(key)
    expiry = parse_instant(row.expires_at)
    expired = None if expiry is None else expiry < to_instant(now)
    blob_path = blob_size = blob_error = None
    if row.result_value is not None:
        try:
            if storage is None:  # a server DB given without --blobs
                raise BeautySpotError("its result is a blob file: give --blobs to read it")
            blob_path = str(storage.resolve(row.result_value))
            payload = storage.load(row.result_value)
            blob_size = len(payload)
        except BeautySpotError as exc:
            blob_error = str(exc)
            payload = None
    return TaskDetail(
        entry.name, str(entry.path), row, expired, blob_path, blob_size, blob_error, payload
    )
