"""The same blob-storage behaviour from LocalStorage (tmp_path) and S3Storage (moto server).

Each case runs once per backend through a small harness that can also write raw entries
(files or objects) inside and outside the store, so "nothing outside the store was touched"
is checked the same way on disk and in the bucket.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from moto_server import (  # noqa: F401 (fixtures)
    PREFIX,
    s3_bucket_fixture,
    s3_client_fixture,
    s3_server_fixture,
    s3_storage_fixture,
)

from beautyspot.errors import StorageError, UnsafePathError
from beautyspot.storage import BlobFile, LocalStorage

OUTSIDE_DATA = b"do not touch"
# Relative to the parent of the store (tmp_path on disk, the bucket root on S3).
OUTSIDE = ["secret.bin", "x.bin", "other/x.bin", "blobs/x.bin", "blobs/etl.bin", "blobs/etl2/x.bin"]
UNSAFE = [
    "../x.bin",
    "/abs.bin",
    "a/../../x.bin",
    "a\\..\\x.bin",
    "..\\x.bin",
    "../etl2/x.bin",
    "../../other/x.bin",
    "x\x00.bin",
    "C:x.bin",
    "",
]
BAD_KEYS = ["a/b", "a\\b", "..", "../x", "", "x\x00y"]


class Backend:
    """A storage under test plus raw access to where it keeps things."""

    def __init__(
        self,
        name: str,
        storage: Any,
        put_raw: Callable[[str, bytes], None],
        snapshot: Callable[[], dict[str, bytes]],
    ) -> None:
        self.name = name
        self.storage = storage
        self._put_raw = put_raw
        self._snapshot = snapshot

    def put_inside(self, location: str, data: bytes) -> None:
        self._put_raw(f"{PREFIX}/{location}", data)

    def snapshot(self) -> dict[str, bytes]:
        """Every entry (relative to the store's parent) and its bytes."""
        return self._snapshot()

    def outside(self) -> dict[str, bytes]:
        return {k: v for k, v in self.snapshot().items() if not k.startswith(PREFIX + "/")}


def _local_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "root"

    def put_raw(rel: str, data: bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def snapshot() -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    (root / PREFIX).mkdir(parents=True)
    return Backend("local", LocalStorage(root / PREFIX), put_raw, snapshot)


def _s3_backend(storage: Any, client: Any, bucket: str) -> Backend:
    def put_raw(rel: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=rel, Body=data)

    def snapshot() -> dict[str, bytes]:
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents") or []:
                key = item["Key"]
                out[key] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return out

    return Backend("s3", storage, put_raw, snapshot)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        be = _local_backend(tmp_path)
    else:
        be = _s3_backend(
            request.getfixturevalue("s3_storage"),
            request.getfixturevalue("s3_client"),
            request.getfixturevalue("s3_bucket"),
        )
    for rel in OUTSIDE:
        be._put_raw(rel, OUTSIDE_DATA)
    return be


def _outside_intact(be: Backend) -> None:
    assert be.outside() == {rel: OUTSIDE_DATA for rel in OUTSIDE}


# ---------------------------------------------------------------------------- save / load


def test_round_trip_empty_small_and_1mb(backend: Backend):
    st = backend.storage
    big = os.urandom(1 << 20)
    assert st.save("empty", b"") == "empty.bin"
    assert st.save("small", b"\x00payload\xff") == "small.bin"
    assert st.save("big", big) == "big.bin"
    assert st.load("empty.bin") == b""
    assert st.load("small.bin") == b"\x00payload\xff"
    assert st.load("big.bin") == big
    assert st.size("big.bin") == 1 << 20
    assert st.list_keys() == ["big.bin", "empty.bin", "small.bin"]
    _outside_intact(backend)


def test_save_overwrites(backend: Backend):
    st = backend.storage
    st.save("k", b"first")
    assert st.save("k", b"second!") == "k.bin"
    assert st.load("k.bin") == b"second!"
    assert st.size("k.bin") == 7
    assert st.list_keys() == ["k.bin"]
    assert st.list_temp_files() == []


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_rejected_and_nothing_written(backend: Backend, key: str):
    before = backend.snapshot()
    with pytest.raises(UnsafePathError):
        backend.storage.save(key, b"data")
    assert backend.snapshot() == before


def test_load_missing_raises_storage_error(backend: Backend):
    with pytest.raises(StorageError, match="not found") as excinfo:
        backend.storage.load("missing.bin")
    assert type(excinfo.value) is StorageError
    assert "\n" not in str(excinfo.value)


# ---------------------------------------------------------------------------- stat


def test_exists_size_mtime(backend: Backend):
    st = backend.storage
    before = time.time()
    st.save("k", b"12345")
    after = time.time()
    assert st.exists("k.bin") is True
    assert st.size("k.bin") == 5
    mtime = st.get_mtime("k.bin")
    assert isinstance(mtime, float)
    # S3 LastModified is whole seconds: allow the truncation, and a little clock slack.
    assert before - 2 <= mtime <= after + 1
    assert st.exists("nope.bin") is False
    assert st.size("nope.bin") is None
    assert st.get_mtime("nope.bin") is None


def test_listing_mtime_and_size_match_stat(backend: Backend):
    """A plan records iter_blobs' (size, mtime); the pre-delete check must see the same."""
    st = backend.storage
    st.save("a", b"aa")
    backend.put_inside("sub/b.bin", b"bbb")
    blobs = sorted(st.iter_blobs())
    assert [(b.location, b.size) for b in blobs] == [("a.bin", 2), ("sub/b.bin", 3)]
    for blob in blobs:
        assert isinstance(blob, BlobFile)
        assert blob.mtime == st.get_mtime(blob.location)
        assert blob.size == st.size(blob.location)


# ---------------------------------------------------------------------------- delete


def test_delete_is_idempotent(backend: Backend):
    st = backend.storage
    st.save("k", b"x")
    st.save("keep", b"y")
    assert st.delete("k.bin") is True
    assert st.delete("k.bin") is False
    assert st.exists("k.bin") is False
    assert st.delete("never.bin") is False
    assert st.list_keys() == ["keep.bin"]
    _outside_intact(backend)


def test_delete_many(backend: Backend):
    st = backend.storage
    for key in ("a", "b", "c", "d"):
        st.save(key, key.encode())
    backend.put_inside("sub/e.bin", b"e")
    assert st.delete_many(["a.bin", "c.bin", "sub/e.bin"]) == 3
    assert st.list_keys() == ["b.bin", "d.bin"]
    assert st.delete_many([]) == 0
    with pytest.raises(UnsafePathError):
        st.delete_many(["b.bin", "../x.bin"])
    assert st.list_keys() == ["b.bin", "d.bin"]  # checked before anything was deleted
    _outside_intact(backend)


# ---------------------------------------------------------------------------- listing


def test_listing_is_recursive_and_only_bin(backend: Backend):
    st = backend.storage
    st.save("top", b"1")
    backend.put_inside(".gitignore", b"*\n")
    backend.put_inside("notes.txt", b"n")
    backend.put_inside("top.bin.txt", b"n")
    backend.put_inside("sub/x.bin", b"22")
    backend.put_inside("sub/deeper/y.bin", b"333")
    backend.put_inside("sub/.gitignore", b"*\n")
    expected = ["sub/deeper/y.bin", "sub/x.bin", "top.bin"]
    assert st.list_keys() == expected
    assert sorted((b.location, b.size) for b in st.iter_blobs()) == [
        ("sub/deeper/y.bin", 3),
        ("sub/x.bin", 2),
        ("top.bin", 1),
    ]
    assert st.list_temp_files() == []


def test_empty_store_lists_nothing(backend: Backend):
    assert backend.storage.list_keys() == []
    assert list(backend.storage.iter_blobs()) == []
    assert backend.storage.list_temp_files() == []


# ---------------------------------------------------------------------------- confinement


@pytest.mark.parametrize("location", UNSAFE)
def test_unsafe_locations_refused_everywhere(backend: Backend, location: str):
    st = backend.storage
    st.save("k", b"inside")
    before = backend.snapshot()
    calls: list[Callable[[], object]] = [
        lambda: st.check_syntax(location),
        lambda: st.resolve(location),
        lambda: st.load(location),
        lambda: st.exists(location),
        lambda: st.size(location),
        lambda: st.get_mtime(location),
        lambda: st.delete(location),
    ]
    if hasattr(st, "delete_many"):
        calls.append(lambda: st.delete_many([location]))
    if hasattr(st, "delete_if_unchanged"):
        calls.append(lambda: st.delete_if_unchanged(location, len(OUTSIDE_DATA), 0.0))
    for call in calls:
        with pytest.raises(UnsafePathError):
            call()
    assert backend.snapshot() == before
    _outside_intact(backend)


def test_maintenance_calls_leave_outside_alone(backend: Backend):
    st = backend.storage
    st.save("k", b"x")
    st.list_keys()
    list(st.iter_blobs())
    st.list_temp_files()
    st.clean_temp_files(0, now=time.time() + 10_000)
    st.prune_empty_dirs()
    assert st.delete("k.bin") is True
    assert st.list_keys() == []
    _outside_intact(backend)


# ---------------------------------------------------------------------------- cleanup


def test_clean_temp_files(backend: Backend):
    st = backend.storage
    st.save("k", b"blob")
    temp = "k.bin.0123456789abcdef.spot_tmp"
    backend.put_inside(temp, b"half")
    temps = st.list_temp_files()
    assert [(t.location, t.size) for t in temps] == [(temp, 4)]
    assert st.clean_temp_files(3600) == 0  # young: may be a write in progress
    assert st.clean_temp_files(60, now=time.time() + 7200) == 1
    assert st.list_temp_files() == []
    assert st.list_keys() == ["k.bin"]
    assert st.clean_temp_files(0) == 0
    with pytest.raises(ValueError):
        st.clean_temp_files(-1)
    with pytest.raises(ValueError):
        st.clean_temp_files(float("nan"))
    _outside_intact(backend)


def test_prune_empty_dirs(backend: Backend):
    st = backend.storage
    backend.put_inside("sub/x.bin", b"x")
    assert st.prune_empty_dirs() == 0  # not empty
    assert st.delete("sub/x.bin") is True
    # On disk the emptied sub/ is removed; S3 has no directories to remove.
    assert st.prune_empty_dirs() == (1 if backend.name == "local" else 0)
    assert st.prune_empty_dirs() == 0
    assert st.list_keys() == []
    _outside_intact(backend)
