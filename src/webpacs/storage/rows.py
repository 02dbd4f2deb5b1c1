"""QIDO row rules shared by every index backend (DESIGN.md: ``storage/rows.py``).

A backend finds the rows and keeps the records; what a row holds beyond the stored
attributes, and which instance a study or series summary follows, is decided here.

The backend interface is small:

* writes: a backend builds a ``Summary`` with ``summary_of`` for each instance it puts,
  asks ``follow`` whether it replaces the current one (the newest instance wins) and
  stores the ``Disagreement``\\ s it returns; when instances go away, a summary whose
  representative is among them (``orphaned``) is rebuilt from the newest remaining
  instance, which the backend finds.
* reads: a backend turns a query into ``Candidate`` rows (the stored projections of the
  row's study, series and instance, in result order, after ``limit``/``offset``) and
  answers a ``RowSource``: the aggregates of the candidates' studies and series by key,
  and the metadata of representative instances. ``build_rows`` does the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from webpacs.core.attributes import STORED, Level
from webpacs.core.dicomjson import project
from webpacs.core.query import Query, include_extra

log = logging.getLogger("webpacs.index")

MODALITIES_IN_STUDY = "00080061"
NUMBER_OF_STUDY_RELATED_SERIES = "00201206"
NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"
NUMBER_OF_SERIES_RELATED_INSTANCES = "00201209"
INSTANCE_AVAILABILITY = "00080056"

#: What every row says about availability: this server keeps what it indexes on line.
AVAILABILITY = "ONLINE"


def study_aggregates(modalities: Iterable[str], series: int, instances: int) -> dict[str, Any]:
    """The computed attributes of a study row (PS3.18 Table 10.6.3-3).

    ``ModalitiesInStudy`` is left out when no instance of the study has a Modality: the
    viewers (OHIF 2 and 3, ``getModalities``) read ``Value`` of any ``ModalitiesInStudy``
    they get, and an empty attribute (``{"vr": "CS"}``) breaks their whole study list.
    """
    out: dict[str, Any] = {}
    mods = sorted({m for m in modalities if m})
    if mods:
        out[MODALITIES_IN_STUDY] = {"vr": "CS", "Value": mods}
    out[NUMBER_OF_STUDY_RELATED_SERIES] = {"vr": "IS", "Value": [series]}
    out[NUMBER_OF_STUDY_RELATED_INSTANCES] = {"vr": "IS", "Value": [instances]}
    return out


def series_aggregates(instances: int) -> dict[str, Any]:
    """The computed attribute of a series row (PS3.18 Table 10.6.3-4)."""
    return {NUMBER_OF_SERIES_RELATED_INSTANCES: {"vr": "IS", "Value": [instances]}}


# -- writes: summaries follow the newest instance ------------------------------------------
@dataclass(frozen=True)
class Summary:
    """A study or series summary: the values of the instance it follows (``rep``)."""

    level: Level
    rep: str
    latest: float
    values: dict[str, str]  # keyword -> match value, the level's stored attributes
    projection: dict[str, Any]  # the level's DICOM JSON


@dataclass(frozen=True)
class Disagreement:
    """A patient/study attribute in which an instance differs from its study."""

    study_uid: str
    sop_uid: str
    keyword: str
    previous: str
    value: str
    time: float

    def as_record(self) -> dict[str, Any]:
        """The form ``Index.study_conflicts`` answers."""
        return {
            "SOPInstanceUID": self.sop_uid,
            "keyword": self.keyword,
            "previous": self.previous,
            "value": self.value,
            "time": self.time,
        }


def summary_of(
    level: Level, sop_uid: str, received: float, attributes: dict[str, str], meta: dict[str, Any]
) -> Summary:
    """The summary of ``level`` as instance ``sop_uid`` (received at ``received``) gives it."""
    attrs = STORED[level]
    values = {a.keyword: attributes[a.keyword] for a in attrs if a.keyword in attributes}
    return Summary(level, sop_uid, received, values, project(meta, attrs))


def follow(
    study_uid: str,
    current_values: dict[str, str | None] | None,
    current_latest: float | None,
    fresh: Summary,
) -> tuple[bool, list[Disagreement]]:
    """Whether ``fresh`` replaces the current summary, and what disagreed.

    The newest instance wins (ties go to the later write). At study level, every patient
    or study attribute present on both sides with different values is a disagreement:
    logged here, kept by the backend (``study_conflicts``).
    """
    if current_values is None or current_latest is None:
        return True, []
    found: list[Disagreement] = []
    if fresh.level is Level.STUDY:
        now = time.time()
        for a in STORED[Level.STUDY]:
            previous, value = current_values.get(a.keyword), fresh.values.get(a.keyword)
            if previous is None or value is None or previous == value:
                continue
            log.warning(
                "study %s: %s of instance %s is %r, the study had %r",
                study_uid, a.keyword, fresh.rep, value, previous,
            )  # fmt: skip
            found.append(Disagreement(study_uid, fresh.rep, a.keyword, previous, value, now))
    return fresh.latest >= current_latest, found


def orphaned(current_rep: str | None, gone: Iterable[str]) -> bool:
    """Whether a summary must follow another instance after ``gone`` were removed."""
    return current_rep is not None and current_rep in set(gone)


# -- reads: QIDO rows ------------------------------------------------------------------------
Json = bytes | str | dict[str, Any]


@dataclass(frozen=True)
class Candidate:
    """One QIDO row as a backend found it: stored projections, undecorated.

    ``rep`` is the instance whose metadata answers ``includefield``: the summary's
    representative for a study or series, the instance itself at instance level.
    """

    study_uid: str
    series_uid: str | None
    rep: str
    study: Json
    series: Json | None = None
    instance: Json | None = None


@dataclass(frozen=True)
class StudyCounts:
    series: int
    instances: int
    modalities: Sequence[str]


class RowSource(Protocol):
    """What a backend answers so that ``build_rows`` can finish its candidates."""

    def study_counts(self, study_uids: list[str]) -> dict[str, StudyCounts]:
        """Series and instance counts and the modalities of each study."""
        ...

    def series_counts(self, series: list[tuple[str, str]]) -> dict[str, int]:
        """Instances per series, by series UID, for (study UID, series UID) pairs."""
        ...

    def metadata(self, sop_uids: list[str]) -> dict[str, Json]:
        """The DICOM JSON of instances by SOP Instance UID (missing ones left out)."""
        ...


def build_rows(
    query: Query, candidates: list[Candidate], source: RowSource
) -> list[dict[str, Any]]:
    """The DICOM JSON rows of a QIDO response (PS3.18 10.6.3) from a backend's candidates."""
    level = query.level
    parsed: dict[bytes | str, dict[str, Any]] = {}

    def decode(doc: Json) -> dict[str, Any]:
        if isinstance(doc, dict):
            return doc
        if doc not in parsed:  # rows of one series share its study's and series' JSON
            parsed[doc] = orjson.loads(doc)
        return parsed[doc]

    studies: dict[str, StudyCounts] = {}
    series: dict[str, int] = {}
    if level is Level.STUDY:
        studies = source.study_counts(list(dict.fromkeys(c.study_uid for c in candidates)))
    elif level is Level.SERIES:
        keys = {(c.study_uid, c.series_uid or ""): None for c in candidates}
        series = source.series_counts(list(keys))
    extra: dict[str, dict[str, Any]] = {}
    if candidates and (query.include_all or query.includefields):
        reps = list(dict.fromkeys(c.rep for c in candidates))
        extra = {k: include_extra(query, decode(m)) for k, m in source.metadata(reps).items()}
    out = []
    for c in candidates:
        item: dict[str, Any] = dict(decode(c.study))
        if level is Level.STUDY:
            n = studies.get(c.study_uid, StudyCounts(0, 0, ()))
            item.update(study_aggregates(n.modalities, n.series, n.instances))
        else:
            if c.series is not None:
                item.update(decode(c.series))
            if level is Level.SERIES:
                item.update(series_aggregates(series.get(c.series_uid or "", 0)))
            elif c.instance is not None:
                item.update(decode(c.instance))
        item[INSTANCE_AVAILABILITY] = {"vr": "CS", "Value": [AVAILABILITY]}
        for k, v in extra.get(c.rep, {}).items():
            item.setdefault(k, v)
        out.append(item)
    return out


