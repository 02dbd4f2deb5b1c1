"""The index contract for extension keys (any attribute, paths into sequences).

Mixed into ``IndexContract`` (tests/contract.py), so every index backend runs it. The
matching rules row by row are in the matching table (``EXTENSION_CASES``); these tests
cover the index's life cycle (replace, delete), real enhanced multi-frame data, paging
and several keys at once.
"""

from __future__ import annotations

from typing import Any

from pydicom.uid import generate_uid

from tests.conftest import data_file
from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.ingest import ingest
from webpacs.storage.base import Blobs, Index

#: pydicom-data's enhanced CT: Pixel Spacing only in the shared functional groups, two
#: frames with their own Plane Position and Frame Content items.
ENHANCED_CT = "eCT_Supplemental.dcm"


def found(index: Index, level: Level, *params: tuple[str, str]) -> list[dict[str, Any]]:
    return index.search(parse_qido(level, list(params))).rows


def uids(rows: list[dict[str, Any]], tag: str = "00080018") -> set[str]:
    return {r[tag]["Value"][0] for r in rows}


class AnyAttributeContract:
    """What every ``Index`` backend does with extension keys."""

    def test_values_follow_replace_and_delete(self, index: Index, blobs: Blobs) -> None:
        from tests.contract import make_instance

        study, sop = generate_uid(), generate_uid()
        ingest(index, blobs, make_instance({"SliceThickness": "1.0"}, StudyInstanceUID=study,
                                           SOPInstanceUID=sop))  # fmt: skip
        key = ("SliceThickness", "0.9-1.1")
        assert uids(found(index, Level.INSTANCE, key)) == {sop}
        ingest(index, blobs, make_instance({"SliceThickness": "2.0"}, StudyInstanceUID=study,
                                           SOPInstanceUID=sop), overwrite=True)  # fmt: skip
        assert found(index, Level.INSTANCE, key) == []
        assert uids(found(index, Level.INSTANCE, ("SliceThickness", "2"))) == {sop}
        assert uids(found(index, Level.STUDY, ("SliceThickness", "2")), "0020000D") == {study}
        index.delete(study)
        assert found(index, Level.INSTANCE, ("SliceThickness", "2")) == []
        assert found(index, Level.STUDY, ("SliceThickness", "2")) == []

    def test_sequence_paths_on_enhanced_ct(self, index: Index, blobs: Blobs) -> None:
        r = ingest(index, blobs, data_file(ENHANCED_CT).read_bytes())
        hits = [
            (Level.INSTANCE, "52009229.00289110.00280030", "0.388672\\0.388672"),
            (Level.INSTANCE, "SharedFunctionalGroupsSequence.PixelMeasuresSequence.PixelSpacing",
             "0.388672"),
            (Level.SERIES, "00289110.00280030", "0.388672\\0.388672"),
            (Level.STUDY, "PixelMeasuresSequence.SliceThickness", "9.9-10.1"),
            # per frame: the second frame's stack position, and its position by values
            (Level.INSTANCE, "PerFrameFunctionalGroupsSequence.FrameContentSequence"
             ".InStackPositionNumber", "2"),
            (Level.INSTANCE, "PlanePositionSequence.ImagePositionPatient",
             "99.5\\-301.5--301.5\\-159--159"),
        ]  # fmt: skip
        for level, key, value in hits:
            rows = found(index, level, (key, value), ("Modality", "CT"))
            assert uids(rows, "0020000D") == {r.study_uid}, (level, key, value)
        misses = [
            ("PixelSpacing", "0.388672"),  # a keyword is the top level: not there
            ("00289110.00280030", "0.5"),
            ("00289110.00280030", "0.388672\\0.5"),
            ("PlanePositionSequence.ImagePositionPatient", "99.5\\-301.5--301.5\\-158--158"),
            ("PerFrameFunctionalGroupsSequence.FrameContentSequence.InStackPositionNumber", "3"),
        ]
        for key, value in misses:
            assert found(index, Level.INSTANCE, (key, value)) == [], (key, value)

    def test_paging_and_several_keys(self, index: Index, blobs: Blobs) -> None:
        from tests.contract import make_instance

        study, series = generate_uid(), generate_uid()
        for i in range(10):
            ingest(
                index, blobs,
                make_instance(
                    {"SliceThickness": f"{0.5 + i / 10:.2f}", "PixelSpacing": ["0.5", "0.5"],
                     "MagneticFieldStrength": "3" if i % 2 else "1.5", "Modality": "MR"},
                    StudyInstanceUID=study, SeriesInstanceUID=series,
                    SOPInstanceUID=generate_uid(), InstanceNumber=i + 1,
                ),
            )  # fmt: skip
        keys = [("SliceThickness", "0.9-1.1"), ("MagneticFieldStrength", "3")]
        rows = found(index, Level.INSTANCE, *keys)
        assert [r["00200013"]["Value"][0] for r in rows] == [6]  # 1.0 mm at 3 T (0.9, 1.1: 1.5 T)
        rows = found(index, Level.INSTANCE, ("SliceThickness", "0.8-"), ("PixelSpacing", ".5"))
        assert [r["00200013"]["Value"][0] for r in rows] == [4, 5, 6, 7, 8, 9, 10]
        page = index.search(
            parse_qido(Level.INSTANCE, [("SliceThickness", "0.8-"), ("limit", "3"),
                                        ("offset", "2")], study_uid=study)
        )  # fmt: skip
        assert [r["00200013"]["Value"][0] for r in page.rows] == [6, 7, 8] and page.truncated
        (row,) = found(index, Level.SERIES, ("MagneticFieldStrength", "3"),
                       ("SliceThickness", "-0.6"))  # fmt: skip
        assert row["0020000E"]["Value"] == [series] and row["00201209"]["Value"] == [10]
        assert found(index, Level.SERIES, ("MagneticFieldStrength", "3"),
                     ("SliceThickness", "-0.5")) == []  # fmt: skip  # 0.5 is i=0, at 1.5 T
        (row,) = found(index, Level.STUDY, ("PixelSpacing", "0.5\\0.5"),
                       ("includefield", "00180087"))  # fmt: skip
        assert row["0020000D"]["Value"] == [study] and "00180087" in row
