"""Blob files of one task DB: ``<blob dir>/<key>.bin``.

:class:`LocalStorage` knows files and nothing about policy: it saves, reads, lists and
deletes blob files, and ``beautyspot.maintenance`` decides *what* to delete.

Two rules shape everything here:

* **Locations are untrusted.** A blob location comes from a ``result_value`` column that
  anybody (or any bug) may have written.  Every method that takes a location confines it to
  the blob directory first (:meth:`LocalStorage.resolve`) and raises
  :class:`~beautyspot.errors.UnsafePathError` for anything that could reach outside it:
  absolute paths, drive letters, ``..`` components (``/`` and ``\\`` both count as
  separators), NUL bytes, and symlinks whose target lies outside.
* **Reading never writes.** Only :meth:`LocalStorage.save` creates the blob directory;
  listing a directory that does not exist returns nothing, so a dry run or a ``show``
  leaves the disk exactly as it found it.

Writes are atomic (temp file ``*.spot_tmp`` in the same directory, fsync, ``os.replace``),
so a reader sees either the old blob or the new one, and an interrupted write leaves a
``*.spot_tmp`` file that :meth:`LocalStorage.clean_temp_files` removes later.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections import namedtuple
from collections.abc import Iterable, Iterator
from pathlib import Path

from beautyspot.errors import StorageError, UnsafePathError

BLOB_SUFFIX = ".bin"
TEMP_SUFFIX = ".spot_tmp"
GITIGNORE_NAME = ".gitignore"
GITIGNORE_CONTENT = "*\n"

# Windows drive ("C:x", "c:\\x"); refused on every OS because a DB may travel between them.
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
# Flags that exist only on some platforms; 0 is a harmless no-op elsewhere.
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class BlobFile(namedtuple("BlobFile", "location size mtime")):
    """One file found by a directory walk (a named tuple: see the note above sql.Schema).

    ``location`` (str) is relative to the blob directory with ``/`` separators (the form
    stored in the DB); ``size`` (int) and ``mtime`` (float) are those of the directory
    entry itself (``lstat``), so a plan can later check that the entry it saw has not
    been rewritten.
    """

    __slots__ = ()


def _quote(text: str) -> str:
    """Show a location on one line, with control characters escaped."""
    return repr(text)


class LocalStorage:
    """Blob files under one directory (``.beautyspot/blobs/<name>/``).

    ``base_dir`` is made absolute once, at construction, so a later ``chdir`` does not move it.
    It need not exist: only :meth:`save` creates it (with a ``.gitignore`` of ``*``, like
    upstream does, so blobs never end up in a commit).
    """

    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self.base_dir = Path(os.path.abspath(os.fspath(base_dir)))

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.base_dir)!r})"

    # ------------------------------------------------------------------ confinement

    @staticmethod
    def check_syntax(location: str) -> None:
        """Refuse locations that are unsafe whatever the disk holds.

        ``\\`` is treated as a separator here even on POSIX: a DB written on Windows may say
        ``..\\x.bin``, and that must never be taken for a harmless file name.  Once accepted,
        a location is used as written, so on POSIX a ``\\`` stays part of a file name and
        the path matches what :meth:`iter_blobs` lists.
        """
        if not isinstance(location, str):
            raise UnsafePathError(f"blob location must be text, not {type(location).__name__}")
        if not location:
            raise UnsafePathError("empty blob location")
        if "\x00" in location:
            raise UnsafePathError(f"blob location contains a NUL byte: {_quote(location)}")
        normalized = location.replace("\\", "/")
        if normalized.startswith("/"):
            raise UnsafePathError(f"absolute blob location refused: {_quote(location)}")
        if _DRIVE_RE.match(normalized):
            raise UnsafePathError(f"blob location with a drive letter refused: {_quote(location)}")
        parts = [part for part in normalized.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise UnsafePathError(f"blob location with '..' refused: {_quote(location)}")
        if not parts:
            raise UnsafePathError(f"blob location names no file: {_quote(location)}")

    def _real_base(self) -> str:
        return os.path.normcase(os.path.realpath(self.base_dir))

    @staticmethod
    def _is_inside(real_path: str, real_base: str) -> bool:
        """True when ``real_path`` lies strictly below ``real_base`` (both realpath'd)."""
        real_path = os.path.normcase(real_path)
        try:
            common = os.path.commonpath([real_base, real_path])
        except ValueError:  # different drives on Windows
            return False
        return common == real_base and real_path != real_base

    def _confine(self, location: str) -> tuple[Path, str]:
        """Return (path of the directory entry, its real path) or raise UnsafePathError."""
        self.check_syntax(location)
        path = self.base_dir / location
        real = os.path.realpath(path)
        if not self._is_inside(real, self._real_base()):
            raise UnsafePathError(
                f"blob location resolves outside the blob directory: {_quote(location)}"
            )
        return path, real

    def resolve(self, location: str) -> Path:
        """Absolute path of ``location``, guaranteed to stay inside the blob directory.

        The path returned is the directory entry itself (a symlink inside the blob dir that
        points elsewhere inside is returned as the link, so deleting it removes the link, not
        another blob).  Raises :class:`UnsafePathError` for absolute paths, drive letters,
        NUL bytes, empty locations, any ``..`` component, and anything whose real path
        (symlinks followed) is not strictly inside the real blob directory.
        """
        return self._confine(location)[0]

    # ------------------------------------------------------------------ write

    def _ensure_base_dir(self) -> None:
        """Create the blob directory; add ``.gitignore`` only if this call created it."""
        base = self.base_dir
        if base.is_dir():
            return
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            try:
                base.mkdir()
            except FileExistsError:
                if not base.is_dir():
                    raise
                return  # a concurrent writer created it (and writes the .gitignore)
            (base / GITIGNORE_NAME).write_text(GITIGNORE_CONTENT, encoding="utf-8")
        except OSError as exc:
            raise StorageError(
                f"cannot create blob directory {base}: {exc.strerror or exc}"
            ) from exc

    def save(self, key: str, data: bytes) -> str:
        """Write ``data`` to ``<key>.bin`` atomically and return that location.

        The bytes go to a uniquely named ``*.spot_tmp`` file in the same directory, are
        fsynced, then renamed over the target, so readers never see a half-written blob and
        a crash leaves at most a temp file.  ``os.replace`` replaces a symlink entry rather
        than writing through it.  Keys that are empty or contain ``/``, ``\\``, NUL or
        ``..`` are refused before anything is created.
        """
        if not isinstance(key, str) or not key:
            raise UnsafePathError("empty blob key")
        for bad in ("/", "\\", "\x00", ".."):
            if bad in key:
                raise UnsafePathError(f"blob key contains {bad!r}: {_quote(key)}")
        location = key + BLOB_SUFFIX
        self.check_syntax(location)  # also refuses drive-letter-like keys such as "C:x"

        self._ensure_base_dir()
        target = self.base_dir / location
        temp = self.base_dir / f"{location}.{os.urandom(8).hex()}{TEMP_SUFFIX}"
        try:
            # O_EXCL: never reuse or follow an existing entry; mode 0o666 lets the umask
            # decide permissions, as for any ordinary file the user's program writes.
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot write blob {_quote(location)}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException as exc:
            try:
                os.unlink(temp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise StorageError(
                    f"cannot write blob {_quote(location)}: {exc.strerror or exc}"
                ) from exc
            raise
        self._fsync_dir()
        return location

    def _fsync_dir(self) -> None:
        """Make the rename durable (POSIX); best effort, some platforms cannot do it."""
        try:
            dir_fd = os.open(self.base_dir, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    # ------------------------------------------------------------------ read

    def load(self, location: str) -> bytes:
        """Bytes of the blob at ``location``; :class:`StorageError` if missing or unreadable.

        The file opened is the real path just checked, with ``O_NOFOLLOW`` so a symlink
        swapped in after the check is refused, and ``O_NONBLOCK`` so a FIFO cannot hang us.
        """
        _, real = self._confine(location)
        flags = os.O_RDONLY | _O_BINARY | _O_NOFOLLOW | _O_NONBLOCK
        try:
            fd = os.open(real, flags)
        except FileNotFoundError as exc:
            raise StorageError(
                f"blob file not found: {_quote(location)} in {self.base_dir}"
            ) from exc
        except OSError as exc:
            raise StorageError(f"cannot read blob {_quote(location)}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise StorageError(f"blob location is not a regular file: {_quote(location)}")
                return handle.read()
        except OSError as exc:
            raise StorageError(f"cannot read blob {_quote(location)}: {exc.strerror}") from exc

    def exists(self, location: str) -> bool:
        """True if ``location`` is a regular file (or a confined symlink to one)."""
        _, real = self._confine(location)
        return os.path.isfile(real)

    def _lstat(self, location: str) -> os.stat_result | None:
        path, _ = self._confine(location)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot stat blob {_quote(location)}: {exc.strerror}") from exc
        return None if stat.S_ISDIR(st.st_mode) else st

    def size(self, location: str) -> int | None:
        """Size in bytes of the entry, as :meth:`iter_blobs` reports it; None if missing."""
        st = self._lstat(location)
        return None if st is None else st.st_size

    def get_mtime(self, location: str) -> float | None:
        """Modification time of the entry (``lstat``, like :meth:`iter_blobs`); None if missing.

        Maintenance compares this with the mtime its plan saw, so both must come from the
        same kind of stat.
        """
        st = self._lstat(location)
        return None if st is None else st.st_mtime

    # ------------------------------------------------------------------ delete

    def delete(self, location: str) -> bool:
        """Unlink the blob at ``location``; False if it was already gone.

        Refuses unsafe locations (and symlinks pointing outside) with
        :class:`UnsafePathError`, and directories with :class:`StorageError`; unlinking a
        symlink removes the link, never its target.
        """
        path, _ = self._confine(location)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete blob {_quote(location)}: {exc.strerror}") from exc
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(f"blob location is a directory, not deleted: {_quote(location)}")
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete blob {_quote(location)}: {exc.strerror}") from exc
        return True

    def delete_many(self, locations: Iterable[str]) -> int:
        """Delete many blobs (as :meth:`delete` each); return how many existed and went.

        Every location is checked first, so one unsafe location deletes nothing; a
        location given twice counts once.  (S3Storage has the same method, batched.)
        """
        unique = list(dict.fromkeys(locations))
        for location in unique:
            self._confine(location)
        return sum(1 for location in unique if self.delete(location))

    # ------------------------------------------------------------------ listing

    def _walk(self, suffix: str, *, allow_symlinks: bool) -> Iterator[BlobFile]:
        """Yield files ending in ``suffix`` below the blob dir, one ``scandir`` per directory.

        Iterative (no recursion limit on deep trees), never follows a symlinked directory,
        and yields a symlinked file only if ``allow_symlinks`` and its real path is inside
        the blob dir.  A missing blob dir yields nothing; an unreadable subdirectory is
        skipped (its files are simply not listed, hence never deleted).
        """
        real_base = self._real_base()
        base = os.fspath(self.base_dir)
        stack: list[tuple[str, str]] = [(base, "")]
        while stack:
            directory, prefix = stack.pop()
            for entry in self._entries(directory, is_base=directory == base):
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, prefix + entry.name + "/"))
                        continue
                    if not entry.name.endswith(suffix):
                        continue
                    if entry.is_symlink():
                        if not allow_symlinks:
                            continue
                        if not self._is_inside(os.path.realpath(entry.path), real_base):
                            continue
                        if not entry.is_file(follow_symlinks=True):
                            continue
                    elif not entry.is_file(follow_symlinks=False):
                        continue  # FIFOs, sockets, devices: never blobs
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # vanished or unreadable meanwhile
                yield BlobFile(prefix + entry.name, st.st_size, st.st_mtime)

    @staticmethod
    def _entries(directory: str, *, is_base: bool) -> Iterator[os.DirEntry[str]]:
        """Entries of ``directory``; nothing if it is gone or (below the blob dir) unreadable.

        Only a problem with the blob dir itself is an error (a missing one is just empty):
        silently listing nothing for an unreadable blob dir would hide its orphans forever.
        """
        try:
            scanner = os.scandir(directory)
        except FileNotFoundError:
            return
        except OSError as exc:
            if is_base:
                raise StorageError(
                    f"cannot list blob directory {directory}: {exc.strerror or exc}"
                ) from exc
            return
        with scanner:
            yield from scanner

    def iter_blobs(self) -> Iterator[BlobFile]:
        """Every ``*.bin`` file below the blob dir, with size and mtime, in no set order.

        One ``scandir`` walk gives the sizes and mtimes too, so a 100k-blob gc plan costs no
        extra ``stat`` per file.  ``.gitignore``, temp files and other names are never blobs.
        """
        return self._walk(BLOB_SUFFIX, allow_symlinks=True)

    def list_keys(self) -> list[str]:
        """Sorted relative POSIX locations of every blob file (see :meth:`iter_blobs`)."""
        return sorted(blob.location for blob in self.iter_blobs())

    def list_temp_files(self) -> list[BlobFile]:
        """Leftover ``*.spot_tmp`` files of interrupted writes, sorted by location."""
        return sorted(self._walk(TEMP_SUFFIX, allow_symlinks=False), key=lambda b: b.location)

    def clean_temp_files(self, max_age_seconds: float, *, now: float | None = None) -> int:
        """Delete temp files last modified before ``now - max_age_seconds``; return the count.

        A younger temp file may belong to a write in progress, so it is kept.  Each file's
        mtime is checked again just before unlinking, in case a writer touched it meanwhile.
        """
        if not max_age_seconds >= 0:  # also rejects NaN
            raise ValueError(f"max_age_seconds must be >= 0, got {max_age_seconds!r}")
        cutoff = (time.time() if now is None else now) - max_age_seconds
        removed = 0
        for temp in self.list_temp_files():
            if temp.mtime >= cutoff:
                continue
            path = self.base_dir / temp.location
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_mtime >= cutoff:
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError(
                    f"cannot delete temp file {_quote(temp.location)}: {exc.strerror}"
                ) from exc
            removed += 1
        return removed

    def prune_empty_dirs(self) -> int:
        """Remove empty subdirectories, deepest first; never the blob dir itself.

        ``os.rmdir`` only ever removes an empty directory, so a file written concurrently (or
        a lone ``.gitignore``) simply keeps its directory.  Symlinked directories are not
        entered.  Returns how many directories were removed.
        """
        found: list[str] = []  # pre-order: every directory precedes its descendants
        stack = [os.fspath(self.base_dir)]
        while stack:
            directory = stack.pop()
            for entry in self._entries(directory, is_base=False):
                try:
                    if entry.is_dir(follow_symlinks=False):
                        found.append(entry.path)
                        stack.append(entry.path)
                except OSError:
                    continue
        removed = 0
        for directory in reversed(found):
            try:
                os.rmdir(directory)
            except OSError:
                continue  # not empty, or not ours to remove
            removed += 1
        return removed
