"""The research-query part of the backend contract (issue 13 points 1, 2 and 5): the
reference graph, ``webpacsReferences``/``webpacsReferencedBy``, ``webpacsHas``/
``webpacsLacks`` and labels. ``IndexContract`` inherits it, so every index backend runs it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydicom.uid import generate_uid

from tests.derived_objects import Derived, derived, part10
from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.errors import NotFound
from webpacs.ingest import ingest
from webpacs.storage.base import Blobs, Index, Outcome

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def uids(index: Index, level: Level, *params: tuple[str, str], **scope: Any) -> list[str]:
    """The UIDs of the rows a query at ``level`` answers, in result order."""
    key = {Level.STUDY: "0020000D", Level.SERIES: "0020000E", Level.INSTANCE: "00080018"}[level]
    rows = index.search(parse_qido(level, list(params), **scope)).rows
    return [r[key]["Value"][0] for r in rows]


def store_all(index: Index, blobs: Blobs, objects: list[Any]) -> None:
    for ds in objects:
        ingest(index, blobs, part10(ds))


class ReferenceContract:
    """What every ``Index`` backend must answer about references, workflow and labels."""

    @pytest.fixture
    def d(self) -> Derived:
        return derived()

    def test_by_reference_before_and_after_the_images_and_after_delete(
        self, index: Index, blobs: Blobs, d: Derived
    ) -> None:
        store_all(index, blobs, d.objects())  # the derived objects first, the images later
        seg, sr, ko, pr = (str(o.SOPInstanceUID) for o in d.objects())
        image = str(d.images[0].SOPInstanceUID)
        IN, SE, ST = Level.INSTANCE, Level.SERIES, Level.STUDY

        def check_from_the_image_side() -> None:
            by_series = uids(index, IN, ("webpacsReferences", d.series))
            assert sorted(by_series) == sorted([seg, sr, ko, pr])
            assert uids(index, IN, ("webpacsReferences", d.series), ("Modality", "SEG")) == [seg]
            assert sorted(uids(index, IN, ("webpacsReferences", image))) == sorted(
                [seg, sr, ko, pr]
            )
            # only the SR and the KOS name the study (their evidence); SEG and PR name series
            assert sorted(uids(index, IN, ("webpacsReferences", d.study))) == sorted([sr, ko])
            derived_series = {str(o.SeriesInstanceUID) for o in d.objects()}
            assert set(uids(index, SE, ("webpacsReferences", image))) == derived_series
            assert uids(index, ST, ("webpacsReferences", d.series)) == [d.study]
            sr_only = uids(index, IN, ("webpacsReferences", image), ("SOPClassUID", sr_class))
            assert sr_only == [sr]

        sr_class = str(d.sr.SOPClassUID)
        check_from_the_image_side()
        # what the SEG names is not stored yet: nothing to answer with
        assert uids(index, IN, ("webpacsReferencedBy", seg)) == []
        assert uids(index, SE, ("webpacsReferencedBy", seg)) == []

        store_all(index, blobs, d.images)
        check_from_the_image_side()
        images = sorted(str(i.SOPInstanceUID) for i in d.images)
        assert sorted(uids(index, IN, ("webpacsReferencedBy", seg))) == images
        assert uids(index, SE, ("webpacsReferencedBy", seg)) == [d.series]
        assert uids(index, ST, ("webpacsReferencedBy", seg)) == [d.study]
        # the SR's content names the first image only, its evidence all three
        assert sorted(uids(index, IN, ("webpacsReferencedBy", sr))) == images
        # by the referencing series' UID: what its instances name
        assert (
            sorted(uids(index, IN, ("webpacsReferencedBy", str(d.pr.SeriesInstanceUID)))) == images
        )
        # a list of UIDs: any of them
        both = uids(index, IN, ("webpacsReferences", f"{d.study}\\{d.series}"), ("Modality", "SEG"))
        assert both == [seg]

        edges = index.references(seg)
        assert {(e.uid, e.level) for e in edges} >= {(d.series, "series"), (image, "instance")}
        assert any(e.via == "ReferencedSeriesSequence" for e in edges)

        index.delete(d.study, str(d.seg.SeriesInstanceUID))
        assert seg not in uids(index, IN, ("webpacsReferences", d.series))
        assert uids(index, IN, ("webpacsReferences", d.series), ("Modality", "SEG")) == []
        assert index.references(seg) == []
        # a referenced image deleted: the edges to it stay with those who name it
        index.delete(d.study, d.series, image)
        assert sorted(uids(index, IN, ("webpacsReferences", image))) == sorted([sr, ko, pr])
        assert image not in uids(index, IN, ("webpacsReferencedBy", ko))

    def test_reference_keys_combine_with_paging_and_includefield(
        self, index: Index, blobs: Blobs, d: Derived
    ) -> None:
        store_all(index, blobs, d.images + d.objects())
        image = str(d.images[1].SOPInstanceUID)
        full = uids(index, Level.INSTANCE, ("webpacsReferences", image))
        assert len(full) == 4
        page = index.search(
            parse_qido(
                Level.INSTANCE,
                [("webpacsReferences", image), ("limit", "2"), ("offset", "1"),
                 ("includefield", "ContentLabel")],
            )
        )  # fmt: skip
        assert page.truncated
        assert [r["00080018"]["Value"][0] for r in page.rows] == full[1:3]
        scoped = uids(
            index, Level.INSTANCE, ("webpacsReferences", image), study_uid=d.study,
            series_uid=str(d.pr.SeriesInstanceUID),
        )  # fmt: skip
        assert scoped == [str(d.pr.SOPInstanceUID)]
        pr_row = index.search(
            parse_qido(
                Level.INSTANCE,
                [
                    ("webpacsReferences", image),
                    ("Modality", "PR"),
                    ("includefield", "ContentLabel"),
                ],
            )
        ).rows
        assert pr_row[0]["00700080"]["Value"] == ["WINDOW"]
        fuzzy = uids(
            index, Level.STUDY, ("webpacsReferences", image), ("PatientName", "compressed"),
            ("fuzzymatching", "true"),
        )  # fmt: skip
        assert fuzzy == [d.study]
        assert uids(index, Level.STUDY, ("webpacsReferences", image), ("PatientID", "nobody")) == []

    def test_has_and_lacks(self, index: Index, blobs: Blobs, d: Derived) -> None:
        store_all(index, blobs, d.images + [d.seg, d.sr])
        plain = derived(2)  # another study: images only
        store_all(index, blobs, plain.images)
        studies = f"{d.study}\\{plain.study}"
        ST, SE = Level.STUDY, Level.SERIES
        scope = ("StudyInstanceUID", studies)
        assert uids(index, ST, scope, ("webpacsHas", "SEG")) == [d.study]
        assert uids(index, ST, scope, ("webpacsHas", SEG_CLASS)) == [d.study]
        without = uids(index, ST, scope, ("ModalitiesInStudy", "CT"), ("webpacsLacks", "SEG"))
        assert without == [plain.study]
        assert uids(index, ST, scope, ("webpacsLacks", f"SEG\\{SEG_CLASS}\\SR")) == [plain.study]
        assert sorted(uids(index, ST, scope, ("webpacsHas", "SEG\\RTSTRUCT"))) == [d.study]
        # a series has a SEG when a SEG references it (or one of its instances)
        assert uids(index, SE, ("webpacsHas", "SEG"), study_uid=d.study) == [d.series]
        assert uids(index, SE, ("webpacsHas", SEG_CLASS), study_uid=d.study) == [d.series]
        lacking = uids(index, SE, ("webpacsLacks", "SEG"), study_uid=d.study)
        assert sorted(lacking) == sorted(
            [str(d.seg.SeriesInstanceUID), str(d.sr.SeriesInstanceUID)]
        )
        assert uids(index, SE, ("webpacsLacks", "SEG"), ("Modality", "CT"), scope) == [plain.series]
        index.delete(d.study, str(d.seg.SeriesInstanceUID))
        assert uids(index, ST, scope, ("webpacsHas", "SEG")) == []
        assert uids(index, SE, ("webpacsHas", "SEG"), study_uid=d.study) == []

    def test_labels(self, index: Index, blobs: Blobs, d: Derived) -> None:
        store_all(index, blobs, d.images + [d.seg])
        other = derived(1)
        store_all(index, blobs, other.images)
        ST, SE = Level.STUDY, Level.SERIES
        scope = ("StudyInstanceUID", f"{d.study}\\{other.study}")
        before = index.changes()[-1].seq
        assert index.add_label(d.study, None, "to-review") is True
        assert index.add_label(d.study, None, "to-review") is False
        assert index.add_label(d.study, None, "batch.2") is True
        assert index.add_label(d.study, d.series, "done") is True
        assert index.labels(d.study) == ["batch.2", "to-review"]
        assert index.labels(d.study, d.series) == ["done"]
        assert index.labels(other.study) == []
        changes = index.changes(before)
        assert [(c.op, c.study_uid, c.series_uid, c.sop_uid) for c in changes] == [
            ("label", d.study, "", ""),
            ("label", d.study, "", ""),
            ("label", d.study, d.series, ""),
        ]
        assert uids(index, ST, scope, ("webpacsLabel", "to-review")) == [d.study]
        assert uids(index, ST, scope, ("webpacsLabel", "!to-review")) == [other.study]
        both = uids(index, ST, scope, ("webpacsLabel", "to-review"), ("webpacsLabel", "batch.2"))
        assert both == [d.study]
        assert uids(index, ST, scope, ("webpacsLabel", "done")) == []  # a series label
        assert uids(index, SE, ("webpacsLabel", "done"), scope) == [d.series]
        not_done = uids(index, SE, ("webpacsLabel", "!done"), scope)
        assert sorted(not_done) == sorted([str(d.seg.SeriesInstanceUID), other.series])
        rows = index.search(parse_qido(ST, [scope, ("includefield", "webpacsLabels")])).rows
        got = {r["0020000D"]["Value"][0]: r["webpacsLabels"] for r in rows}
        assert got == {d.study: ["batch.2", "to-review"], other.study: []}
        rows = index.search(
            parse_qido(SE, [("includefield", "webpacsLabels")], study_uid=d.study)
        ).rows
        assert {r["0020000E"]["Value"][0]: r["webpacsLabels"] for r in rows} == {
            d.series: ["done"],
            str(d.seg.SeriesInstanceUID): [],
        }
        plain = index.search(parse_qido(ST, [scope])).rows
        assert all("webpacsLabels" not in r for r in plain)

        assert index.remove_label(d.study, None, "to-review") is True
        assert index.remove_label(d.study, None, "to-review") is False
        assert uids(index, ST, scope, ("webpacsLabel", "to-review")) == []
        assert index.changes(before)[-1].op == "label"
        with pytest.raises(NotFound):
            index.add_label(generate_uid(), None, "x")
        with pytest.raises(NotFound):
            index.add_label(d.study, other.series, "x")  # a series of another study
        with pytest.raises(NotFound):
            index.labels(d.study, generate_uid())
        # labels go with what they label; the only instance of a series replaced keeps them
        assert index.add_label(other.study, other.series, "kept") is True
        changed = copy.deepcopy(other.images[0])
        changed.ImageComments = "replaced"
        assert ingest(index, blobs, part10(changed), overwrite=True).outcome is Outcome.REPLACED
        assert index.labels(other.study, other.series) == ["kept"]
        assert uids(index, SE, ("webpacsLabel", "kept")) == [other.series]
        index.delete(d.study, d.series)
        index.delete(d.study)
        store_all(index, blobs, d.images)
        assert index.labels(d.study) == [] and index.labels(d.study, d.series) == []
