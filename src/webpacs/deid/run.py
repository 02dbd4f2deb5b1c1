"""De-identify a stored study: in place, into a new study, or out of the store.

Each instance's stored object is read, de-identified with ``deid.profile`` (pixel data
copied as bytes) and written back in its transfer syntax. With one ``UidMap`` for the
run every UID maps consistently across the study.

* in place: the de-identified instances are stored through ``ingest`` and the original
  study is removed in the same index batch (``remove``'s path: its index entries,
  conflict records, stored objects and derived documents); ``static build
  --incremental`` then drops it from the tree. Nothing identifying is left where the
  server keeps data, backups aside;
* ``new_study``: the same, the original kept;
* ``out``: Part 10 files under ``OUT/<study>/<series>/<sop>.dcm``, the store untouched;
* ``static``: a static DICOMweb tree of the de-identified study, the store untouched.

Instances that say ``BurnedInAnnotation=YES`` are refused (``InvalidRequest`` naming
them) unless ``force``: text burned into the pixels is beyond an attribute profile.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from webpacs import ingest
from webpacs.core import part10
from webpacs.deid.profile import Profile, Pseudonyms, UidMap, deidentify
from webpacs.errors import InvalidRequest, NotFound
from webpacs.remove import forget
from webpacs.storage.registry import Store

log = logging.getLogger("webpacs.deidentify")


@dataclass
class Result:
    """What a run did: the new study's UID and the instances written (or their files)."""

    study: str
    instances: int
    files: list[Path] = field(default_factory=list)
    removed_original: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "study": self.study,
            "instances": self.instances,
            "removedOriginal": self.removed_original,
        }


def burned_in(store: Store, study: str) -> list[str]:
    """SOP Instance UIDs of the study's instances that say ``BurnedInAnnotation=YES``."""
    out = []
    for rec in store.index.instances(study):
        data = store.blobs.get(rec.blob_key)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            out.append(rec.sop_uid)
    return out


def deidentified(
    store: Store, study: str, options: Iterable[str], *, force: bool, patient_id: str | None
) -> list[bytes]:
    """The study's instances de-identified, as Part 10 bytes (nothing stored)."""
    profile = Profile.build(options)
    records = store.index.instances(study)
    if not records:
        raise NotFound(f"study {study} not found")
    flagged = burned_in(store, study)
    if flagged and not force:
        raise InvalidRequest(
            f"{len(flagged)} instance(s) say BurnedInAnnotation=YES (text in the pixels):"
            f" {', '.join(flagged[:5])}; check them, and force to de-identify anyway",
            burned_in=flagged,
        )
    uids, names = UidMap(), Pseudonyms(patient_id)
    out = []
    for rec in records:
        ds = pydicom.dcmread(io.BytesIO(store.blobs.get(rec.blob_key)))
        deidentify(ds, profile, uids, names(str(ds.get("PatientID", ""))))
        out.append(part10.storable_bytes(ds))
    log.info("de-identified %d instance(s) of study %s", len(out), study)
    return out


def _study_of(data: list[bytes]) -> str:
    ds = pydicom.dcmread(io.BytesIO(data[0]), stop_before_pixels=True)
    return str(ds.StudyInstanceUID)


def into_store(
    store: Store,
    study: str,
    options: Iterable[str],
    *,
    in_place: bool,
    force: bool = False,
    patient_id: str | None = None,
) -> Result:
    """Store the de-identified study; ``in_place`` removes the original in the same batch."""
    data = deidentified(store, study, options, force=force, patient_id=patient_id)
    prepared = [ingest.prepare(d, store.blobs, bulk_threshold=store.bulk_threshold) for d in data]
    garbage: list[tuple[str, str]] = []
    removed = []
    with store.index.batch():
        for p in prepared:
            ingest.commit(store.index, store.blobs, p, overwrite=False, garbage=garbage)
        if in_place:
            removed = store.index.delete(study)
    ingest.collect_garbage(store.index, store.blobs, garbage)
    forget(store.blobs, removed)
    return Result(_study_of(data), len(data), removed_original=bool(removed))


def to_files(
    store: Store,
    study: str,
    options: Iterable[str],
    out: Path,
    *,
    force: bool = False,
    patient_id: str | None = None,
) -> Result:
    """Write the de-identified study as Part 10 files under ``out``; the store is untouched."""
    data = deidentified(store, study, options, force=force, patient_id=patient_id)
    files = []
    for d in data:
        ds = pydicom.dcmread(io.BytesIO(d), stop_before_pixels=True)
        path = out / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID)
        path.mkdir(parents=True, exist_ok=True)
        target = path / f"{ds.SOPInstanceUID}.dcm"
        target.write_bytes(d)
        files.append(target)
    return Result(_study_of(data), len(data), files)


def to_static(
    store: Store,
    study: str,
    options: Iterable[str],
    root: Path,
    *,
    force: bool = False,
    patient_id: str | None = None,
) -> Result:
    """Write the de-identified study as a static DICOMweb tree at ``root``."""
    from webpacs.static.build import Options, build_from_files
    from webpacs.static.tree import Tree

    with tempfile.TemporaryDirectory(prefix="webpacs-deid-") as tmp:
        result = to_files(store, study, options, Path(tmp), force=force, patient_id=patient_id)
        report = build_from_files(result.files, Tree(str(root)), Options())
    if report.failures:
        raise InvalidRequest(f"static tree not written: {report.failures[0][1]}")
    return Result(result.study, result.instances)
