"""What a store trusts: the bucket's signed delivery metadata, checked with python-tuf's client over the store's
own S3 credentials, and every download cut off at a small cap.

`TrustedBucket.open()` runs TUF's client workflow (`tuf.ngclient.Updater.refresh`): newer root versions one by
one (each signed by the keys of the one before, so key rotations are followed), then the timestamp, the snapshot
it names and the targets the snapshot names, each checked for signatures by the keys root gives its role, for
versions that never go back, for matching versions and hashes between them, and for expiry. Only then does the
store look at a channel: the pointer, the manifest and the model it downloads must each be a signed target with
exactly that length and sha256.

The store's trusted metadata lives in `<store dir>/metadata/`. Its first root is provisioned with the device
(`shelfcast store sync --trusted-root root.json`, from `shelfcast keys show --root-out`): a store never trusts
the first root the bucket hands it.

Downloads are bounded: the fetcher (`s3_fetcher`) asks S3 for at most one byte more than it may accept (a `Range` request) and
streams it in chunks, so a huge object costs neither memory nor bandwidth past the cap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from botocore.exceptions import ClientError

from shelfcast.contract.errors import IntegrityError
from shelfcast.contract.clock import STAMP_FORMAT, SystemClock
from shelfcast.contract.objects import ObjectStore

METADATA_DIR = "metadata"
CHUNK_BYTES = 64 * 1024
# Caps on metadata a store accepts (bytes): a root or timestamp is a few hundred bytes, targets grow by about
# 750 bytes per channel move.
ROOT_MAX_BYTES = 64 * 1024
TIMESTAMP_MAX_BYTES = 16 * 1024
SNAPSHOT_MAX_BYTES = 64 * 1024
TARGETS_MAX_BYTES = 2 * 1024 * 1024
DOCUMENT_MAX_BYTES = 1024 * 1024  # a pointer or manifest, whatever its signed length says


class TrustError(IntegrityError):
    """The bucket's signed metadata does not check out (unsigned, wrong keys, older, mixed, too large)."""


class FrozenChannel(TrustError):
    """The signed metadata expired: nobody re-signed it in time, or the store is shown an old copy on purpose."""


def s3_fetcher(objects: ObjectStore):
    """python-tuf's network layer over an `ObjectStore` (built on first use: `predict` never imports tuf)."""
    from tuf.ngclient import FetcherInterface

    class S3Fetcher(FetcherInterface):
        """`s3://<bucket>/<key>` URLs, read with the store's credentials, at most `max_length + 1` bytes asked for
        and streamed in 64 KiB chunks."""

        def __init__(self):
            self.objects = objects
            self._cap: int | None = None
            self.bytes_received = 0
            self.etags: dict[str, str] = {}

        def _key(self, url: str) -> str:
            prefix = f"s3://{objects.bucket}/"
            if not url.startswith(prefix):
                raise ValueError(f"{url} is outside s3://{objects.bucket}/")
            return url[len(prefix):]

        def download_file(self, url: str, max_length: int):
            self._cap = max_length
            return super().download_file(url, max_length)

        def _fetch(self, url: str) -> Iterator[bytes]:
            from tuf.api.exceptions import DownloadHTTPError

            key, cap = self._key(url), self._cap
            request = {"Key": key}
            if cap is not None:
                request["Range"] = f"bytes=0-{cap}"  # one byte past the cap, so "too long" is still seen
            try:
                response = objects._call(objects.client.get_object, **request)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if code == "InvalidRange":  # an empty object has no byte 0
                    return iter(())
                if code in ("NoSuchKey", "404", "NotFound"):
                    status = 404
                elif code in ("AccessDenied", "403"):
                    status = 403
                raise DownloadHTTPError(f"{objects.describe(key)}: {code}", status or 500) from None
            self.etags[key] = response.get("ETag", "")
            return self._chunks(response["Body"])

        def _chunks(self, body) -> Iterator[bytes]:
            try:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    self.bytes_received += len(chunk)
                    yield chunk
            finally:
                body.close()

    return S3Fetcher()


