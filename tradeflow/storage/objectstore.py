"""Object stores: a local folder or S3, behind one small create-only interface.

Objects are never overwritten. ``put_if_absent`` is atomic on both backends: locally through a
hard link (which fails if the name exists), on S3 through a conditional put
(``If-None-Match: *``). That is what lets a manifest be "published last": whoever writes a key
first wins, and a reader never sees half an object.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol


class ObjectStore(Protocol):
    """Create-only key/value storage of bytes."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` under ``key`` unless the key exists; return True if this call wrote it."""
        ...

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``; raise KeyError if there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Return whether ``key`` holds an object."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix``, in lexicographic order."""
        ...

    def describe(self, key: str = "") -> str:
        """Return where ``key`` lives, for people (a path or an s3:// URL)."""
        ...


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise ValueError(f"invalid object key {key!r}: use a relative, slash-separated path")
    return key


class LocalObjectStore:
    """Objects as files under a root folder."""

    def __init__(self, root: str | Path) -> None:
        """Use ``root`` (created if missing) as the store's top folder."""
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` under ``key`` unless it exists; atomic (temp file, then hard link)."""
        target = self.root / _check_key(key)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as temp:
                temp.write(data)
                temp.flush()
                os.fsync(temp.fileno())
            try:
                os.link(temp_name, target)
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(temp_name)

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``."""
        try:
            return (self.root / _check_key(key)).read_bytes()
        except FileNotFoundError:
            raise KeyError(f"no object {key!r} in {self.root}") from None

    def exists(self, key: str) -> bool:
        """Return whether ``key`` holds an object."""
        return (self.root / _check_key(key)).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys under ``prefix`` in lexicographic order (temp files are skipped)."""
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.exists():
            return
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)

    def describe(self, key: str = "") -> str:
        """Return the file path of ``key``."""
        return str(self.root / key) if key else str(self.root)


class S3ObjectStore:
    """Objects in an S3 bucket under a prefix, written with conditional puts and SSE."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        server_side_encryption: str | None = "AES256",
        object_lock_days: int = 0,
    ) -> None:
        """Use ``s3://bucket/prefix``; ``client`` may be a ready boto3 S3 client.

        With ``object_lock_days`` > 0 every object is written under Object Lock in compliance
        mode, retained that many days: nobody, the account root included, can delete or replace
        that version before then. The bucket must have been created with Object Lock enabled.
        """
        if client is None:
            import boto3  # the only module that talks to S3

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.server_side_encryption = server_side_encryption
        self.object_lock_days = object_lock_days

    def _full(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` under ``key`` unless it exists (``If-None-Match: *``)."""
        from botocore.exceptions import ClientError

        extra: dict[str, Any] = {}
        if self.server_side_encryption:
            extra["ServerSideEncryption"] = self.server_side_encryption
        if self.object_lock_days > 0:
            extra["ObjectLockMode"] = "COMPLIANCE"
            extra["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=self.object_lock_days)
            extra["ChecksumAlgorithm"] = "SHA256"  # S3 requires a checksum on locked writes
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._full(key), Body=data, IfNoneMatch="*", **extra
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            # 412: the key exists. 409: a concurrent conditional write to the same key is in
            # flight; the other writer wins, exactly as if it had finished first.
            if code in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}:
                return False
            raise
        return True

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise KeyError(f"no object {key!r} in {self.describe()}") from None
            raise
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        """Return whether ``key`` holds an object."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys under ``prefix`` in lexicographic order (S3 lists in that order)."""
        full_prefix = self._full(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    def hidden(self, prefix: str = "") -> dict[str, bytes]:
        """Return keys under ``prefix`` whose newest version is a delete marker, with their last bytes.

        A plain DELETE in a versioned (Object Lock) bucket only adds a marker: the locked version
        stays, but listing and reading no longer show it. Verification uses this to see through it.
        """
        full_prefix = self._full(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        marked: set[str] = set()
        newest_version: dict[str, str] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for marker in page.get("DeleteMarkers", []):
                if marker.get("IsLatest"):
                    marked.add(marker["Key"])
            for version in page.get("Versions", []):
                newest_version.setdefault(version["Key"], version["VersionId"])  # newest first
        found = {}
        for full in sorted(marked & set(newest_version)):
            response = self.client.get_object(Bucket=self.bucket, Key=full, VersionId=newest_version[full])
            found[full[strip:]] = response["Body"].read()
        return found

    def describe(self, key: str = "") -> str:
        """Return the s3:// URL of ``key``."""
        base = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{base}/{key}" if key else base


def open_store(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    server_side_encryption: str | None = "AES256",
    s3_client: Any = None,
    object_lock_days: int = 0,
) -> ObjectStore:
    """Return the object store for a storage URL (a folder, ``file://`` or ``s3://``).

    ``object_lock_days`` applies to S3 only (see :class:`S3ObjectStore`).
    """
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3ObjectStore(
            bucket,
            prefix,
            client=s3_client,
            endpoint_url=s3_endpoint_url,
            server_side_encryption=None if server_side_encryption == "none" else server_side_encryption,
            object_lock_days=object_lock_days,
        )
    return LocalObjectStore(url.removeprefix("file://"))
