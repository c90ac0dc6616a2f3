"""Blob storage in an S3 bucket, with the interface of :class:`beautyspot.storage.LocalStorage`.

``S3Storage("bucket", "blobs/etl")`` keeps the blob ``<key>.bin`` as the object
``blobs/etl/<key>.bin``; an empty prefix makes the whole bucket the store.  Locations are the
same relative strings LocalStorage uses, so a task DB can point at either.

* **boto3 is optional.** It is imported only when an :class:`S3Storage` is made without a
  ready client; ``beautyspot.storage`` and ``beautyspot.db`` never import this module.
* **Locations are untrusted**, as on disk: each one passes
  :meth:`LocalStorage.check_syntax <beautyspot.storage.LocalStorage.check_syntax>` (no
  absolute path, drive letter, NUL or ``..`` component, ``\\`` counted as a separator) and
  must also be canonical (no empty or ``.`` segment) before any request is sent.  An S3 key
  is taken literally, so ``a//b.bin`` and ``a/b.bin`` would be two objects while on disk
  they are one file, and some HTTP layers collapse ``.`` segments; refusing them keeps every
  location mapped to exactly one object, ``<prefix>/<location>``, never outside the prefix.
* **Errors are one line.** botocore errors become :class:`~beautyspot.errors.StorageError`
  with the S3 error code and message; no traceback text, no credentials.
* **mtime has one-second resolution.** ``LastModified`` comes as an HTTP date (seconds) from
  HEAD and as ISO 8601 from listings; both are truncated to whole seconds so the mtime a plan
  saw in :meth:`S3Storage.iter_blobs` compares equal to :meth:`S3Storage.get_mtime`.

A PUT is atomic on S3 (readers see the old object or the new one, never part of one), so
:meth:`S3Storage.save` writes no temp object; :meth:`S3Storage.list_temp_files` still reports
``*.spot_tmp`` objects, should a copied-over blob directory contain any.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from beautyspot.errors import StorageError, UnsafePathError, UsageError
from beautyspot.storage import BLOB_SUFFIX, TEMP_SUFFIX, BlobFile, LocalStorage

ENDPOINT_ENV = "BEAUTYSPOT_S3_ENDPOINT"
INSTALL_HINT = "S3 support needs: pip install 'beautyspot[scaleout]'"
DELETE_BATCH = 1000  # the most keys one DeleteObjects request may carry
_MAX_DETAIL = 300

KEPT_GONE = "already gone"
KEPT_CHANGED = "changed since the plan"


class S3DeleteError(StorageError):
    """Some keys of a :meth:`S3Storage.delete_many` call were not deleted.

    ``deleted`` is how many were; ``errors`` lists ``(location, "Code: message")`` pairs.
    """

    def __init__(self, message: str, *, deleted: int, errors: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.deleted = deleted
        self.errors = errors


def _quote(text: str) -> str:
    return repr(text)


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 3] + "..."


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _describe(exc: BaseException) -> str:
    """``Code: message`` of a ClientError, the message of any other botocore error."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        code = error.get("Code") or "?"
        message = error.get("Message") or response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", ""
        )
        return _one_line(f"{code}: {message}" if message else code)
    return _one_line(str(exc) or type(exc).__name__)


def _mtime(value: Any) -> float:
    """``LastModified`` (a datetime) as epoch seconds, truncated to the second."""
    return float(math.floor(value.timestamp()))


def _botocore_errors() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:  # a client without botocore: nothing we know how to map
        raise StorageError(INSTALL_HINT) from exc
    return (ClientError, BotoCoreError)


def _check_prefix(prefix: str) -> str:
    """The prefix without leading/trailing ``/``; refuse anything that is not a plain path."""
    if not isinstance(prefix, str):
        raise UsageError(f"S3 prefix must be text, not {type(prefix).__name__}")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    if "\x00" in stripped or "\\" in stripped:
        raise UsageError(f"S3 prefix must not contain NUL or '\\': {_quote(prefix)}")
    if any(part in ("", ".", "..") for part in stripped.split("/")):
        raise UsageError(f"S3 prefix must not contain empty, '.' or '..' parts: {_quote(prefix)}")
    return stripped


