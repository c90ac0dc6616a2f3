"""LocalStorage on real files in tmp_path: atomic saves, confinement, listing, cleanup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from beautyspot.errors import StorageError, UnsafePathError
from beautyspot.storage import BlobFile, LocalStorage

_REPO_ROOT = Path(__file__).resolve().parents[2]
_REPO_FIXTURE = _REPO_ROOT / "tests" / "fixtures" / "upstream-2.7.7"
_SHARED_FIXTURE = _REPO_ROOT.parent / "shared" / "fixtures" / "upstream-2.7.7"
# The lead copies the upstream workspace into the repo; until then use the shared copy.
UPSTREAM_FIXTURE = _REPO_FIXTURE if _REPO_FIXTURE.is_dir() else _SHARED_FIXTURE
UPSTREAM_ETL_BLOBS = UPSTREAM_FIXTURE / ".beautyspot" / "blobs" / "etl"

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")


def _tree(root: Path) -> list[str]:
    """Every path under root (files, dirs, links), relative and sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "blobs" / "etl"


@pytest.fixture
def storage(base: Path) -> LocalStorage:
    return LocalStorage(base)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file next to the blob tree that no storage call may read or delete."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"do not touch")
    return secret


# ---------------------------------------------------------------------------- save


def test_save_returns_relative_location_and_round_trips(storage: LocalStorage, base: Path):
    location = storage.save("abc123", b"\x00payload\xff")
    assert location == "abc123.bin"
    assert (base / "abc123.bin").read_bytes() == b"\x00payload\xff"
    assert storage.load(location) == b"\x00payload\xff"


def test_save_creates_base_dir_with_gitignore(storage: LocalStorage, base: Path):
    assert not base.exists()
    storage.save("k", b"x")
    assert (base / ".gitignore").read_text().strip() == "*"


def test_save_into_existing_dir_adds_no_gitignore(storage: LocalStorage, base: Path):
    base.mkdir(parents=True)
    storage.save("k", b"x")
    assert _tree(base) == ["k.bin"]


def test_save_overwrites_atomically_and_leaves_no_temp_file(storage: LocalStorage, base: Path):
    storage.save("k", b"first")
    storage.save("k", b"second")
    storage.save("other", b"")
    assert storage.load("k.bin") == b"second"
    assert storage.load("other.bin") == b""
    assert list(base.rglob("*.spot_tmp")) == []
    assert storage.list_temp_files() == []


def test_failed_save_leaves_no_temp_file(storage: LocalStorage, base: Path):
    (base / "k.bin").mkdir(parents=True)  # os.replace cannot put a file over a directory
    with pytest.raises(StorageError, match="k.bin"):
        storage.save("k", b"data")
    assert list(base.rglob("*.spot_tmp")) == []
    assert (base / "k.bin").is_dir()


@pytest.mark.parametrize(
    "key", ["", "a/b", "a\\b", "a\x00b", "..", "a..b", "../escape", "..\\escape", "C:x"]
)
def test_save_rejects_unsafe_keys_without_writing(storage: LocalStorage, base: Path, key: str):
    with pytest.raises(UnsafePathError):
        storage.save(key, b"data")
    assert not base.exists()
    assert not base.parent.exists()


@needs_symlinks
def test_save_replaces_symlink_instead_of_writing_through(
    storage: LocalStorage, base: Path, outside: Path
):
    base.mkdir(parents=True)
    (base / "k.bin").symlink_to(outside)
    storage.save("k", b"new")
    assert outside.read_bytes() == b"do not touch"
    assert not (base / "k.bin").is_symlink()
    assert storage.load("k.bin") == b"new"


# ---------------------------------------------------------------------- confinement

UNSAFE_LOCATIONS = [
    "",
    ".",
    "./",
    "../x.bin",
    "../secret.bin",
    "/etc/passwd",
    "//server/share/x.bin",
    "sub/../../x.bin",
    "sub/..",
    "..\\x.bin",
    "..\\secret.bin",
    "sub\\..\\..\\secret.bin",
    "\\etc\\passwd",
    "C:\\Windows\\x.bin",
    "c:x.bin",
    "a\x00.bin",
]


