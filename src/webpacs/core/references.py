"""The references an instance makes to other studies, series and instances: the edges of
the reference graph that ingest records with every instance (issue 13, point 1).

``extract(ds)`` reads a data set's reference sequences and returns its edges, each a
``Reference``: the referenced UID, what it names (a study, a series or an instance), the
frame when one is given, and the path of sequences it came from. The sources read:

=====================================================  ======================================
sequence (path)                                        found in
=====================================================  ======================================
ReferencedSeriesSequence > ReferencedInstanceSequence  SEG, presentation states (with
/ ReferencedImageSequence                              ReferencedImageSequence), RT, ...
StudiesContainingOtherReferencedInstancesSequence      Common Instance Reference (PS3.3
                                                       C.12.2): study, series, instances
ReferencedInstanceSequence                             (top level)
SourceImageSequence, DerivationImageSequence >         derived images; SEG frames, also inside
SourceImageSequence, ReferencedImageSequence           Shared/PerFrameFunctionalGroupsSequence
CurrentRequestedProcedureEvidenceSequence,             SR, KOS (PS3.3 C.17.2): study, series
PertinentOtherEvidenceSequence                         (ReferencedSeriesSequence), instances
                                                       (ReferencedSOPSequence)
ContentSequence (recursive) > ReferencedSOPSequence    SR and KOS content items of value type
                                                       IMAGE, COMPOSITE or WAVEFORM
ReferencedFrameOfReferenceSequence >                   RTSTRUCT: the study (its item's
RTReferencedStudySequence > RTReferencedSeries-        Referenced SOP Instance UID), series,
Sequence > ContourImageSequence                        contour images
ReferencedStructureSetSequence, ReferencedRTPlan-      RT plans, doses, treatment records
Sequence, ReferencedDoseSequence
=====================================================  ======================================

Only what a sequence names is an edge: an object naming only a series is no edge to that
series' instances, nor the reverse (DESIGN "Decided / Research queries"). Pure: stdlib and
pydicom only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

__all__ = ["SOURCE_KEYWORDS", "Reference", "extract", "from_json"]

STUDY, SERIES, INSTANCE = "study", "series", "instance"

#: Top-level attributes the edges come from (a DICOM JSON object reduced to these is enough).
SOURCE_KEYWORDS = (
    "ReferencedSeriesSequence",
    "StudiesContainingOtherReferencedInstancesSequence",
    "ReferencedInstanceSequence",
    "SourceImageSequence",
    "DerivationImageSequence",
    "ReferencedImageSequence",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "CurrentRequestedProcedureEvidenceSequence",
    "PertinentOtherEvidenceSequence",
    "ContentSequence",
    "ReferencedFrameOfReferenceSequence",
    "ReferencedStructureSetSequence",
    "ReferencedRTPlanSequence",
    "ReferencedDoseSequence",
)
#: The same as DICOM JSON keys (8 hex digits).
SOURCE_TAGS = frozenset(f"{tag_for_keyword(kw):08X}" for kw in SOURCE_KEYWORDS)
#: SR value types whose content item references a composite object (PS3.3 C.17.3.2.1).
_SOP_VALUE_TYPES = frozenset({"IMAGE", "COMPOSITE", "WAVEFORM"})
#: How deep an SR content tree is followed (a malformed object cannot make ingest recurse
#: without end).
MAX_CONTENT_DEPTH = 64


@dataclass(frozen=True)
class Reference:
    """One edge: the referencing instance names ``uid`` as a ``level`` ("study", "series"
    or "instance"), frame ``frame`` of it when given (1-based), in the sequence ``via``
    (keywords joined by ``.``, from the top level)."""

    uid: str
    level: str
    via: str
    frame: int | None = None

    def to_json(self) -> list[Any]:
        """A compact form for documents: ``[uid, level, via, frame]``."""
        return [self.uid, self.level, self.via, self.frame]

    @classmethod
    def from_list(cls, value: list[Any]) -> Reference:
        return cls(str(value[0]), str(value[1]), str(value[2]), value[3])


def _seq(item: Dataset, keyword: str) -> list[Dataset]:
    value = item.get(keyword)
    if value is None:
        return []
    try:
        return [i for i in value or () if isinstance(i, Dataset)]
    except TypeError:  # not a sequence after all
        return []


def _uid(item: Dataset, keyword: str) -> str | None:
    v = item.get(keyword)
    if not isinstance(v, str) or not v:  # multi-valued or empty: not one UID
        return None
    text = str(v).strip(" \x00")
    return text or None


def _frames(item: Dataset) -> list[int | None]:
    try:
        raw = item.get("ReferencedFrameNumber")
    except (TypeError, ValueError):  # a value pydicom cannot convert: no frame
        return [None]
    if raw is None or raw == "":
        return [None]
    items = [raw] if isinstance(raw, (str, bytes, int, float)) else list(raw)
    frames: list[int | None] = []
    for f in items:
        try:
            frames.append(int(f))
        except (TypeError, ValueError):
            continue
    return frames or [None]


def _instances(items: Iterable[Dataset], via: str) -> Iterator[Reference]:
    """Instance edges of items with Referenced SOP Instance UID (Image/SOP Instance
    Reference macros, PS3.3 10.3 and 10.8), one per referenced frame."""
    for item in items:
        sop = _uid(item, "ReferencedSOPInstanceUID")
        if sop is not None:
            for frame in _frames(item):
                yield Reference(sop, INSTANCE, via, frame)


def _series(items: Iterable[Dataset], via: str, *instance_seqs: str) -> Iterator[Reference]:
    """Series edges (Series Instance UID) and their instances' edges."""
    for item in items:
        series = _uid(item, "SeriesInstanceUID")
        if series is not None:
            yield Reference(series, SERIES, via)
        for kw in instance_seqs:
            yield from _instances(_seq(item, kw), f"{via}.{kw}")