# -- SQL backends: aggregates kept on write, read with the page ----------------------------
def from_columns(
    level: Level, found: Sequence[Sequence[Any]], metadata: Callable[[list[str]], dict[str, Json]]
) -> tuple[list[Candidate], RowSource]:
    """Candidates and their ``RowSource`` from SQL rows whose columns are, per level:

    * study: study JSON, representative SOP, series count, instance count, modalities
      (comma-separated), study UID;
    * series: study JSON, representative SOP, series JSON, instance count, study UID,
      series UID;
    * instance: study JSON, SOP UID, series JSON, instance JSON, study UID, series UID.

    ``metadata`` answers ``RowSource.metadata`` (for ``includefield``).
    """
    counts: dict[str, Any] = {}
    if level is Level.STUDY:
        candidates = [Candidate(r[5], None, r[1], r[0]) for r in found]
        counts = {r[5]: StudyCounts(r[2], r[3], r[4].split(",")) for r in found}
    elif level is Level.SERIES:
        candidates = [Candidate(r[4], r[5], r[1], r[0], r[2]) for r in found]
        counts = {r[5]: r[3] for r in found}
    else:
        candidates = [Candidate(r[4], r[5], r[1], r[0], r[2], r[3]) for r in found]
    return candidates, _KeptCounts(counts, metadata)


class _KeptCounts:
    """``RowSource`` over counts read with the page's rows (kept on write)."""

    def __init__(
        self, counts: dict[str, Any], metadata: Callable[[list[str]], dict[str, Json]]
    ) -> None:
        self.counts = counts
        self._metadata = metadata

    def study_counts(self, study_uids: list[str]) -> dict[str, StudyCounts]:
        return {u: self.counts[u] for u in study_uids if u in self.counts}

    def series_counts(self, series: list[tuple[str, str]]) -> dict[str, int]:
        return {u: self.counts[u] for _, u in series if u in self.counts}

    def metadata(self, sop_uids: list[str]) -> dict[str, Json]:
        return self._metadata(sop_uids)
