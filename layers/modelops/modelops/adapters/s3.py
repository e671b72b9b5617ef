"""S3 objects (the `ObjectStore` port) through a boto3 S3 client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from modelops.adapters.aws import error_code
from modelops.ports import ObjectInfo

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}


class S3Objects:
    def __init__(self, client: Any) -> None:
        self.client = client

    def size(self, bucket: str, key: str, version_id: str | None = None) -> int | None:
        try:
            head = self.client.head_object(**_where(bucket, key, version_id))
        except Exception as exc:
            if error_code(exc) in _MISSING:
                return None
            raise
        return int(head["ContentLength"])

    def read(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        return bytes(self.client.get_object(**_where(bucket, key, version_id))["Body"].read())

    def put(self, bucket: str, key: str, body: bytes, *, content_type: str) -> str | None:
        response = self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        version = response.get("VersionId")
        return str(version) if version and version != "null" else None

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    key=obj["Key"],
                    size=int(obj.get("Size", 0)),
                    last_modified=obj["LastModified"],
                    etag=str(obj.get("ETag", "")).strip('"'),
                )


def _where(bucket: str, key: str, version_id: str | None) -> dict[str, str]:
    where = {"Bucket": bucket, "Key": key}
    if version_id:
        where["VersionId"] = version_id
    return where
