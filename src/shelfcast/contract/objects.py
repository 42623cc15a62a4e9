"""`ObjectStore`: the thin adapter over S3 (boto3) that every side effect on objects goes through.

Conditional writes are first-class: `put_if_absent` (`IfNoneMatch='*'`) for immutable objects and
`put_if_match` (`IfMatch` on an ETag) for compare-and-swap pointers. Reads may be conditional too
(`get_if_changed`, a 304 means unchanged).

Retries live in one layer, botocore's standard retry mode: every HTTP request (a GET, a page of a listing, a part
of a multipart upload) is tried up to `S3_MAX_ATTEMPTS` times in all on connection errors, timeouts, throttling
and 5xx answers, with exponential backoff and jitter; precondition failures are never retried. `ObjectStore`
adds no retries on top (its `attempts` stays 1 unless a caller's client retries nothing itself), and the flows'
Prefect tasks do not retry S3 errors again (`shelfcast.pipeline.transient.retry_on_io`).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from shelfcast.contract.errors import ShelfcastError, WriteConflict

S3_MAX_ATTEMPTS = 3  # tries per S3 request in all (the first one included), the one place they are set
RETRYABLE_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "503", "500"}


class ObjectMissing(ShelfcastError, KeyError):
    """The object does not exist."""


class AlreadyExists(ShelfcastError, FileExistsError):
    """An immutable object was written before (`IfNoneMatch='*'` refused the write)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class Fetched:
    body: bytes
    etag: str


@functools.lru_cache(maxsize=32)
def make_s3_client(endpoint_url: str | None, access_key: str, secret_key: str, region: str = "us-east-1",
                   connect_timeout: float = 3.0, read_timeout: float = 30.0, max_attempts: int = S3_MAX_ATTEMPTS):
    """The boto3 S3 client every side uses: path-style addressing, bounded timeouts, and the project's one retry
    layer (botocore's standard mode, `max_attempts` tries per request in all). One client per endpoint and
    identity for the life of the process: building a boto3 client loads its service model (a large share of a
    short flow's time), and a client is safe to share between threads."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},  # botocore: max_attempts = retries
        ),
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class ObjectStore:
    """Objects in one bucket. The client retries each request (`make_s3_client`); `attempts` > 1 adds tries of
    whole calls on transient failures, only for a client that retries nothing itself (`max_attempts=1`)."""

    def __init__(self, client, bucket: str, attempts: int = 1, backoff_s: float = 0.2):
        self.client = client
        self.bucket = bucket
        self.attempts = attempts
        self.backoff_s = backoff_s

    @classmethod
    def from_settings(cls, settings, role: str = "trainer", **kwargs) -> "ObjectStore":
        key, secret = settings.credentials(role)
        client = make_s3_client(settings.s3_endpoint_url, key, secret, settings.s3_region,
                                max_attempts=settings.s3_max_attempts)
        return cls(client, settings.bucket, **kwargs)

    def _call(self, fn, **kwargs):
        for attempt in range(self.attempts):
            try:
                return fn(Bucket=self.bucket, **kwargs)
            except ClientError as exc:
                if _code(exc) not in RETRYABLE_CODES or attempt == self.attempts - 1:
                    raise
            except (EndpointConnectionError, BotoCoreError):
                if attempt == self.attempts - 1:
                    raise
            time.sleep(self.backoff_s * 2**attempt)

    def ensure_bucket(self, versioning: bool = True, wait_s: float = 0.0) -> None:
        """Create the bucket if it is missing (versioning on). A freshly started S3 gateway answers errors until
        its storage is ready: `wait_s` keeps trying that long before the last error is raised."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                try:
                    self.client.head_bucket(Bucket=self.bucket)
                except ClientError:
                    self.client.create_bucket(Bucket=self.bucket)
                if versioning:
                    self.client.put_bucket_versioning(Bucket=self.bucket,
                                                      VersioningConfiguration={"Status": "Enabled"})
                return
            except Exception:  # noqa: BLE001 - any error of a gateway still starting
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        return self._call(self.client.put_object, Key=key, Body=body, ContentType=content_type)["ETag"]

    def put_if_absent(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Write once: raises `AlreadyExists` when the key already holds an object."""
        try:
            return self._call(self.client.put_object, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")["ETag"]
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise AlreadyExists(f"s3://{self.bucket}/{key} exists already and is immutable") from None
            raise

    def put_if_match(self, key: str, body: bytes, etag: str | None, content_type: str = "application/json") -> str:
        """Compare-and-swap: write only if the object's ETag is still `etag` (None: only if it is absent)."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            return self._call(self.client.put_object, Key=key, Body=body, ContentType=content_type, **condition)["ETag"]
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise WriteConflict(
                    f"s3://{self.bucket}/{key} changed since it was read (expected ETag {etag}); re-read and retry"
                ) from None
            raise

    def get(self, key: str) -> Fetched:
        try:
            response = self._call(self.client.get_object, Key=key)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise ObjectMissing(f"s3://{self.bucket}/{key} does not exist") from None
            raise
        return Fetched(response["Body"].read(), response["ETag"])

    def get_if_changed(self, key: str, etag: str | None) -> Fetched | None:
        """Conditional GET: None when the object still has `etag` (HTTP 304)."""
        if not etag:
            return self.get(key)
        try:
            response = self._call(self.client.get_object, Key=key, IfNoneMatch=etag)
        except ClientError as exc:
            code = _code(exc)
            if code in ("304", "NotModified"):
                return None
            if code in ("NoSuchKey", "404"):
                raise ObjectMissing(f"s3://{self.bucket}/{key} does not exist") from None
            raise
        return Fetched(response["Body"].read(), response["ETag"])

    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self._call(self.client.head_object, Key=key)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return ObjectInfo(key, response["ETag"], response["ContentLength"])

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                yield ObjectInfo(entry["Key"], entry["ETag"], entry["Size"])

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Key=key)

    def download(self, key: str, path: Path) -> None:
        """Stream an object to a file (multipart for large files, `TRANSFER_THREADS` parts in flight)."""
        try:
            self.client.download_file(self.bucket, key, str(path), Config=transfer_config())
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(f"s3://{self.bucket}/{key} does not exist") from None
            raise

    def upload(self, path: Path, key: str) -> None:
        """Stream a file to an object (multipart for large files, `TRANSFER_THREADS` parts in flight)."""
        self.client.upload_file(str(path), self.bucket, key, Config=transfer_config())

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