class S3Storage:
    """Blob objects below ``prefix`` in ``bucket``.

    ``client`` is a ready boto3 S3 client (shared, thread-safe); without one a client is made
    for ``endpoint_url``, else the ``BEAUTYSPOT_S3_ENDPOINT`` environment variable, else
    whatever boto3 resolves itself (``AWS_ENDPOINT_URL``, config files, AWS).  The bucket
    must exist: this class never creates or deletes buckets.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        page_size: int = 1000,
    ) -> None:
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise UsageError(f"bad S3 bucket name: {bucket!r}")
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be in 1..1000, got {page_size!r}")
        self.bucket = bucket
        self.prefix = _check_prefix(prefix)
        self._key_prefix = self.prefix + "/" if self.prefix else ""
        self.page_size = page_size
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._errors = _botocore_errors()
        self.client = client if client is not None else self._make_client(endpoint_url)

    @staticmethod
    def _make_client(endpoint_url: str | None) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise StorageError(INSTALL_HINT) from exc
        endpoint = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        try:
            return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
        except Exception as exc:  # bad endpoint URL, unknown region...
            raise StorageError(f"cannot set up the S3 client: {_describe(exc)}") from exc

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Storage:
        """``S3Storage.from_url("s3://bucket/some/prefix")``; other schemes are a UsageError."""
        if not isinstance(url, str) or not url[:5].lower() == "s3://":
            raise UsageError(f"not an s3:// URL: {url!r}")
        rest = url[5:]
        if "?" in rest or "#" in rest:
            raise UsageError(f"S3 URL must not have a query or fragment: {url!r}")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise UsageError(f"S3 URL names no bucket: {url!r}")
        return cls(bucket, prefix, **kwargs)

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    # ------------------------------------------------------------------ confinement

    @staticmethod
    def check_syntax(location: str) -> None:
        """LocalStorage's rules, plus: no empty or ``.`` segment (see the module docstring)."""
        LocalStorage.check_syntax(location)
        if any(part in ("", ".") for part in location.split("/")):
            raise UnsafePathError(f"non-canonical S3 blob location refused: {_quote(location)}")

    def _key(self, location: str) -> str:
        """The object key of ``location``: always ``<prefix>/<location>``, checked first."""
        self.check_syntax(location)
        return self._key_prefix + location

    def resolve(self, location: str) -> str:
        """``s3://bucket/<prefix>/<location>``, for display; UnsafePathError like LocalStorage."""
        return f"s3://{self.bucket}/{self._key(location)}"

    def _fail(self, action: str, location: str | None, exc: BaseException) -> StorageError:
        where = f"{_quote(location)} in {self.url}" if location is not None else self.url
        return StorageError(f"cannot {action} {where}: {_describe(exc)}")

    # ------------------------------------------------------------------ write

    def save(self, key: str, data: bytes) -> str:
        """PUT ``data`` as ``<key>.bin`` and return that location (a PUT is atomic on S3).

        Keys that are empty or contain ``/``, ``\\``, NUL or ``..`` are refused before any
        request, exactly like :meth:`LocalStorage.save`.
        """
        if not isinstance(key, str) or not key:
            raise UnsafePathError("empty blob key")
        for bad in ("/", "\\", "\x00", ".."):
            if bad in key:
                raise UnsafePathError(f"blob key contains {bad!r}: {_quote(key)}")
        location = key + BLOB_SUFFIX
        object_key = self._key(location)
        try:
            self.client.put_object(Bucket=self.bucket, Key=object_key, Body=bytes(data))
        except self._errors as exc:
            raise self._fail("write blob", location, exc) from None
        return location

    # ------------------------------------------------------------------ read

    def load(self, location: str) -> bytes:
        """Bytes of the blob; :class:`StorageError` if missing (as LocalStorage) or unreadable."""
        object_key = self._key(location)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            return response["Body"].read()
        except self._errors as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise StorageError(
                    f"blob file not found: {_quote(location)} in {self.url}"
                ) from None
            raise self._fail("read blob", location, exc) from None

    def _head(self, location: str) -> dict[str, Any] | None:
        """HEAD of the object, or None if there is none."""
        object_key = self._key(location)
        try:
            return self.client.head_object(Bucket=self.bucket, Key=object_key)
        except self._errors as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail("stat blob", location, exc) from None

    def exists(self, location: str) -> bool:
        """True if the object exists (a missing bucket answers 404 too, hence False)."""
        return self._head(location) is not None

    def size(self, location: str) -> int | None:
        """Size in bytes, as :meth:`iter_blobs` reports it; None if missing."""
        head = self._head(location)
        return None if head is None else int(head["ContentLength"])

    def get_mtime(self, location: str) -> float | None:
        """``LastModified`` in whole epoch seconds, like :meth:`iter_blobs`; None if missing."""
        head = self._head(location)
        return None if head is None else _mtime(head["LastModified"])

    # ------------------------------------------------------------------ delete

    def delete(self, location: str) -> bool:
        """Delete the blob; False if it was already gone (S3 itself does not say, so HEAD first)."""
        object_key = self._key(location)
        if self._head(location) is None:
            return False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=object_key)
        except self._errors as exc:
            raise self._fail("delete blob", location, exc) from None
        return True

    def delete_if_unchanged(self, location: str, size: int, mtime: float) -> str | None:
        """Delete the blob only if it is still the object a plan saw; None when deleted.

        Otherwise returns why it was kept: ``"already gone"`` or ``"changed since the plan"``.
        A HEAD compares size and ``LastModified`` (whole seconds) with the plan's, then the
        DELETE carries ``If-Match: <ETag from that HEAD>``, so an object rewritten between the
        HEAD and the DELETE is kept (412).  What no check can see: a rewrite with the same size
        within the same second as the plan's listing, before the HEAD.  A server that does
        not implement conditional deletes (501 NotImplemented) gets a plain DELETE, which
        leaves the HEAD-to-DELETE window open; servers that silently ignore ``If-Match``
        (older S3-compatible stores) leave it open too.
        """
        object_key = self._key(location)
        head = self._head(location)
        if head is None:
            return KEPT_GONE
        if int(head["ContentLength"]) != size or _mtime(head["LastModified"]) != mtime:
            return KEPT_CHANGED
        etag = head.get("ETag")
        try:
            if etag:
                self.client.delete_object(Bucket=self.bucket, Key=object_key, IfMatch=etag)
            else:
                self.client.delete_object(Bucket=self.bucket, Key=object_key)
        except self._errors as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "412"):
                return KEPT_CHANGED
            if code in ("NoSuchKey", "404"):
                return KEPT_GONE
            if code not in ("NotImplemented", "501"):
                raise self._fail("delete blob", location, exc) from None
            try:
                self.client.delete_object(Bucket=self.bucket, Key=object_key)
            except self._errors as exc2:
                raise self._fail("delete blob", location, exc2) from None
        return None

    def delete_many(self, locations: Iterable[str]) -> int:
        """Delete many blobs with DeleteObjects, 1000 keys a request; return how many went.

        Every location is checked before the first request, so one unsafe location deletes
        nothing.  Duplicates count once.  S3 reports a key that did not exist as deleted, so
        absent blobs are counted too (unlike :meth:`delete`, which HEADs first).  Keys S3
        refused raise :class:`S3DeleteError` after every batch was tried, carrying
        ``deleted`` and the per-key ``errors``.
        """
        keys: dict[str, str] = {}
        for location in locations:
            keys.setdefault(self._key(location), location)
        ordered = list(keys)
        deleted = 0
        errors: list[tuple[str, str]] = []
        for start in range(0, len(ordered), DELETE_BATCH):
            chunk = ordered[start : start + DELETE_BATCH]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
            except self._errors as exc:
                raise self._fail(
                    f"delete {len(chunk)} blobs ({deleted} deleted so far) from", None, exc
                ) from None
            failed = response.get("Errors") or []
            for item in failed:
                key = item.get("Key", "")
                location = keys.get(key, key)
                errors.append((location, _one_line(f"{item.get('Code')}: {item.get('Message')}")))
            deleted += len(chunk) - len(failed)
        if errors:
            first_location, first_error = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise S3DeleteError(
                f"could not delete {len(errors)} of {len(ordered)} blobs in {self.url}: "
                f"{_quote(first_location)}: {first_error}{more}",
                deleted=deleted,
                errors=errors,
            )
        return deleted

    # ------------------------------------------------------------------ listing

    def _list(self, suffix: str) -> Iterator[BlobFile]:
        """Objects below the prefix whose key ends in ``suffix`` (paginated, recursive).

        Keys that would not pass :meth:`check_syntax` as locations are skipped: nothing can
        address them, so they are never reported and never deleted.  A missing bucket is an
        error, not an empty store.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self._key_prefix,
            PaginationConfig={"PageSize": self.page_size},
        )
        start = len(self._key_prefix)
        try:
            for page in pages:
                for item in page.get("Contents") or []:
                    key = item["Key"]
                    if not key.endswith(suffix) or not key.startswith(self._key_prefix):
                        continue
                    location = key[start:]
                    try:
                        self.check_syntax(location)
                    except UnsafePathError:
                        continue
                    yield BlobFile(location, int(item["Size"]), _mtime(item["LastModified"]))
        except self._errors as exc:
            raise self._fail("list", None, exc) from None

    def iter_blobs(self) -> Iterator[BlobFile]:
        """Every ``*.bin`` object below the prefix, with size and mtime, in key order.

        Locations are relative to the prefix; ``.gitignore`` and other names are never blobs.
        """
        return self._list(BLOB_SUFFIX)

    def list_keys(self) -> list[str]:
        """Sorted relative locations of every blob (see :meth:`iter_blobs`)."""
        return sorted(blob.location for blob in self.iter_blobs())

    def list_temp_files(self) -> list[BlobFile]:
        """``*.spot_tmp`` objects, sorted by location (save() never writes any)."""
        return sorted(self._list(TEMP_SUFFIX), key=lambda blob: blob.location)

    def clean_temp_files(self, max_age_seconds: float, *, now: float | None = None) -> int:
        """Delete temp objects last modified before ``now - max_age_seconds``; return the count.

        Each one is deleted with :meth:`delete_if_unchanged`, so one rewritten meanwhile stays.
        """
        if not max_age_seconds >= 0:  # also rejects NaN
            raise ValueError(f"max_age_seconds must be >= 0, got {max_age_seconds!r}")
        cutoff = (time.time() if now is None else now) - max_age_seconds
        removed = 0
        for temp in self.list_temp_files():
            if temp.mtime >= cutoff:
                continue
            if self.delete_if_unchanged(temp.location, temp.size, temp.mtime) is None:
                removed += 1
        return removed

    def prune_empty_dirs(self) -> int:
        """Always 0: S3 has no directories, a "folder" vanishes with its last object."""
        return 0