class TrustedBucket:
    """One store's view of the bucket's signed metadata (a fresh one per sync: TUF refreshes once per client)."""

    def __init__(self, objects: ObjectStore, directory: Path, trusted_root: bytes | None = None):
        self.objects = objects
        self.metadata_dir = Path(directory) / METADATA_DIR
        self.trusted_root = trusted_root
        self._fetcher = None
        self.updater = None

    @property
    def fetcher(self):
        if self._fetcher is None:
            self._fetcher = s3_fetcher(self.objects)
        return self._fetcher

    @property
    def bytes_received(self) -> int:
        return self._fetcher.bytes_received if self._fetcher is not None else 0

    @property
    def provisioned(self) -> bool:
        return (self.metadata_dir / "root.json").exists() or self.trusted_root is not None

    def open(self) -> "TrustedBucket":
        """Refresh the signed metadata; raises `TrustError` (or `FrozenChannel`) when it does not check out."""
        from tuf.api import exceptions
        from tuf.ngclient import Updater, UpdaterConfig

        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        local_root = self.metadata_dir / "root.json"
        if local_root.exists():
            bootstrap = None  # the root this store already trusts (and rotated to)
        elif self.trusted_root is not None:
            bootstrap = self.trusted_root
        else:
            raise TrustError(f"this store has no trusted root in {self.metadata_dir}: provision the bucket's root "
                             "with `shelfcast store sync --trusted-root root.json` (from `shelfcast keys show "
                             "--root-out root.json` on the trainer)")
        config = UpdaterConfig(root_max_length=ROOT_MAX_BYTES, timestamp_max_length=TIMESTAMP_MAX_BYTES,
                               snapshot_max_length=SNAPSHOT_MAX_BYTES, targets_max_length=TARGETS_MAX_BYTES,
                               prefix_targets_with_hash=False)
        where = f"{self.objects.describe(METADATA_DIR)}/"
        def updater(initial: bytes | None):
            return Updater(str(self.metadata_dir), where, target_base_url=f"s3://{self.objects.bucket}/",
                           fetcher=self.fetcher, config=config, bootstrap=initial)

        try:
            try:
                self.updater = updater(bootstrap)
            except (OSError, exceptions.RepositoryError):
                if bootstrap is not None or self.trusted_root is None:
                    raise
                # The local root is damaged: start again from the provisioned one; the root history on disk
                # and in the bucket leads back to the newest root, each step checked by the one before.
                self.updater = updater(self.trusted_root)
            self.updater.refresh()
        except exceptions.ExpiredMetadataError as exc:
            raise FrozenChannel(
                f"the signed delivery metadata in {where} has expired ({exc}): nobody re-signed it in time, or this "
                "store is being shown an old copy, so the channel may be frozen; fix: run `shelfcast keys refresh` "
                "(the nightly run does) and check who can write the bucket") from None
        except exceptions.RepositoryError as exc:
            raise TrustError(f"the signed delivery metadata in {where} does not verify "
                             f"({type(exc).__name__}: {exc}); refused") from None
        except exceptions.DownloadLengthMismatchError as exc:
            raise TrustError(f"delivery metadata in {where} is larger than a store accepts ({exc}); refused") from None
        except exceptions.DownloadHTTPError as exc:
            if exc.status_code == 404:
                raise TrustError(f"{where} holds no signed metadata ({exc}); the trainer must run "
                                 "`shelfcast keys init` and promote again") from None
            raise
        return self

    def timestamp_etag(self) -> str | None:
        """The ETag of the timestamp this refresh verified (None when the local copy was current)."""
        return self.fetcher.etags.get(f"{METADATA_DIR}/timestamp.json")

    def expires(self) -> str | None:
        """The earliest expiry of the metadata this store now trusts (ISO 8601), from its local copies."""
        times = []
        for role in ("root", "timestamp", "snapshot", "targets"):
            try:
                times.append(json.loads((self.metadata_dir / f"{role}.json").read_bytes())["signed"]["expires"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
        return min(times)

    def still_current(self, etag: str | None, expires: str | None) -> bool:
        """The cheap poll: True when the bucket's timestamp is still the one this store verified (HTTP 304 on
        its ETag, no body) and nothing it trusts has expired. A root rotation or any new release comes with a
        new timestamp, so it always takes the full path; a server answering 304 forever is caught by the expiry."""
        # python-tuf checks expiry against the system clock; so does this shortcut (not a replay's clock)
        if not etag or not expires or expires <= SystemClock().now().strftime(STAMP_FORMAT):
            return False
        try:  # HEAD, never GET: a changed timestamp may be of any size, the full path reads it with its cap
            self.objects._call(self.objects.client.head_object, Key=f"{METADATA_DIR}/timestamp.json",
                               IfNoneMatch=etag)
        except ClientError as exc:
            # 304: unchanged; anything else (gone, refused) is for the full path to report
            return str(exc.response.get("Error", {}).get("Code", "")) in ("304", "NotModified")
        return False

    def target(self, path: str):
        """The signed length and hashes of `path`, or None when it is not a signed target."""
        from tuf.api import exceptions

        try:
            return self.updater.get_targetinfo(path)
        except exceptions.RepositoryError as exc:
            raise TrustError(f"signed metadata for {path} does not verify ({exc}); refused") from None

    def require(self, path: str, what: str):
        info = self.target(path)
        if info is None:
            raise TrustError(f"{self.objects.describe(path)} ({what}) is not signed by the delivery keys; refused")
        return info

    def download(self, info, destination: Path, what: str) -> Path:
        """Stream a signed target into `destination`, reading at most its signed length (+1 byte to notice more),
        and check its sha256. Raises `TrustError` when the object is not exactly what was signed."""
        from tuf.api import exceptions

        try:
            return Path(self.updater.download_target(info, str(destination)))
        except exceptions.DownloadLengthMismatchError:
            raise TrustError(f"{self.objects.describe(info.path)} ({what}) is longer than its signed "
                             f"{info.length:,} bytes; download cut off there and refused") from None
        except exceptions.RepositoryError as exc:
            raise TrustError(f"{self.objects.describe(info.path)} ({what}) is not the signed file "
                             f"({exc}); refused") from None
        except exceptions.DownloadHTTPError as exc:
            if exc.status_code == 404:
                raise TrustError(f"{self.objects.describe(info.path)} ({what}) is signed but missing; "
                                 "refused") from None
            raise

    def read(self, info, what: str, folder: Path, max_bytes: int = DOCUMENT_MAX_BYTES) -> bytes:
        """A small signed document (pointer, manifest): downloaded like a model, then read."""
        if info.length > max_bytes:
            raise TrustError(f"{self.objects.describe(info.path)} ({what}) is signed at {info.length:,} bytes, "
                             f"over the {max_bytes:,} a store reads for it; refused")
        folder.mkdir(parents=True, exist_ok=True)
        path = self.download(info, folder / Path(info.path).name, what)
        return path.read_bytes()


def sha256_of(info) -> str:
    return str(info.hashes.get("sha256", ""))