TRANSFER_THREADS = 4  # boto3's default of 10 threads keeps ~40 MB more in their allocator arenas for a 200 MB file


@functools.lru_cache(maxsize=1)
def transfer_config():
    """Multipart transfers with a few parts in flight: bounded memory on small ingest and store hosts."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(max_concurrency=TRANSFER_THREADS)


class Objects(Protocol):
    """What the sales store needs from an object store; `ObjectStore` (S3) and `LocalObjects` (a folder) provide it."""

    def put(self, key: str, body: bytes, content_type: str = ...) -> str: ...
    def put_if_absent(self, key: str, body: bytes, content_type: str = ...) -> str: ...
    def put_if_match(self, key: str, body: bytes, etag: str | None, content_type: str = ...) -> str: ...
    def get(self, key: str) -> Fetched: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...
    def download(self, key: str, path: Path) -> None: ...
    def upload(self, path: Path, key: str) -> None: ...


class LocalObjects:
    """A folder that behaves like a bucket: keys are relative paths, writes are atomic (temp file + rename).

    The ETag of a file is its modification time and size, which changes whenever the file is rewritten.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def describe(self, key: str = "") -> str:
        return str(self.root / key)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise ValueError(f"key {key!r} points outside {self.root}")
        return path

    @staticmethod
    def _etag(path: Path) -> str:
        stat = path.stat()
        return f"m{stat.st_mtime_ns}s{stat.st_size}"  # the same formula as `list`

    def _write_temp(self, path: Path, body: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "wb") as out:
            out.write(body)
        return Path(tmp)

    def put(self, key: str, body: bytes, content_type: str = "") -> str:
        path = self._path(key)
        os.replace(self._write_temp(path, body), path)
        return self._etag(path)

    def put_if_absent(self, key: str, body: bytes, content_type: str = "") -> str:
        path = self._path(key)
        tmp = self._write_temp(path, body)
        try:
            os.link(tmp, path)  # atomic, fails when the key exists
        except FileExistsError:
            raise AlreadyExists(f"{path} exists already and is immutable") from None
        finally:
            tmp.unlink()
        return self._etag(path)

    def put_if_match(self, key: str, body: bytes, etag: str | None, content_type: str = "") -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self._etag(path) if path.exists() else None
            if current != etag:
                raise WriteConflict(f"{path} changed since it was read (expected {etag}); re-read and retry")
            return self.put(key, body)

    def get(self, key: str) -> Fetched:
        path = self._path(key)
        try:
            return Fetched(path.read_bytes(), self._etag(path))
        except FileNotFoundError:
            raise ObjectMissing(f"{path} does not exist") from None

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return ObjectInfo(key, self._etag(path), path.stat().st_size)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the folder the prefix names (not the whole root), with os.scandir: listing one file's ledger
        # entries must not cost a walk of every table file, and a listing of thousands costs milliseconds.
        base = self.root / prefix.rpartition("/")[0]
        if not base.is_dir():
            return
        found = []
        folders = [base]
        while folders:  # os.scandir's entries stat relative to their folder: a landing of 10,000 files in ~30 ms
            folder = folders.pop()
            rel = os.path.relpath(folder, self.root).replace(os.sep, "/")
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                        continue
                    if entry.name.startswith(".tmp-") or entry.name == ".lock":
                        continue
                    key = entry.name if rel == "." else f"{rel}/{entry.name}"
                    if key.startswith(prefix):
                        try:
                            stat = entry.stat()
                        except FileNotFoundError:  # deleted between the listing and its stat
                            continue
                        found.append(ObjectInfo(key, f"m{stat.st_mtime_ns}s{stat.st_size}", stat.st_size))
        yield from sorted(found, key=lambda info: info.key)


    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def download(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            raise ObjectMissing(f"{self._path(key)} does not exist") from None

    def upload(self, path: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
