"""Discovery of the task DBs and blob directories of a ``.beautyspot`` workspace.

Layout (SPEC §2)::

    <root>/<name>.db | <name>.sqlite   task DBs
    <root>/blobs/<name>/               their blob files
    <root>/<name>/blobs/               legacy blob location, used when blobs/<name>/ is absent

A blob directory with no DB of its name beside it is a *zombie*.  Discovery only
looks: it opens no DB and creates nothing.
"""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

from .errors import UsageError
from .readonly import DB_SUFFIXES, is_db_name

# Named tuples, not dataclasses: see the note above sql.Schema.


class DBEntry(
    namedtuple("DBEntry", "name path blob_dir legacy_layout sharers", defaults=(False, ()))
):
    """One task DB: ``name`` (str), ``path`` (Path) and ``blob_dir`` (Path, may not
    exist), where its blobs live; ``legacy_layout``: ``<name>/blobs/`` rather than
    ``blobs/<name>/``.  ``sharers`` (tuple of Path): the other task DBs of the same name
    (``t.db`` and ``t.sqlite``), which use the same blob dir: a blob one of them names
    is never an orphan of another."""

    __slots__ = ()


class ZombieDir(namedtuple("ZombieDir", "name path")):
    """A blob directory whose DB is gone: ``name`` (str), ``path`` (Path)."""

    __slots__ = ()


class Workspace(namedtuple("Workspace", "root dbs zombies single_db", defaults=(False,))):
    """``root`` (Path), ``dbs`` (tuple of DBEntry), ``zombies`` (tuple of ZombieDir);
    ``single_db``: opened with --db, one DB and no zombie sweep."""

    __slots__ = ()

    @property
    def lock_path(self) -> Path:
        return self.root / ".beautyspot.lock"


def is_server_url(text: object) -> bool:
    """``postgresql://`` or ``postgres://`` (any case, as libpq takes them): a task DB on a
    server, not a file (:mod:`beautyspot.remote`); paths and ``Path`` objects never are."""
    return isinstance(text, str) and text.strip().lower().startswith(
        ("postgresql://", "postgres://")
    )


def is_remote(entry: DBEntry) -> bool:
    """Whether *entry* is a server DB: its ``path`` is then the URL (a str), its
    ``blob_dir`` the blob store (``s3://…``, a directory, or "" for none)."""
    return isinstance(entry.path, str) and is_server_url(entry.path)


def blob_dir_for(root: Path, name: str) -> tuple[Path, bool]:
    """The blob directory of DB *name*: ``blobs/<name>/``, else legacy ``<name>/blobs/``."""
    modern = root / "blobs" / name
    legacy = root / name / "blobs"
    if not modern.is_dir() and legacy.is_dir():
        return legacy, True
    return modern, False


def _is_db_file(entry: os.DirEntry) -> bool:
    return is_db_name(entry.name)


def discover(
    root: str | os.PathLike,
    db: str | os.PathLike | None = None,
    blobs: str | None = None,
) -> Workspace:
    """Find the DBs of workspace *root*, or just *db* (a path, or a DB name in *root*;
    or a ``postgresql://`` URL, whose blob files are in *blobs*).

    Raises UsageError for a missing workspace or DB: a mistyped path must never be
    mistaken for an empty cache.
    """
    if is_server_url(db):
        from .remote import server_workspace

        return server_workspace(str(db).strip(), blobs)
    if blobs:
        raise UsageError("--blobs goes with a postgresql:// --db (a workspace has its blob dirs)")
    root = Path(root)
    if db is not None:
        entry = _single(root, Path(db))
        return Workspace(entry.path.parent, (entry,), (), single_db=True)
    if not root.exists():
        raise UsageError(
            f"workspace {root} does not exist (use --workspace or BEAUTYSPOT_WORKSPACE)"
        )
    if not root.is_dir():
        raise UsageError(f"workspace {root} is not a directory")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise UsageError(f"workspace {root} cannot be read: {exc.strerror}") from None
    dbs: list[DBEntry] = []
    names: set[str] = set()
    for entry in entries:
        if _is_db_file(entry) and not entry.is_dir(follow_symlinks=False):
            name = entry.name.rsplit(".", 1)[0]
            blob_dir, legacy = blob_dir_for(root, name)
            dbs.append(DBEntry(name, Path(entry.path), blob_dir, legacy))
            names.add(name)
        elif _is_db_file(entry):
            # A directory named like a DB is reported as a broken DB, not ignored.
            name = entry.name.rsplit(".", 1)[0]
            dbs.append(DBEntry(name, Path(entry.path), root / "blobs" / name))
            names.add(name)
    return Workspace(root, tuple(_with_sharers(dbs)), tuple(_zombies(root, names)))


def _with_sharers(dbs: list[DBEntry]) -> list[DBEntry]:
    by_name: dict[str, list[Path]] = {}
    for entry in dbs:
        by_name.setdefault(entry.name, []).append(entry.path)
    return [
        e._replace(sharers=tuple(p for p in by_name[e.name] if p != e.path))
        if len(by_name[e.name]) > 1
        else e
        for e in dbs
    ]


def _zombies(root: Path, names: set[str]) -> list[ZombieDir]:
    found: list[ZombieDir] = []
    blobs = root / "blobs"
    if blobs.is_dir() and not blobs.is_symlink():
        for entry in sorted(os.scandir(blobs), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False) and entry.name not in names:
                found.append(ZombieDir(entry.name, Path(entry.path)))
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        legacy = Path(entry.path) / "blobs"
        if (
            entry.is_dir(follow_symlinks=False)
            and entry.name not in names
            and entry.name != "blobs"
            and legacy.is_dir()
            and not legacy.is_symlink()
            and not (blobs / entry.name).is_dir()
        ):
            found.append(ZombieDir(entry.name, legacy))
    return found


def _single(root: Path, db: Path) -> DBEntry:
    candidate = db
    if len(db.parts) == 1 and root.is_dir():
        # --db NAME: a DB of the workspace first (with or without its suffix), so a
        # folder of the same name in the current directory does not shadow it.
        # Suffixed names first: `old` may also be the legacy blob folder `old/`.
        for suffix in (*DB_SUFFIXES, ""):
            if (root / f"{db}{suffix}").is_file():
                candidate = root / f"{db}{suffix}"
                break
    if not candidate.exists():
        raise UsageError(f"task DB {db} does not exist")
    if candidate.is_dir():
        raise UsageError(f"--db {db} is a directory, not a task DB")
    if not candidate.is_file():
        raise UsageError(f"--db {db} is not a regular file")
    name = candidate.name.rsplit(".", 1)[0] if candidate.suffix else candidate.name
    blob_dir, legacy = blob_dir_for(candidate.parent, name)
    sharers = tuple(
        sibling
        for sibling in (candidate.parent / f"{name}{suffix}" for suffix in DB_SUFFIXES)
        if sibling.name != candidate.name and sibling.is_file()
    )
    return DBEntry(name, candidate, blob_dir, legacy, sharers)


def db_size(path: Path) -> int:
    """Bytes on disk of a DB with its ``-wal`` and ``-shm`` files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(f"{path}{suffix}").st_size
        except OSError:
            pass
    return total