@pytest.mark.parametrize("location", UNSAFE_LOCATIONS)
def test_unsafe_locations_are_refused_everywhere(
    storage: LocalStorage, base: Path, outside: Path, location: str
):
    storage.save("k", b"x")
    for call in (
        storage.resolve,
        storage.load,
        storage.delete,
        storage.exists,
        storage.size,
        storage.get_mtime,
    ):
        with pytest.raises(UnsafePathError):
            call(location)
    assert outside.read_bytes() == b"do not touch"
    assert storage.load("k.bin") == b"x"


def test_unsafe_path_error_is_a_storage_error_with_one_line_message(storage: LocalStorage):
    with pytest.raises(StorageError) as info:
        storage.resolve("../evil\n.bin")
    assert "\n" not in str(info.value)
    assert "evil" in str(info.value)


def test_resolve_returns_confined_absolute_path(storage: LocalStorage, base: Path):
    resolved = storage.resolve("sub/x.bin")
    assert resolved.is_absolute()
    assert resolved == base / "sub" / "x.bin"
    # Harmless "." and doubled separators stay inside.
    assert storage.resolve("./sub//x.bin") == base / "sub" / "x.bin"


def test_relative_base_dir_is_fixed_at_construction(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = LocalStorage("blobs")
    monkeypatch.chdir("/")
    assert storage.resolve("k.bin") == tmp_path / "blobs" / "k.bin"


@needs_symlinks
def test_symlink_file_pointing_outside_is_refused(storage: LocalStorage, base: Path, outside: Path):
    storage.save("k", b"x")
    (base / "link.bin").symlink_to(outside)
    for call in (storage.resolve, storage.load, storage.delete, storage.exists):
        with pytest.raises(UnsafePathError):
            call("link.bin")
    assert outside.read_bytes() == b"do not touch"
    assert (base / "link.bin").is_symlink()
    assert storage.list_keys() == ["k.bin"]


@needs_symlinks
def test_symlinked_directory_pointing_outside_is_refused(
    storage: LocalStorage, base: Path, tmp_path: Path
):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "empty").mkdir(parents=True)
    (elsewhere / "x.bin").write_bytes(b"outside blob")
    storage.save("k", b"x")
    (base / "sub").symlink_to(elsewhere, target_is_directory=True)

    for call in (storage.load, storage.delete, storage.exists, storage.get_mtime):
        with pytest.raises(UnsafePathError):
            call("sub/x.bin")
    assert storage.list_keys() == ["k.bin"]
    assert storage.prune_empty_dirs() == 0
    assert (elsewhere / "x.bin").read_bytes() == b"outside blob"
    assert (elsewhere / "empty").is_dir()
    assert (base / "sub").is_symlink()


@needs_symlinks
def test_symlink_inside_pointing_inside_is_allowed_and_delete_removes_only_link(
    storage: LocalStorage, base: Path
):
    storage.save("real", b"shared")
    (base / "alias.bin").symlink_to(base / "real.bin")
    assert storage.load("alias.bin") == b"shared"
    assert storage.list_keys() == ["alias.bin", "real.bin"]
    assert storage.delete("alias.bin") is True
    assert not (base / "alias.bin").exists()
    assert storage.load("real.bin") == b"shared"


@needs_symlinks
def test_blob_dir_reached_through_a_symlink_still_works(tmp_path: Path):
    real = tmp_path / "real-blobs"
    real.mkdir()
    (tmp_path / "link-blobs").symlink_to(real, target_is_directory=True)
    storage = LocalStorage(tmp_path / "link-blobs")
    location = storage.save("k", b"data")
    assert storage.load(location) == b"data"
    assert storage.list_keys() == ["k.bin"]
    assert storage.delete(location) is True


# ----------------------------------------------------------------------- read/delete


def test_load_missing_raises_clear_storage_error(storage: LocalStorage):
    with pytest.raises(StorageError) as info:
        storage.load("missing.bin")
    message = str(info.value)
    assert "missing.bin" in message and "not found" in message
    assert "\n" not in message
    assert not isinstance(info.value, UnsafePathError)


def test_load_of_directory_raises_storage_error(storage: LocalStorage, base: Path):
    (base / "dir.bin").mkdir(parents=True)
    with pytest.raises(StorageError):
        storage.load("dir.bin")


