"""S3Storage against moto's S3 server: pagination, batch delete, conditional delete, errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from moto_server import (  # noqa: F401 (fixtures)
    PREFIX,
    MotoServer,
    make_client,
    s3_bucket_fixture,
    s3_client_fixture,
    s3_server_fixture,
    s3_storage_fixture,
)

from beautyspot.errors import StorageError, UnsafePathError, UsageError
from beautyspot.s3storage import INSTALL_HINT, S3Storage

REPO = Path(__file__).resolve().parents[2]
MANY = 1100  # more than one page (1000) of ListObjectsV2 and one DeleteObjects batch

# Every test runs with the server's fake credentials in the environment (and is skipped, or
# fails under BEAUTYSPOT_REQUIRE_SCALEOUT=1, without moto): no test can reach a real account.
pytestmark = pytest.mark.usefixtures("s3_server")


class CallCounter:
    """Counts the S3 operations a client sends (a botocore event hook, not a mock)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []
        client.meta.events.register("before-call.s3", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


@pytest.fixture
def counted(s3_server: MotoServer, s3_bucket: str) -> Iterator[tuple[S3Storage, CallCounter]]:
    """An S3Storage with its own client, whose requests are counted."""
    client = make_client(s3_server.endpoint_url)
    yield S3Storage(s3_bucket, PREFIX, client=client), CallCounter(client)


def _save_many(storage: S3Storage, n: int) -> list[str]:
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda i: storage.save(f"k{i:05d}", b"%d" % i), range(n)))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------- construction


def test_from_url_parsing():
    client = object()
    st = S3Storage.from_url("s3://my-bucket/some/prefix", client=client)
    assert (st.bucket, st.prefix, st.url) == (
        "my-bucket",
        "some/prefix",
        "s3://my-bucket/some/prefix",
    )
    assert st.client is client
    assert repr(st) == "S3Storage('s3://my-bucket/some/prefix')"
    assert S3Storage.from_url("s3://b/p/", client=client).url == "s3://b/p"
    assert S3Storage.from_url("S3://b//p//", client=client).prefix == "p"
    for url in ("s3://bucket", "s3://bucket/"):
        st = S3Storage.from_url(url, client=client)
        assert (st.bucket, st.prefix, st.url) == ("bucket", "", "s3://bucket")


@pytest.mark.parametrize(
    "url",
    [
        "http://b/p",
        "file:///tmp/x",
        "/tmp/blobs",
        "s3://",
        "s3:///prefix",
        "s3://b/../x",
        "s3://b/a/../x",
        "s3://b/a//b",
        "s3://b/./a",
        "s3://b/a\\b",
        "s3://b/p?versionId=1",
        "s3://b/p#frag",
    ],
)
def test_from_url_refuses(url: str):
    with pytest.raises(UsageError) as excinfo:
        S3Storage.from_url(url, client=object())
    assert "\n" not in str(excinfo.value)


