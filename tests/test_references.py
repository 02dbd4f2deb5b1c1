"""``core.references`` (the edges of the reference graph) and ``core.research`` (the
research query keys), on real objects: highdicom's SEG, SR, KOS and presentation state,
pydicom's RT and SR test files."""

from __future__ import annotations

import warnings

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from tests.conftest import data_file
from tests.derived_objects import derived
from webpacs.core.attributes import Level
from webpacs.core.dicomjson import build_metadata
from webpacs.core.query import parse_qido
from webpacs.core.references import MAX_CONTENT_DEPTH, Reference, extract, from_json
from webpacs.errors import InvalidRequest


def read(name: str) -> Dataset:
    """A test file, its values converted (some of pydicom's RT files hold UIDs longer than
    64 characters: pydicom warns on conversion, ingest records the warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(data_file(name), force=True)
        ds.walk(lambda d, e: None)
    return ds


def summary(refs: tuple[Reference, ...]) -> set[tuple[str, str, str]]:
    return {(r.uid, r.level, r.via) for r in refs}


def test_segmentation_names_its_series_and_instances_also_per_frame() -> None:
    d = derived()
    refs = extract(d.seg)
    images = [str(i.SOPInstanceUID) for i in d.images]
    assert (d.series, "series", "ReferencedSeriesSequence") in summary(refs)
    for sop in images:
        assert (sop, "instance", "ReferencedSeriesSequence.ReferencedInstanceSequence") in summary(
            refs
        )
        per_frame = "PerFrameFunctionalGroupsSequence.DerivationImageSequence.SourceImageSequence"
        assert (sop, "instance", per_frame) in summary(refs)
    assert len(refs) == len(set(refs))  # one edge per (uid, level, via, frame)
    assert d.study not in {r.uid for r in refs}  # a SEG does not name the study


def test_sr_and_kos_name_study_series_instances_and_content_items() -> None:
    d = derived()
    for doc, content in ((d.sr, [d.images[0]]), (d.ko, d.images)):
        s = summary(extract(doc))
        assert (d.study, "study", "CurrentRequestedProcedureEvidenceSequence") in s
        via = "CurrentRequestedProcedureEvidenceSequence.ReferencedSeriesSequence"
        assert (d.series, "series", via) in s
        named = {u for u, lv, v in s if v == "ContentSequence.ReferencedSOPSequence"}
        assert named == {str(i.SOPInstanceUID) for i in content}


def test_presentation_state_names_series_and_images() -> None:
    d = derived()
    s = summary(extract(d.pr))
    assert (d.series, "series", "ReferencedSeriesSequence") in s
    via = "ReferencedSeriesSequence.ReferencedImageSequence"
    assert {u for u, lv, v in s if v == via} == {str(i.SOPInstanceUID) for i in d.images}


def test_rt_objects() -> None:
    rt = read("rtstruct.dcm")
    s = summary(extract(rt))
    via = "ReferencedFrameOfReferenceSequence.RTReferencedStudySequence"
    assert ("1.2.826.0.1.3680043.8.498.2010020400001.2.1", "study", via) in s
    series = ("1.2.826.0.1.3680043.8.498.2010020400001.2.1.1", "series",
              via + ".RTReferencedSeriesSequence")  # fmt: skip
    assert series in s
    # contour images, when the structure set lists them
    item = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    image = Dataset()
    image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    image.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.RTReferencedSeriesSequence[0].ContourImageSequence = Sequence([image])
    contour_via = via + ".RTReferencedSeriesSequence.ContourImageSequence"
    assert ("1.2.3.4.5", "instance", contour_via) in summary(extract(rt))
    plan = summary(extract(read("rtplan.dcm")))
    assert ("1.2.333.444.55.6.7777.88888", "instance", "ReferencedStructureSetSequence") in plan
    dose = summary(extract(read("rtdose.dcm")))
    assert (
        "1.2.123.456.78.9.0123.4567.89012345678901",
        "instance",
        "ReferencedRTPlanSequence",
    ) in (dose)


def test_sr_frames_and_nested_content() -> None:
    refs = extract(read("test-SR.dcm"))
    frames = sorted(r.frame for r in refs if r.uid == "1.2.3.4.5.0" and r.frame is not None)
    assert frames == [2, 5]  # ReferencedFrameNumber 5\2: one edge per frame
    assert "9.8.7.6" in {r.uid for r in refs}  # found several levels down the content tree


def test_malformed_references_are_no_edges() -> None:
    ds = Dataset()
    good, empty, multi = Dataset(), Dataset(), Dataset()
    good.ReferencedSOPInstanceUID = "1.2.3"
    # an unreadable frame number (as read from a file): the instance, no frame
    good[0x00081160] = RawDataElement(Tag(0x00081160), "IS", 2, b"x ", 0, False, True)
    empty.ReferencedSOPInstanceUID = ""
    multi.ReferencedSOPInstanceUID = ["1.2.4", "1.2.5"]
    ds.SourceImageSequence = Sequence([good, empty, multi, Dataset()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's "invalid value for VR IS"
        found = extract(ds)
    assert found == (Reference("1.2.3", "instance", "SourceImageSequence"),)


def test_content_tree_depth_is_bounded() -> None:
    root = Dataset()
    node = root
    for _ in range(MAX_CONTENT_DEPTH + 10):
        child = Dataset()
        child.ValueType = "CONTAINER"
        node.ContentSequence = Sequence([child])
        node = child
    node.ValueType = "IMAGE"
    ref = Dataset()
    ref.ReferencedSOPInstanceUID = "1.2.3"
    node.ReferencedSOPSequence = Sequence([ref])
    assert extract(root) == ()


@pytest.mark.parametrize("which", ["seg", "sr", "ko", "pr"])
def test_from_stored_metadata_equals_from_the_data_set(which: str) -> None:
    """What a migration reads back from the stored DICOM JSON gives the ingest edges."""
    d = derived()
    ds = getattr(d, which)
    meta, _ = build_metadata(
        ds, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, threshold=64
    )
    assert from_json(meta) == extract(ds)
    assert from_json({}) == ()


def test_edges_round_trip_as_documents() -> None:
    r = Reference("1.2.3", "instance", "SourceImageSequence", 4)
    assert Reference.from_list(r.to_json()) == r


def test_research_keys_parse() -> None:
    q = parse_qido(
        Level.SERIES,
        [("webpacsReferences", "1.2.3\\1.2.4"),
         ("webpacsLacks", "SEG,1.2.840.10008.5.1.4.1.1.66.4"),
         ("webpacsLabel", "!done"), ("includefield", "webpacsLabels"), ("Modality", "CT")],
    )  # fmt: skip
    refs, lacks, label = q.research
    assert (refs.kind, refs.values) == ("references", ("1.2.3", "1.2.4"))
    assert (lacks.kind, lacks.negated, lacks.modalities, lacks.sop_classes) == (
        "has", True, ("SEG",), ("1.2.840.10008.5.1.4.1.1.66.4",)
    )  # fmt: skip
    assert (label.kind, label.values, label.negated) == ("label", ("done",), True)
    assert q.include_labels and len(q.conditions) == 1


@pytest.mark.parametrize(
    ("level", "key", "value"),
    [
        (Level.INSTANCE, "webpacsHas", "SEG"),
        (Level.INSTANCE, "webpacsLabel", "x"),
        (Level.STUDY, "webpacsReferences", "1.2.*"),
        (Level.STUDY, "webpacsReferencedBy", ""),
        (Level.STUDY, "webpacsReferences", "1.2.3,"),
        (Level.STUDY, "webpacsHas", "seg"),
        (Level.STUDY, "webpacsLabel", "x" * 65),
        (Level.STUDY, "webpacsLabel", "a/b"),
        (Level.STUDY, "webpacsLabel", "!"),
        (Level.INSTANCE, "includefield", "webpacsLabels"),
    ],
)
def test_bad_research_keys(level: Level, key: str, value: str) -> None:
    with pytest.raises(InvalidRequest, match=key if key != "includefield" else "webpacsLabels"):
        parse_qido(level, [(key, value)])