def _studies(items: Iterable[Dataset], via: str) -> Iterator[Reference]:
    """Hierarchical SOP Instance Reference macro items (PS3.3 Table C.17-3): study,
    series (ReferencedSeriesSequence), instances (ReferencedSOPSequence)."""
    for item in items:
        study = _uid(item, "StudyInstanceUID")
        if study is not None:
            yield Reference(study, STUDY, via)
        series_via = f"{via}.ReferencedSeriesSequence"
        yield from _series(
            _seq(item, "ReferencedSeriesSequence"),
            series_via,
            "ReferencedSOPSequence",
            "ReferencedInstanceSequence",
            "ReferencedImageSequence",
        )


def _derivation(item: Dataset, prefix: str) -> Iterator[Reference]:
    """Source, derivation and referenced images of a data set or a functional group."""
    for kw in ("SourceImageSequence", "ReferencedImageSequence"):
        yield from _instances(_seq(item, kw), prefix + kw)
    for d in _seq(item, "DerivationImageSequence"):
        via = f"{prefix}DerivationImageSequence.SourceImageSequence"
        yield from _instances(_seq(d, "SourceImageSequence"), via)


def _content(items: list[Dataset], depth: int = 0) -> Iterator[Reference]:
    """SR content items that reference composite objects, down the content tree."""
    if depth > MAX_CONTENT_DEPTH:
        return
    for item in items:
        vt = item.get("ValueType")
        if vt is not None and str(vt).strip() in _SOP_VALUE_TYPES:
            yield from _instances(
                _seq(item, "ReferencedSOPSequence"), "ContentSequence.ReferencedSOPSequence"
            )
        yield from _content(_seq(item, "ContentSequence"), depth + 1)


def _rt_structures(ds: Dataset) -> Iterator[Reference]:
    via = "ReferencedFrameOfReferenceSequence.RTReferencedStudySequence"
    for frame_of_ref in _seq(ds, "ReferencedFrameOfReferenceSequence"):
        for study in _seq(frame_of_ref, "RTReferencedStudySequence"):
            uid = _uid(study, "ReferencedSOPInstanceUID")  # the study (Detached Study SOP)
            if uid is not None:
                yield Reference(uid, STUDY, via)
            yield from _series(
                _seq(study, "RTReferencedSeriesSequence"),
                f"{via}.RTReferencedSeriesSequence",
                "ContourImageSequence",
            )


def _all(ds: Dataset) -> Iterator[Reference]:
    yield from _series(
        _seq(ds, "ReferencedSeriesSequence"),
        "ReferencedSeriesSequence",
        "ReferencedInstanceSequence",
        "ReferencedImageSequence",
        "ReferencedSOPSequence",
    )
    yield from _studies(
        _seq(ds, "StudiesContainingOtherReferencedInstancesSequence"),
        "StudiesContainingOtherReferencedInstancesSequence",
    )
    yield from _instances(_seq(ds, "ReferencedInstanceSequence"), "ReferencedInstanceSequence")
    yield from _derivation(ds, "")
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in _seq(ds, groups):
            yield from _derivation(group, groups + ".")
    for evidence in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        yield from _studies(_seq(ds, evidence), evidence)
    yield from _content(_seq(ds, "ContentSequence"))
    yield from _rt_structures(ds)
    for kw in (
        "ReferencedStructureSetSequence",
        "ReferencedRTPlanSequence",
        "ReferencedDoseSequence",
    ):
        yield from _instances(_seq(ds, kw), kw)


def extract(ds: Dataset) -> tuple[Reference, ...]:
    """The distinct edges from ``ds`` to the studies, series and instances it references,
    in the order found. Malformed items (no UID, a UID that is not one value) are passed
    over: what a data set names badly is no edge, and never an ingest error."""
    return tuple(dict.fromkeys(_all(ds)))


def _drop_bulk(tag: str, vr: str, value: str) -> None:
    return None


def from_json(meta: dict[str, Any]) -> tuple[Reference, ...]:
    """``extract`` on an instance's stored DICOM JSON metadata (PS3.18 F.2), e.g. to index
    instances stored before the reference graph existed. Only the top-level sequences
    references come from are read; bulk data values are left out (none holds a UID)."""
    wanted = {k: v for k, v in meta.items() if k in SOURCE_TAGS}
    if not wanted:
        return ()
    ds = Dataset.from_json(wanted, bulk_data_uri_handler=_drop_bulk)
    return extract(ds)