def test_delete_is_idempotent(storage: LocalStorage, base: Path):
    location = storage.save("k", b"x")
    assert storage.delete(location) is True
    assert storage.delete(location) is False
    assert not (base / location).exists()
    assert storage.delete("sub/never-existed.bin") is False


def test_delete_refuses_directories(storage: LocalStorage, base: Path):
    (base / "dir.bin").mkdir(parents=True)
    (base / "plain").mkdir()
    for location in ("dir.bin", "plain"):
        with pytest.raises(StorageError, match="directory"):
            storage.delete(location)
    assert (base / "dir.bin").is_dir() and (base / "plain").is_dir()


def test_exists_size_and_mtime(storage: LocalStorage, base: Path):
    location = storage.save("k", b"12345")
    os.utime(base / location, (1_700_000_000, 1_700_000_000))
    assert storage.exists(location) is True
    assert storage.size(location) == 5
    assert storage.get_mtime(location) == 1_700_000_000
    assert storage.exists("nope.bin") is False
    assert storage.size("nope.bin") is None
    assert storage.get_mtime("nope.bin") is None
    (base / "d.bin").mkdir()
    assert storage.exists("d.bin") is False
    assert storage.get_mtime("d.bin") is None


# --------------------------------------------------------------------------- listing


def test_list_keys_is_recursive_sorted_and_only_bin_files(storage: LocalStorage, base: Path):
    storage.save("b", b"1")
    storage.save("a", b"22")
    (base / "sub" / "deeper").mkdir(parents=True)
    (base / "sub" / "deeper" / "z.bin").write_bytes(b"333")
    (base / "sub" / "c.bin").write_bytes(b"")
    (base / "sub" / ".gitignore").write_text("*\n")
    (base / "k.bin.0123.spot_tmp").write_bytes(b"partial")
    (base / "notes.txt").write_text("hi")
    (base / "bin").write_text("no suffix")
    (base / "dir.bin").mkdir()  # a directory is never a blob
    assert storage.list_keys() == ["a.bin", "b.bin", "sub/c.bin", "sub/deeper/z.bin"]


def test_iter_blobs_reports_size_and_mtime_matching_get_mtime(storage: LocalStorage, base: Path):
    storage.save("a", b"22")
    (base / "sub").mkdir()
    (base / "sub" / "b.bin").write_bytes(b"4444")
    os.utime(base / "sub" / "b.bin", (1_600_000_000.5, 1_600_000_000.5))
    blobs = sorted(storage.iter_blobs(), key=lambda blob: blob.location)
    assert [(b.location, b.size) for b in blobs] == [("a.bin", 2), ("sub/b.bin", 4)]
    assert blobs[1] == BlobFile("sub/b.bin", 4, 1_600_000_000.5)
    for blob in blobs:
        assert storage.get_mtime(blob.location) == blob.mtime
        assert storage.size(blob.location) == blob.size
    with pytest.raises(AttributeError):
        blobs[0].size = 3  # type: ignore[misc]


def test_deep_directory_tree_is_walked_without_recursion_limits(storage: LocalStorage, base: Path):
    deep = base.joinpath(*["d"] * 60)
    deep.mkdir(parents=True)
    (deep / "x.bin").write_bytes(b"x")
    assert storage.list_keys() == ["/".join(["d"] * 60) + "/x.bin"]


def test_many_files_listed(storage: LocalStorage, base: Path):
    base.mkdir(parents=True)
    for index in range(2000):
        (base / f"{index:05d}.bin").write_bytes(b"")
    keys = storage.list_keys()
    assert len(keys) == 2000
    assert keys[0] == "00000.bin" and keys[-1] == "01999.bin"


def test_missing_base_dir_reads_as_empty_and_creates_nothing(tmp_path: Path):
    base = tmp_path / "ws" / "blobs" / "nope"
    storage = LocalStorage(base)
    assert storage.list_keys() == []
    assert list(storage.iter_blobs()) == []
    assert storage.list_temp_files() == []
    assert storage.clean_temp_files(0, now=10**10) == 0
    assert storage.prune_empty_dirs() == 0
    assert storage.exists("k.bin") is False
    assert storage.size("k.bin") is None
    assert storage.get_mtime("k.bin") is None
    assert storage.delete("k.bin") is False
    with pytest.raises(StorageError):
        storage.load("k.bin")
    assert list(tmp_path.iterdir()) == []