def test_endpoint_from_env_and_explicit_wins(
    s3_server: MotoServer, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BEAUTYSPOT_S3_ENDPOINT", s3_server.endpoint_url)
    assert S3Storage(s3_bucket, PREFIX).save("via-env", b"e") == "via-env.bin"
    monkeypatch.setenv("BEAUTYSPOT_S3_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    explicit = S3Storage(s3_bucket, PREFIX, endpoint_url=s3_server.endpoint_url)
    assert explicit.save("explicit", b"x") == "explicit.bin"
    body = s3_client.get_object(Bucket=s3_bucket, Key=f"{PREFIX}/via-env.bin")["Body"].read()
    assert body == b"e"
    assert explicit.list_keys() == ["explicit.bin", "via-env.bin"]


def test_imports_stay_free_of_boto3():
    code = (
        "import sys, beautyspot.storage, beautyspot.db, beautyspot.s3storage\n"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_boto3_names_the_extra():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('boto3', 'botocore'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from beautyspot.s3storage import S3Storage\n"
        "from beautyspot.errors import StorageError\n"
        "try:\n"
        "    S3Storage('bucket', 'p')\n"
        "except StorageError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == INSTALL_HINT
    assert INSTALL_HINT == "S3 support needs: pip install 'beautyspot[scaleout]'"


# ---------------------------------------------------------------------------- layout


def test_objects_live_under_the_prefix(s3_storage: S3Storage, s3_client: Any, s3_bucket: str):
    s3_storage.save("abc", b"payload")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["blobs/etl/abc.bin"]
    assert s3_storage.resolve("abc.bin") == f"s3://{s3_bucket}/blobs/etl/abc.bin"
    assert s3_storage.list_temp_files() == []  # a PUT is atomic: no temp object


def test_sibling_prefix_is_not_listed(s3_storage: S3Storage, s3_client: Any, s3_bucket: str):
    for key in ("blobs/etl2/x.bin", "blobs/etl.bin", "blobs/etlx.bin", "blobs/etl/in.bin"):
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"1")
    assert s3_storage.list_keys() == ["in.bin"]


def test_empty_prefix_is_the_whole_bucket(s3_client: Any, s3_bucket: str):
    st = S3Storage(s3_bucket, client=s3_client)
    assert st.url == f"s3://{s3_bucket}"
    st.save("root", b"r")
    s3_client.put_object(Bucket=s3_bucket, Key="deep/er/x.bin", Body=b"xx")
    s3_client.put_object(Bucket=s3_bucket, Key=".gitignore", Body=b"*")
    assert st.list_keys() == ["deep/er/x.bin", "root.bin"]
    assert st.load("deep/er/x.bin") == b"xx"
    assert st.delete("deep/er/x.bin") is True
    with pytest.raises(UnsafePathError):
        st.load("/root.bin")


@pytest.mark.parametrize("location", ["a//b.bin", "./x.bin", "a/./b.bin", "sub/", "a/b.bin/"])
def test_non_canonical_locations_refused(s3_storage: S3Storage, location: str):
    with pytest.raises(UnsafePathError, match="non-canonical"):
        s3_storage.exists(location)
    with pytest.raises(UnsafePathError):
        s3_storage.delete(location)


def test_weird_keys_are_never_listed(s3_storage: S3Storage, s3_client: Any, s3_bucket: str):
    """Objects whose relative key would be refused as a location are not blobs."""
    for rel in ("a//b.bin", "./c.bin", "x/../d.bin", "e\\..\\f.bin", "ok.bin"):
        s3_client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/{rel}", Body=b"1")
    assert s3_storage.list_keys() == ["ok.bin"]


def test_mtimes_are_whole_seconds(s3_storage: S3Storage):
    s3_storage.save("k", b"x")
    (blob,) = list(s3_storage.iter_blobs())
    assert blob.mtime == int(blob.mtime)
    assert s3_storage.get_mtime("k.bin") == blob.mtime


# ---------------------------------------------------------------------------- pagination


def test_listing_paginates(counted: tuple[S3Storage, CallCounter]):
    st, counter = counted
    locations = _save_many(st, MANY)
    assert counter.count("PutObject") == MANY
    keys = st.list_keys()
    assert keys == sorted(locations)
    assert len(keys) == MANY
    assert counter.count("ListObjectsV2") == 2
    small = S3Storage(st.bucket, PREFIX, client=st.client, page_size=100)
    assert sum(1 for _ in small.iter_blobs()) == MANY
    assert counter.count("ListObjectsV2") == 2 + 11


def test_delete_many_in_batches_of_1000(counted: tuple[S3Storage, CallCounter], s3_client: Any):
    st, counter = counted
    s3_client.put_object(Bucket=st.bucket, Key="other/x.bin", Body=b"keep")
    locations = _save_many(st, MANY)
    st.save("survivor", b"s")
    assert st.delete_many(locations + locations[:5]) == MANY  # duplicates count once
    assert counter.count("DeleteObjects") == 2
    assert st.list_keys() == ["survivor.bin"]
    assert s3_client.get_object(Bucket=st.bucket, Key="other/x.bin")["Body"].read() == b"keep"


def test_delete_many_counts_absent_keys(s3_storage: S3Storage):
    """S3's DeleteObjects does not tell absent keys apart: they count as deleted."""
    assert s3_storage.delete_many(["never-existed.bin"]) == 1


def test_delete_many_unsafe_location_sends_nothing(counted: tuple[S3Storage, CallCounter]):
    st, counter = counted
    st.save("a", b"a")
    with pytest.raises(UnsafePathError):
        st.delete_many(["a.bin", "a/../../x.bin"])
    assert counter.count("DeleteObjects") == 0
    assert st.list_keys() == ["a.bin"]


# ---------------------------------------------------------------------------- delete_if_unchanged


def test_delete_if_unchanged_deletes_the_planned_object(s3_storage: S3Storage):
    s3_storage.save("k", b"planned")
    (plan,) = list(s3_storage.iter_blobs())
    assert s3_storage.delete_if_unchanged(plan.location, plan.size, plan.mtime) is None
    assert s3_storage.exists("k.bin") is False
    assert s3_storage.delete_if_unchanged(plan.location, plan.size, plan.mtime) == "already gone"


def test_delete_if_unchanged_missing(s3_storage: S3Storage):
    assert s3_storage.delete_if_unchanged("nope.bin", 3, 1.0) == "already gone"


def test_delete_if_unchanged_keeps_a_different_size(s3_storage: S3Storage):
    s3_storage.save("k", b"old")
    (plan,) = list(s3_storage.iter_blobs())
    s3_storage.save("k", b"rewritten")
    assert (
        s3_storage.delete_if_unchanged("k.bin", plan.size, plan.mtime) == "changed since the plan"
    )
    assert s3_storage.load("k.bin") == b"rewritten"


def test_delete_if_unchanged_keeps_a_later_upload(s3_storage: S3Storage):
    s3_storage.save("k", b"old")
    (plan,) = list(s3_storage.iter_blobs())
    time.sleep(1.1)  # LastModified has one-second resolution
    s3_storage.save("k", b"new")  # same size, later mtime
    assert s3_storage.get_mtime("k.bin") > plan.mtime
    assert (
        s3_storage.delete_if_unchanged("k.bin", plan.size, plan.mtime) == "changed since the plan"
    )
    assert s3_storage.load("k.bin") == b"new"


def test_delete_if_unchanged_is_conditional_on_the_etag(
    counted: tuple[S3Storage, CallCounter], s3_client: Any
):
    """A rewrite between the HEAD and the DELETE is caught by If-Match (412): blob kept."""
    st, _ = counted
    st.save("k", b"old")
    (plan,) = list(st.iter_blobs())

    def rewrite(**_: Any) -> None:
        s3_client.put_object(Bucket=st.bucket, Key=f"{PREFIX}/k.bin", Body=b"NEW")

    st.client.meta.events.register("before-call.s3.DeleteObject", rewrite)
    assert st.delete_if_unchanged("k.bin", plan.size, plan.mtime) == "changed since the plan"
    assert st.load("k.bin") == b"NEW"


def test_clean_temp_files_skips_a_rewritten_temp(s3_storage: S3Storage, s3_client: Any):
    key = f"{PREFIX}/k.bin.ab.spot_tmp"
    s3_client.put_object(Bucket=s3_storage.bucket, Key=key, Body=b"1")
    s3_client.put_object(Bucket=s3_storage.bucket, Key=f"{PREFIX}/j.bin.cd.spot_tmp", Body=b"1")
    assert [t.location for t in s3_storage.list_temp_files()] == [
        "j.bin.cd.spot_tmp",
        "k.bin.ab.spot_tmp",
    ]
    assert s3_storage.clean_temp_files(0, now=time.time() + 60) == 2
    assert s3_storage.list_temp_files() == []


# ---------------------------------------------------------------------------- errors


def test_unreachable_endpoint_is_one_line_storage_error():
    url = f"http://127.0.0.1:{_closed_port()}"
    st = S3Storage("bucket", "p", endpoint_url=url)
    calls = [
        lambda: st.save("k", b"x"),
        lambda: st.load("k.bin"),
        lambda: st.exists("k.bin"),
        lambda: st.list_keys(),
        lambda: st.delete_many(["k.bin"]),
    ]
    started = time.monotonic()
    for call in calls:
        with pytest.raises(StorageError) as excinfo:
            call()
        message = str(excinfo.value)
        assert "\n" not in message
        assert "127.0.0.1" in message
        assert "Traceback" not in message
        assert "testing" not in message  # the (fake) credentials never show
        assert excinfo.value.__cause__ is None
    assert time.monotonic() - started < 60


def test_missing_bucket_is_an_error_not_an_empty_store(s3_client: Any):
    st = S3Storage("bs-no-such-bucket", PREFIX, client=s3_client)
    with pytest.raises(StorageError, match="NoSuchBucket") as excinfo:
        st.list_keys()
    assert str(excinfo.value).startswith("cannot list s3://bs-no-such-bucket/blobs/etl: ")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        st.save("k", b"x")


# ---------------------------------------------------------------------------- concurrency


def test_concurrent_saves_from_8_threads(s3_storage: S3Storage):
    payloads = {t: bytes([t]) * 1000 for t in range(8)}

    def writer(t: int) -> list[str]:
        out = []
        for i in range(25):
            out.append(s3_storage.save(f"t{t}-{i:02d}", payloads[t] + b"%d" % i))
            s3_storage.save("shared", payloads[t])
        return out

    with ThreadPoolExecutor(8) as pool:
        written = [loc for locs in pool.map(writer, range(8)) for loc in locs]
    assert len(written) == 200
    assert s3_storage.list_keys() == sorted([*written, "shared.bin"])
    for t in range(8):
        assert s3_storage.load(f"t{t}-07.bin") == payloads[t] + b"7"
    assert s3_storage.load("shared.bin") in payloads.values()  # one whole write, never mixed
