"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW) through boto3.

Keys are stored under an optional prefix. A single ``PutObject`` is atomic on S3, and
``upload_fileobj`` (multipart for large bodies) only makes the object visible when the
upload completes, so a reader never sees half a blob. Frames and bulk data are read with
``Range`` GETs. botocore's exceptions are translated here into ``webpacs.errors``.

``touch`` copies an object onto itself (new metadata, same bytes), which restarts its
``LastModified``; ``collect`` reads that age, asks whether the object is referenced and
deletes it. S3 has no rename, so a ``touch`` landing between the last two steps could
lose its object: ingest touches only objects already stored, and ``collect`` only takes
objects unreferenced for the whole grace period, so it needs a re-send of exactly that
instance in that millisecond.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from webpacs.config import Settings
from webpacs.errors import InvalidRequest, NotFound, StorageError
from webpacs.storage.base import BlobEntry

_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise InvalidRequest(f"invalid blob key {key!r}")
    return key


class _StreamReader(io.RawIOBase):
    """A raw, readable stream over a botocore ``StreamingBody``."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Blobs:
    """``Blobs`` as objects in one bucket, under ``prefix``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        if not bucket:
            raise StorageError("the s3 blob backend needs s3.bucket (WEBPACS_S3_BUCKET)")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        session = boto3.session.Session(
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region or None,
        )
        self._s3 = session.client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(max_pool_connections=32, retries={"max_attempts": 5, "mode": "standard"}),
        )
        self._transfer = TransferConfig(multipart_threshold=64 * 1024**2, use_threads=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Blobs:
        """Open the bucket the ``s3`` configuration section names."""
        s = settings.s3
        return cls(
            s.bucket,
            s.prefix,
            endpoint_url=s.endpoint_url,
            region=s.region,
            access_key_id=s.access_key_id,
            secret_access_key=s.secret_access_key,
        )

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _error(self, e: Exception, key: str, what: str) -> Exception:
        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return NotFound(f"blob {key} not found")
        return StorageError(f"cannot {what} {key} in bucket {self.bucket}: {e}")

    def put(self, key: str, data: bytes) -> None:
        k = self._key(key)
        try:
            self._s3.put_object(Bucket=self.bucket, Key=k, Body=data)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, key, "write") from e

    def put_file(self, key: str, fp: BinaryIO) -> None:
        k = self._key(key)
        try:
            self._s3.upload_fileobj(fp, self.bucket, k, Config=self._transfer)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, key, "write") from e

    def _get(self, key: str, **extra: Any) -> Any:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, key, "read") from e

    def get(self, key: str) -> bytes:
        body = self._get(key)["Body"]
        try:
            return bytes(body.read())
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, key, "read") from e
        finally:
            body.close()

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            resp = self._get(key, Range=f"bytes={offset}-{offset + length - 1}")
        except StorageError as e:
            if "InvalidRange" in str(e):  # offset past the end: like a file, nothing
                return b""
            raise
        body = resp["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def open(self, key: str) -> BinaryIO:
        body = self._get(key)["Body"]
        return io.BufferedReader(_StreamReader(body), 1 << 20)

    def _head(self, key: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
            return head
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, key, "stat") from e

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as e:
            err = self._error(e, key, "delete")
            if not isinstance(err, NotFound):
                raise err from e

    def keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :]
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, prefix, "list") from e

    def local_path(self, key: str) -> str | None:
        return None

    # -- what `webpacs check` needs --------------------------------------------------------
    def entries(self, prefix: str = "") -> Iterator[BlobEntry]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield BlobEntry(
                        obj["Key"][len(self.prefix) :],
                        int(obj["Size"]),
                        obj["LastModified"].timestamp(),
                    )
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, prefix, "list") from e

    def touch(self, key: str) -> bool:
        k = self._key(key)
        try:
            self._s3.copy_object(
                Bucket=self.bucket, Key=k, CopySource={"Bucket": self.bucket, "Key": k},
                Metadata={"touched": f"{time.time():.3f}"}, MetadataDirective="REPLACE",
            )  # fmt: skip
        except (ClientError, BotoCoreError) as e:
            err = self._error(e, key, "touch")
            if isinstance(err, NotFound):
                return False
            if self.exists(key):  # e.g. over 5 GB, which CopyObject refuses: leave it be
                return True
            raise err from e
        return True

    def collect(self, key: str, older_than: float, referenced: Callable[[str], bool]) -> bool:
        try:
            modified = self._head(key)["LastModified"].timestamp()
        except NotFound:
            return False
        if modified >= older_than or referenced(key):
            return False
        self.delete(key)
        return True

    def scraps(self) -> Iterator[BlobEntry]:
        paginator = self._s3.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for up in page.get("Uploads", []):
                    key = f"{up['Key'][len(self.prefix) :]}#{up['UploadId']}"
                    yield BlobEntry(key, 0, up["Initiated"].timestamp())
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "", "list uploads in") from e

    def remove_scrap(self, key: str) -> None:
        name, _, upload = key.rpartition("#")
        try:
            self._s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self._key(name), UploadId=upload
            )
        except (ClientError, BotoCoreError) as e:
            err = self._error(e, name, "abort the upload of")
            if not isinstance(err, NotFound) and "NoSuchUpload" not in str(e):
                raise err from e