def test_base_dir_that_is_a_file_is_an_error(tmp_path: Path):
    (tmp_path / "blobs").write_bytes(b"not a dir")
    with pytest.raises(StorageError):
        LocalStorage(tmp_path / "blobs").list_keys()


# ----------------------------------------------------------------------- temp files


def _make_temp(base: Path, name: str, mtime: float) -> None:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    os.utime(path, (mtime, mtime))


def test_list_temp_files_is_recursive(storage: LocalStorage, base: Path):
    _make_temp(base, "a.bin.1.spot_tmp", 1000.0)
    _make_temp(base, "sub/b.bin.2.spot_tmp", 2000.0)
    storage.save("k", b"x")
    assert storage.list_temp_files() == [
        BlobFile("a.bin.1.spot_tmp", 7, 1000.0),
        BlobFile("sub/b.bin.2.spot_tmp", 7, 2000.0),
    ]


def test_clean_temp_files_by_age_with_injected_now(storage: LocalStorage, base: Path):
    now = 1_800_000_000.0
    _make_temp(base, "old.spot_tmp", now - 7200)
    _make_temp(base, "sub/old.spot_tmp", now - 3601)
    _make_temp(base, "young.spot_tmp", now - 60)
    _make_temp(base, "exactly-cutoff.spot_tmp", now - 3600)
    storage.save("k", b"blob")
    os.utime(base / "k.bin", (now - 99999, now - 99999))  # old blobs are not temp files

    assert storage.clean_temp_files(3600, now=now) == 2
    assert [t.location for t in storage.list_temp_files()] == [
        "exactly-cutoff.spot_tmp",
        "young.spot_tmp",
    ]
    assert storage.list_keys() == ["k.bin"]
    assert storage.clean_temp_files(3600, now=now) == 0
    assert storage.clean_temp_files(0, now=now) == 2


def test_clean_temp_files_rejects_negative_age(storage: LocalStorage):
    with pytest.raises(ValueError):
        storage.clean_temp_files(-1)
    with pytest.raises(ValueError):
        storage.clean_temp_files(float("nan"))


# ----------------------------------------------------------------------- empty dirs


def test_prune_empty_dirs_bottom_up_never_base(storage: LocalStorage, base: Path):
    (base / "a" / "b" / "c").mkdir(parents=True)
    (base / "keep-file").mkdir()
    (base / "keep-file" / "x.bin").write_bytes(b"x")
    (base / "keep-ignore").mkdir()
    (base / "keep-ignore" / ".gitignore").write_text("*\n")
    (base / "mixed" / "empty").mkdir(parents=True)
    (base / "mixed" / "y.bin").write_bytes(b"y")

    assert storage.prune_empty_dirs() == 4  # a/b/c, a/b, a, mixed/empty
    assert _tree(base) == [
        "keep-file",
        "keep-file/x.bin",
        "keep-ignore",
        "keep-ignore/.gitignore",
        "mixed",
        "mixed/y.bin",
    ]
    assert storage.prune_empty_dirs() == 0


def test_prune_empty_dirs_keeps_empty_base_dir(storage: LocalStorage, base: Path):
    base.mkdir(parents=True)
    assert storage.prune_empty_dirs() == 0
    assert base.is_dir()


# --------------------------------------------------------------------------- upstream


@pytest.mark.skipif(not UPSTREAM_ETL_BLOBS.is_dir(), reason="upstream fixture not available")
def test_lists_and_loads_upstream_blob_dir_without_writing():
    before = _tree(UPSTREAM_ETL_BLOBS)
    storage = LocalStorage(UPSTREAM_ETL_BLOBS)
    keys = storage.list_keys()
    assert len(keys) == 6
    assert all(len(key) == 64 + len(".bin") for key in keys)
    for key in keys:
        assert storage.load(key)
        assert storage.size(key) == len(storage.load(key))
    assert storage.list_temp_files() == []
    assert _tree(UPSTREAM_ETL_BLOBS) == before
