"""``webpacs static deploy``: upload a tree to S3 (or an S3-compatible store) with boto3.

Object keys are the tree paths under the prefix, except that the two resources DICOMweb names
get their DICOMweb names, so a bucket serves them at the URLs OHIF asks for:
``.../metadata.gz`` -> ``.../metadata`` and ``.../frames/<n>.mht[.gz]`` -> ``.../frames/<n>``.
Index files keep their names (``studies/index.json.gz``; a CDN rewrite maps ``/studies`` to it),
and bulk data files keep theirs, which the relative ``BulkDataURI``s name.

Every object gets its ``Content-Type`` (``application/dicom+json``; ``multipart/related`` with
the part's type, the file's boundary and ``transfer-syntax``) and ``Content-Encoding: gzip`` for
gzip'd files. Only objects whose MD5 differs from the remote ETag are uploaded (single-part
puts, so the ETag is the MD5); ``delete`` removes remote objects the tree no longer has.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from webpacs.core.media import DICOM_JSON
from webpacs.errors import ConfigError
from webpacs.static.tree import STATE_FILE, TMP_DIR, read_part

JSON = DICOM_JSON


@dataclass
class DeployReport:
    """What a deploy did."""

    uploaded: int = 0
    unchanged: int = 0
    deleted: int = 0
    bytes: int = 0


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, "prefix/")`` (prefix empty or ending in ``/``)."""
    u = urlparse(url)
    if u.scheme != "s3" or not u.netloc:
        raise ConfigError(f"not an s3://bucket/prefix URL: {url!r}")
    prefix = u.path.strip("/")
    return u.netloc, f"{prefix}/" if prefix else ""


def object_key(rel: str) -> str:
    """The object key (under the prefix) for a tree path."""
    if rel.endswith("/metadata.gz"):
        return rel[:-3]
    head, sep, name = rel.rpartition("/frames/")
    if sep and name.endswith((".mht", ".mht.gz")):
        return f"{head}/frames/{name.split('.')[0]}"
    return rel


def headers_for(rel: str, data: bytes) -> dict[str, str]:
    """``ContentType`` and ``ContentEncoding`` for a tree file."""
    gzipped = rel.endswith(".gz")
    if rel.endswith((".mht", ".mht.gz")):
        boundary, _body, ctype = read_part(gzip.decompress(data) if gzipped else data)
        part_type, _, rest = ctype.partition(";")
        value = f'multipart/related; type="{part_type.strip()}"; boundary={boundary}'
        if "transfer-syntax" in rest:
            value += f"; {rest.strip()}"
    elif rel.endswith((".json.gz", "/metadata.gz", ".json")):
        value = (
            JSON
            if "/deduplicated/" not in rel and not rel.endswith("fragments.json")
            else "application/json"
        )
    else:
        value = "application/octet-stream"
    out = {"ContentType": value}
    if gzipped:
        out["ContentEncoding"] = "gzip"
    return out


def tree_files(root: Path) -> Iterator[str]:
    """Tree paths of the files to deploy (not the build state or temporary files)."""
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != TMP_DIR]
        for name in files:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != STATE_FILE:
                yield rel


def _remote(client: Any, bucket: str, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = str(obj["ETag"]).strip('"')
    return out


def deploy(
    root: str | Path,
    url: str,
    *,
    endpoint_url: str | None = None,
    delete: bool = False,
    client: Any = None,
    on_start: Callable[[int], None] | None = None,
    on_file: Callable[[], None] | None = None,
) -> DeployReport:
    """Upload the tree at ``root`` to ``s3://bucket/prefix``; only what changed."""
    try:
        import boto3
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ConfigError("deploy needs boto3: pip install 'webpacs[s3]'") from e
    root = Path(root).expanduser()
    bucket, prefix = parse_s3_url(url)
    s3 = client or boto3.client("s3", endpoint_url=endpoint_url)
    remote = _remote(s3, bucket, prefix)
    files = sorted(tree_files(root))
    if on_start is not None:
        on_start(len(files))
    report = DeployReport()
    local_keys = set()
    for rel in files:
        key = prefix + object_key(rel)
        local_keys.add(key)
        data = (root / rel).read_bytes()
        if remote.get(key) == hashlib.md5(data, usedforsecurity=False).hexdigest():
            report.unchanged += 1
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=data, **headers_for(rel, data))
            report.uploaded += 1
            report.bytes += len(data)
        if on_file is not None:
            on_file()
    if delete:
        for key in sorted(set(remote) - local_keys):
            s3.delete_object(Bucket=bucket, Key=key)
            report.deleted += 1
    return report
