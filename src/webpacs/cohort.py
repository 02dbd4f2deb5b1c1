"""Cohort export: the instances a QIDO query matches, written out with a manifest.

``webpacs export --query "Modality=CT&..."`` parses the query with ``core.query.parse_qido``
at the instance level (so every key QIDO-RS ``/instances`` accepts works here, extensions
included), asks the index, and writes what matched as

- Part 10 files, ``OUT/<study>/<series>/<sop>.dcm`` (the layout of ``webpacs static
  export``), copied from the stored objects as they are;
- a ZIP file with the same layout (``--zip``);
- or a static DICOMweb tree of just these instances (``--static``): they are loaded into
  a scratch store, so the tree's counts and study lists describe the cohort, not the
  whole store.

Each form carries ``manifest.csv``: one row per instance with its study, series and
instance UIDs, its key attributes and the attributes the query matched on.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from webpacs.core.attributes import Level, resolve
from webpacs.core.query import parse_qido
from webpacs.errors import InvalidRequest
from webpacs.ingest import commit, prepare
from webpacs.static.export import part10_path
from webpacs.storage.base import InstanceRecord
from webpacs.storage.registry import Store, open_store

MANIFEST = "manifest.csv"
#: Columns of every manifest, then the query's own keys.
KEY_ATTRIBUTES = (
    "PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber",
    "StudyDescription", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
    "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
)  # fmt: skip
_NOT_ATTRIBUTES = {"limit", "offset", "fuzzymatching", "includefield"}

OnInstance = Callable[[], None]


@dataclass
class Cohort:
    """The instances a query matched, in study, series and instance order."""

    query: str
    keys: list[str]  # the query's matching keys, as written
    records: list[InstanceRecord] = field(default_factory=list)

    @property
    def studies(self) -> int:
        return len({r.study_uid for r in self.records})

    @property
    def series(self) -> int:
        return len({r.series_uid for r in self.records})

    @property
    def bytes(self) -> int:
        return sum(r.size for r in self.records)


def select(store: Store, query: str) -> Cohort:
    """The instances matching ``query`` (a QIDO query string, ``Modality=CT&...``)."""
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not params:
        raise InvalidRequest("the query names no attribute (e.g. Modality=CT)")
    q = parse_qido(Level.INSTANCE, params)
    keys = list(dict.fromkeys(k for k, _ in params if k not in _NOT_ATTRIBUTES))
    cohort = Cohort(query, keys)
    for row in store.index.search(q).rows:
        sop = str(row["00080018"]["Value"][0])
        rec = store.index.get(sop)
        if rec is not None:  # deleted since the search: not part of the cohort
            cohort.records.append(rec)
    return cohort


def _text(element: dict[str, Any] | None) -> str:
    if not element:
        return ""
    values = element.get("Value") or []
    out = []
    for v in values:
        if isinstance(v, dict) and "Alphabetic" in v:
            out.append(str(v["Alphabetic"]))
        elif isinstance(v, dict):
            out.append("(item)")
        else:
            out.append(str(v))
    return "\\".join(out)


def _value(meta: dict[str, Any], key: str) -> str:
    """The value of a keyword, tag or dotted tag path (first items of sequences)."""
    node: dict[str, Any] | None = meta
    parts = key.split(".")
    for n, part in enumerate(parts):
        try:
            tag = f"{resolve(part):08X}"
        except KeyError:
            return ""
        element = (node or {}).get(tag)
        if n == len(parts) - 1:
            return _text(element)
        items = (element or {}).get("Value") or [None]
        node = items[0] if isinstance(items[0], dict) else None
    return ""


def manifest(cohort: Cohort, paths: dict[str, str]) -> bytes:
    """``manifest.csv``: one row per instance (``paths``: SOP UID -> file in the export)."""
    extra = [k for k in cohort.keys if k not in KEY_ATTRIBUTES]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*KEY_ATTRIBUTES, "TransferSyntaxUID", *extra, "Size", "Path"])
    for rec in cohort.records:
        meta = orjson.loads(rec.metadata)
        row = [_value(meta, k) for k in (*KEY_ATTRIBUTES,)]
        row += [rec.transfer_syntax, *(_value(meta, k) for k in extra)]
        w.writerow([*row, rec.size, paths.get(rec.sop_uid, "")])
    return buf.getvalue().encode()


def _relative(rec: InstanceRecord) -> str:
    return part10_path(Path(), rec.study_uid, rec.series_uid, rec.sop_uid).as_posix()


def write_files(store: Store, cohort: Cohort, out: Path, on_instance: OnInstance | None) -> int:
    """Part 10 files under ``out`` plus the manifest; returns the files written."""
    paths = {}
    for rec in cohort.records:
        target = out / _relative(rec)
        target.parent.mkdir(parents=True, exist_ok=True)
        with store.blobs.open(rec.blob_key) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        paths[rec.sop_uid] = _relative(rec)
        if on_instance is not None:
            on_instance()
    (out / MANIFEST).write_bytes(manifest(cohort, paths))
    return len(paths)


def write_zip(store: Store, cohort: Cohort, out: Path, on_instance: OnInstance | None) -> int:
    """A ZIP file at ``out`` with the Part 10 layout and the manifest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {}
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for rec in cohort.records:
            with store.blobs.open(rec.blob_key) as src, z.open(_relative(rec), "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            paths[rec.sop_uid] = _relative(rec)
            if on_instance is not None:
                on_instance()
        z.writestr(MANIFEST, manifest(cohort, paths))
    tmp.replace(out)
    return len(paths)


def write_static(
    store: Store, cohort: Cohort, out: Path, on_instance: OnInstance | None, dedup: bool = False
) -> int:
    """A static DICOMweb tree of the cohort at ``out`` (and the manifest in it)."""
    from webpacs.static import build as b
    from webpacs.static.tree import Tree, instance_dir

    with tempfile.TemporaryDirectory(prefix="webpacs-cohort-") as tmp:
        scratch = open_store(b.scratch_settings(Path(tmp)))
        try:
            for rec in cohort.records:
                data = store.blobs.get(rec.blob_key)
                prepared = prepare(data, scratch.blobs, bulk_threshold=store.bulk_threshold)
                commit(scratch.index, scratch.blobs, prepared, overwrite=True)
            tree = Tree(out)
            studies = sorted({r.study_uid for r in cohort.records})
            b.build(scratch, tree, b.Options(dedup=dedup), studies=studies,
                    on_instance=on_instance)  # fmt: skip
        finally:
            scratch.close()
    paths = {r.sop_uid: instance_dir(r.study_uid, r.series_uid, r.sop_uid) for r in cohort.records}
    (out / MANIFEST).write_bytes(manifest(cohort, paths))
    return len(paths)
