"""Deduplicated series metadata: repeated attribute groups stored once, hash-addressed.

For each series, every instance's metadata is split into four groups and a remainder:

* ``patient``: group 0010 attributes;
* ``study``: the study-level attributes of the index tables (PS3.18 Table 10.6.1-5);
* ``series``: the series-level attributes (Table 10.6.1-6);
* ``image``: the other attributes whose value is the same in every instance of the series;
* ``own``: what is left (SOP Instance UID, Instance Number, position, ...).

Each group is a DICOM JSON object written once at
``studies/<S>/deduplicated/groups/<h>.json.gz`` (``h`` = sha256 of its JSON) and referenced by
hash; ``studies/<S>/deduplicated/<X>.json.gz`` lists, per instance in series order,
``{"refs": [h...], "own": {...}}``. :func:`read_series` merges them back into the instance
metadata exactly as the plain form holds it (keys in tag order).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from webpacs.core.attributes import SERIES_ATTRIBUTES, STUDY_ATTRIBUTES
from webpacs.static.tree import FROM_SERIES, gz, relocate

_STUDY = {a.hex for a in STUDY_ATTRIBUTES}
_SERIES = {a.hex for a in SERIES_ATTRIBUTES}
_UIDS = {"0020000D": "study", "0020000E": "series"}

Put = Callable[[str, bytes, bool], None]


def _kind(tag: str) -> str:
    if tag in _UIDS:
        return _UIDS[tag]
    if tag.startswith("0010"):
        return "patient"
    if tag in _STUDY:
        return "study"
    if tag in _SERIES:
        return "series"
    return "image"


def split(metas: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Split instance metadata into hash-addressed groups and per-instance entries."""
    if not metas:
        return {}, []
    first = metas[0]
    constant = {
        tag
        for tag, value in first.items()
        if _kind(tag) == "image" and all(m.get(tag) == value for m in metas[1:])
    }
    groups: dict[str, dict[str, Any]] = {}
    entries = []
    for meta in metas:
        parts: dict[str, dict[str, Any]] = {"patient": {}, "study": {}, "series": {}, "image": {}}
        own: dict[str, Any] = {}
        for tag, value in meta.items():
            kind = _kind(tag)
            if kind == "image" and tag not in constant:
                own[tag] = value
            else:
                parts[kind][tag] = value
        refs = []
        for part in parts.values():
            if not part:
                continue
            body = orjson.dumps(part)
            h = hashlib.sha256(body).hexdigest()
            groups[h] = part
            refs.append(h)
        entries.append({"refs": refs, "own": own})
    return groups, entries


def group_path(study: str, digest: str) -> str:
    """Tree path of a group file."""
    return f"studies/{study}/deduplicated/groups/{digest}.json.gz"


def series_path(study: str, series: str) -> str:
    """Tree path of a series' instance entries."""
    return f"studies/{study}/deduplicated/{series}.json.gz"


def write_series(study: str, series: str, metas: list[dict[str, Any]], put: Put) -> None:
    """Write the deduplicated form of one series (canonical metadata, study-relative URIs)."""
    groups, entries = split(metas)
    for h, part in groups.items():
        put(group_path(study, h), gz(orjson.dumps(part)), True)
    put(series_path(study, series), gz(orjson.dumps(entries)), False)


def read_series(root: str | Path, study: str, series: str) -> list[dict[str, Any]]:
    """Rebuild the canonical instance metadata of a series from its deduplicated form."""
    root = Path(root)
    entries = orjson.loads(gzip.decompress((root / series_path(study, series)).read_bytes()))
    cache: dict[str, dict[str, Any]] = {}
    out = []
    for entry in entries:
        merged: dict[str, Any] = {}
        for h in entry["refs"]:
            if h not in cache:
                data = gzip.decompress((root / group_path(study, h)).read_bytes())
                cache[h] = orjson.loads(data)
            merged.update(cache[h])
        merged.update(entry["own"])
        out.append(dict(sorted(merged.items())))
    return out


def series_metadata(root: str | Path, study: str, series: str) -> bytes:
    """The series metadata JSON (as ``metadata.gz`` holds it) rebuilt from the dedup form."""
    metas = read_series(root, study, series)
    return b"[" + b",".join(relocate(orjson.dumps(m), FROM_SERIES) for m in metas) + b"]"


def sizes(root: str | Path, study: str, series: str) -> dict[str, int]:
    """Bytes on disk of the plain and deduplicated forms of a series (and uncompressed)."""
    root = Path(root)
    entries_file = root / series_path(study, series)
    entries = orjson.loads(gzip.decompress(entries_file.read_bytes()))
    hashes = {h for e in entries for h in e["refs"]}
    dedup_gz = entries_file.stat().st_size
    dedup_raw = len(gzip.decompress(entries_file.read_bytes()))
    for h in hashes:
        data = (root / group_path(study, h)).read_bytes()
        dedup_gz += len(data)
        dedup_raw += len(gzip.decompress(data))
    plain = root / f"studies/{study}/series/{series}/metadata.gz"
    return {
        "plain_gz": plain.stat().st_size,
        "plain_raw": len(gzip.decompress(plain.read_bytes())),
        "dedup_gz": dedup_gz,
        "dedup_raw": dedup_raw,
    }
