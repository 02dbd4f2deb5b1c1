"""The backend contract: every Index and Blobs implementation re-runs these tests.

A backend's test module subclasses ``IndexContract`` / ``BlobsContract`` and provides
the ``index`` / ``blobs`` fixtures (the fsspec pattern).
"""

from __future__ import annotations

import io
import threading
import warnings
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import data_file
from tests.contract_anyattr import AnyAttributeContract
from tests.contract_refs import ReferenceContract
from tests.matching_table import BASE, EXTENSION_CASES, MATCHING_CASES, MatchCase, stored_value
from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.errors import Conflict, NotFound
from webpacs.ingest import ingest, ingest_many
from webpacs.storage.base import Blobs, Index, Outcome


def make_instance(attrs: dict[str, Any], **override: Any) -> bytes:
    """A small valid Part 10 object with ``attrs`` (keyword -> value)."""
    ds = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some rows store legacy forms on purpose
        for kw, value in {**BASE, **attrs, **override}.items():
            setattr(ds, kw, stored_value(value))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def sample(name: str) -> bytes:
    return data_file(name).read_bytes()


class BlobsContract:
    """What every ``Blobs`` backend must do."""

    def test_put_get_range(self, blobs: Blobs) -> None:
        blobs.put("a/b/c.bin", b"0123456789")
        assert blobs.get("a/b/c.bin") == b"0123456789"
        assert blobs.get_range("a/b/c.bin", 2, 3) == b"234"
        assert blobs.size("a/b/c.bin") == 10
        assert blobs.exists("a/b/c.bin")
        with blobs.open("a/b/c.bin") as f:
            assert f.read() == b"0123456789"
        assert "a/b/c.bin" in set(blobs.keys("a/"))

    def test_put_file_and_replace(self, blobs: Blobs) -> None:
        blobs.put_file("k", io.BytesIO(b"x" * 3_000_000))
        assert blobs.size("k") == 3_000_000
        blobs.put("k", b"new")
        assert blobs.get("k") == b"new"

    def test_missing_and_delete(self, blobs: Blobs) -> None:
        with pytest.raises(NotFound):
            blobs.get("nope")
        blobs.put("d/e", b"1")
        blobs.delete("d/e")
        assert not blobs.exists("d/e")
        blobs.delete("d/e")  # idempotent

    def test_rejects_path_like_keys(self, blobs: Blobs) -> None:
        from webpacs.errors import InvalidRequest

        for key in ("../x", "a/../../x", "/abs", ""):
            with pytest.raises(InvalidRequest):
                blobs.put(key, b"1")

    def test_concurrent_writers_never_tear(self, blobs: Blobs) -> None:
        payloads = [bytes([i]) * 500_000 for i in range(8)]

        def write(p: bytes) -> None:
            for _ in range(5):
                blobs.put("same", p)

        threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert blobs.get("same") in payloads

    def test_entries_touch_collect(self, blobs: Blobs) -> None:
        """What ``webpacs check --repair`` relies on (see ``Blobs.collect``)."""
        import time

        blobs.put("g/h/old", b"12345")
        blobs.put("g/kept", b"6")
        entries = {e.key: e for e in blobs.entries("g/")}
        assert set(entries) == {"g/h/old", "g/kept"} and entries["g/h/old"].size == 5
        assert abs(entries["g/h/old"].modified - time.time()) < 86400  # seconds since the epoch
        assert blobs.touch("g/kept") is True and blobs.get("g/kept") == b"6"
        assert blobs.touch("g/none") is False and not blobs.exists("g/none")
        later = time.time() + 3600  # a cutoff after the writes: they count as old
        earlier = entries["g/h/old"].modified - 3600  # before them: they are young
        asked: list[str] = []
        assert blobs.collect("g/h/old", earlier, lambda k: bool(asked.append(k))) is False
        assert blobs.collect("g/h/old", later, lambda k: bool(asked.append(k)) or True) is False
        assert asked == ["g/h/old"] and blobs.get("g/h/old") == b"12345"
        assert blobs.collect("g/h/old", later, lambda k: False) is True
        assert (
            not blobs.exists("g/h/old")
            and blobs.collect("g/h/old", later, lambda k: False) is False
        )
        assert [e.key for e in blobs.entries("g/")] == ["g/kept"]
        assert list(blobs.scraps()) == []


class IndexContract(ReferenceContract, AnyAttributeContract):
    """What every ``Index`` backend must do (with any ``Blobs``)."""

    def test_put_get_duplicate_conflict(self, index: Index, blobs: Blobs) -> None:
        data = sample("CT_small.dcm")
        r = ingest(index, blobs, data)
        assert r.outcome is Outcome.STORED
        assert ingest(index, blobs, data).outcome is Outcome.DUPLICATE
        rec = index.get(r.sop_uid)
        assert rec is not None and blobs.get(rec.blob_key) == data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
        ds.PatientName = "Changed^Name"
        buf = io.BytesIO()
        ds.save_as(buf)
        with pytest.raises(Conflict):
            ingest(index, blobs, buf.getvalue())
        kept = index.get(r.sop_uid)
        assert kept is not None and blobs.get(kept.blob_key) == data
        assert len(index.instances(r.study_uid)) == 1
        replaced = ingest(index, blobs, buf.getvalue(), overwrite=True)
        assert replaced.outcome is Outcome.REPLACED
        now = index.get(r.sop_uid)
        assert now is not None and blobs.get(now.blob_key) == buf.getvalue()
        assert not blobs.exists(rec.blob_key)  # the replaced object is gone
        rows = index.search(parse_qido(Level.STUDY, [("PatientName", "Changed^Name")])).rows
        assert len(rows) == 1

    @pytest.mark.parametrize("overwrite", [False, True])
    def test_same_data_set_in_other_syntaxes_is_duplicate(
        self, index: Index, blobs: Blobs, overwrite: bool
    ) -> None:
        """Duplicates by meaning (webpacs.duplicates): another encoding of the stored data
        set is a DUPLICATE that writes nothing, under either conflict policy."""
        first = ingest(index, blobs, sample("MR_small.dcm"))
        rec = index.get(first.sop_uid)
        assert rec is not None
        keys, changes = sorted(blobs.keys("objects/")), len(index.changes(0, 100_000))
        for name in ("MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm"):
            again = ingest(index, blobs, sample(name), overwrite=overwrite)
            assert again.outcome is Outcome.DUPLICATE, name
        assert sorted(blobs.keys("objects/")) == keys
        assert len(index.changes(0, 100_000)) == changes
        kept = index.get(first.sop_uid)
        assert kept is not None and (kept.blob_key, kept.digest) == (rec.blob_key, rec.digest)

    @pytest.mark.parametrize(
        "case",
        MATCHING_CASES + EXTENSION_CASES,
        ids=[c.rule for c in MATCHING_CASES + EXTENSION_CASES],
    )
    def test_matching_table(self, index: Index, blobs: Blobs, case: MatchCase) -> None:
        ingest(index, blobs, make_instance(case.stored))
        for i, modality in enumerate(case.series_modalities):
            ingest(
                index,
                blobs,
                make_instance(
                    {k: v for k, v in case.stored.items() if k != "ModalitiesInStudy"},
                    SeriesInstanceUID=f"{BASE['SeriesInstanceUID']}.{i + 9}",
                    SOPInstanceUID=f"{BASE['SOPInstanceUID']}.{i + 9}",
                    Modality=modality,
                ),
            )
        query = parse_qido(case.level, case.params)
        rows = index.search(query).rows
        study = case.stored.get("StudyInstanceUID", BASE["StudyInstanceUID"])
        found = any(r["0020000D"]["Value"][0] == study for r in rows)
        assert found is case.expected, case.rule

    def test_aggregates_and_paging(self, index: Index, blobs: Blobs) -> None:
        study = generate_uid()
        for s in range(3):
            series = generate_uid()
            for i in range(4):
                ingest(
                    index,
                    blobs,
                    make_instance(
                        {"Modality": ["CT", "MR", "CT"][s], "SeriesNumber": s + 1},
                        StudyInstanceUID=study,
                        SeriesInstanceUID=series,
                        SOPInstanceUID=generate_uid(),
                        InstanceNumber=i + 1,
                    ),
                )
        row = index.search(parse_qido(Level.STUDY, [("StudyInstanceUID", study)])).rows[0]
        assert row["00080061"]["Value"] == ["CT", "MR"]
        assert row["00201206"]["Value"] == [3]
        assert row["00201208"]["Value"] == [12]
        series = index.search(parse_qido(Level.SERIES, [], study_uid=study)).rows
        assert [s["00201209"]["Value"][0] for s in series] == [4, 4, 4]
        full = index.search(parse_qido(Level.INSTANCE, [], study_uid=study)).rows
        page = index.search(
            parse_qido(Level.INSTANCE, [("limit", "5"), ("offset", "5")], study_uid=study)
        )
        assert page.truncated
        assert [r["00080018"] for r in page.rows] == [r["00080018"] for r in full[5:10]]

    def test_study_without_modality_has_no_empty_modalities(
        self, index: Index, blobs: Blobs
    ) -> None:
        """No instance has a Modality: the study row leaves ModalitiesInStudy out rather than
        send it without a Value (OHIF's study list reads its ``Value``)."""
        study = generate_uid()
        for modality in ({}, {"Modality": None}):  # absent, then present and empty
            ingest(
                index,
                blobs,
                make_instance(
                    modality,
                    StudyInstanceUID=study,
                    SeriesInstanceUID=generate_uid(),
                    SOPInstanceUID=generate_uid(),
                ),
            )
        (row,) = index.search(parse_qido(Level.STUDY, [("StudyInstanceUID", study)])).rows
        assert "00080061" not in row
        assert row["00201206"]["Value"] == [2]
        for item in row.values():
            if item.get("vr") != "SQ" and "Value" in item:
                assert item["Value"], item  # no empty Value arrays either

    def test_delete_updates_aggregates_and_changes(self, index: Index, blobs: Blobs) -> None:
        study, series = generate_uid(), generate_uid()
        sops = [generate_uid() for _ in range(3)]
        for sop in sops:
            ingest(
                index,
                blobs,
                make_instance(
                    {}, StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop
                ),
            )
        before = index.changes()[-1].seq
        version = index.series_version(study, series)
        removed = index.delete(study, series, sops[0])
        assert [r.sop_uid for r in removed] == [sops[0]]
        assert index.series_version(study, series) != version
        row = index.search(parse_qido(Level.STUDY, [("StudyInstanceUID", study)])).rows[0]
        assert row["00201208"]["Value"] == [2]
        changes = index.changes(before)
        assert [(c.op, c.sop_uid) for c in changes] == [("delete", sops[0])]
        assert len(index.delete(study)) == 2
        assert index.search(parse_qido(Level.STUDY, [("StudyInstanceUID", study)])).rows == []
        assert index.series_version(study, series) is None
        assert index.delete(study) == []

    def test_totals(self, index: Index, blobs: Blobs) -> None:
        """``/metrics``' store figures: each one either counts or is None (not counted)."""
        before = index.totals()
        study, series = generate_uid(), [generate_uid(), generate_uid()]
        sizes = 0
        for i in range(3):
            data = make_instance(
                {}, StudyInstanceUID=study, SeriesInstanceUID=series[i % 2],
                SOPInstanceUID=generate_uid(),
            )  # fmt: skip
            result = ingest(index, blobs, data)
            rec = index.get(result.sop_uid)
            assert rec is not None
            sizes += rec.size
        after = index.totals()
        assert after.keys() == {"studies", "series", "instances", "bytes"}
        added = {"studies": 1, "series": 2, "instances": 3, "bytes": sizes}
        for key, n in added.items():
            if after[key] is not None:
                assert after[key] == (before[key] or 0) + n, key
        assert after["instances"] is not None  # every backend counts instances
        index.delete(study)
        assert index.totals()["instances"] == before["instances"]

    def test_study_summary_follows_newest_and_records_disagreement(
        self, index: Index, blobs: Blobs
    ) -> None:
        study = generate_uid()
        ingest(
            index,
            blobs,
            make_instance(
                {"PatientName": "Old^Name"}, StudyInstanceUID=study, SOPInstanceUID=generate_uid()
            ),
        )
        ingest(
            index,
            blobs,
            make_instance(
                {"PatientName": "New^Name"}, StudyInstanceUID=study, SOPInstanceUID=generate_uid()
            ),
        )
        row = index.search(parse_qido(Level.STUDY, [("StudyInstanceUID", study)])).rows[0]
        assert row["00100010"]["Value"] == [{"Alphabetic": "New^Name"}]
        conflicts = index.study_conflicts(study)
        assert [(c["keyword"], c["previous"], c["value"]) for c in conflicts] == [
            ("PatientName", "Old^Name", "New^Name")
        ]

    def test_includefield(self, index: Index, blobs: Blobs) -> None:
        r = ingest(index, blobs, sample("CT_small.dcm"))
        q = parse_qido(
            Level.STUDY, [("StudyInstanceUID", r.study_uid), ("includefield", "00180050")]
        )
        row = index.search(q).rows[0]
        assert "00180050" in row
        everything = index.search(parse_qido(Level.INSTANCE, [("includefield", "all")])).rows[0]
        assert "00280030" in everything  # PixelSpacing, not an index column
        assert "7FE00010" not in everything  # no bulk data in query results

    def test_ingest_many_decides_each_instance(self, index: Index, blobs: Blobs) -> None:
        """One batch, one outcome per instance in order: a later copy meets the earlier
        one (same bytes, the same data set in another encoding, other content), what was
        deleted is stored again, and the summaries count what is stored."""
        study, series, sop = generate_uid(), generate_uid(), generate_uid()
        one = make_instance(
            {"InstanceNumber": 1}, StudyInstanceUID=study, SeriesInstanceUID=series,
            SOPInstanceUID=sop,
        )  # fmt: skip
        other = make_instance(
            {"InstanceNumber": 2}, StudyInstanceUID=study, SeriesInstanceUID=series,
            SOPInstanceUID=sop,
        )  # fmt: skip
        mr, mr_big = sample("MR_small.dcm"), sample("MR_small_bigendian.dcm")
        results = ingest_many(index, blobs, [one, mr, one, other, mr_big])
        outcomes = [r.outcome if not isinstance(r, Exception) else type(r) for r in results]
        assert outcomes == [
            Outcome.STORED, Outcome.STORED, Outcome.DUPLICATE, Conflict, Outcome.DUPLICATE
        ]  # fmt: skip
        kept = index.get(sop)
        assert kept is not None and kept.attributes["InstanceNumber"] == "1"
        index.delete(study)
        again = ingest_many(index, blobs, [other])
        assert [r.outcome for r in again if not isinstance(r, Exception)] == [Outcome.STORED]
        (row,) = index.search(parse_qido(Level.STUDY, [("StudyInstanceUID", study)])).rows
        assert row["00201208"]["Value"] == [1]

    def test_concurrent_batches_of_one_series(self, index: Index, blobs: Blobs) -> None:
        """Batches of one series from several threads, each also carrying one instance
        they all share: nothing lost, that instance stored once, and the series summary
        follows the newest instance stored, whichever writer wrote its summary last."""
        study, series, shared = generate_uid(), generate_uid(), generate_uid()

        def instance(sop: str) -> bytes:
            return make_instance(
                {"SeriesDescription": sop[-12:]}, StudyInstanceUID=study,
                SeriesInstanceUID=series, SOPInstanceUID=sop,
            )  # fmt: skip

        outcomes: list[Outcome] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for batch in range(3):
                    items = [instance(generate_uid()) for _ in range(4)]
                    if batch == 1:
                        items.insert(2, instance(shared))
                    for r in ingest_many(index, blobs, items):
                        if isinstance(r, BaseException):
                            raise r
                        outcomes.append(r.outcome)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], [repr(e) for e in errors]
        assert outcomes.count(Outcome.DUPLICATE) == 3 and len(outcomes) == 52
        stored = index.instances(study)
        assert len(stored) == 49
        newest = max(stored, key=lambda r: r.received)
        (row,) = index.search(parse_qido(Level.SERIES, [("StudyInstanceUID", study)])).rows
        assert row["00201209"]["Value"] == [49]
        assert row["0008103E"]["Value"] == [newest.sop_uid[-12:]]

    def test_concurrent_ingest(self, index: Index, blobs: Blobs) -> None:
        study = generate_uid()
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for _ in range(10):
                    ingest(
                        index,
                        blobs,
                        make_instance(
                            {},
                            StudyInstanceUID=study,
                            SeriesInstanceUID=f"1.2.826.0.1.3680043.8.498.77.{n}",
                            SOPInstanceUID=generate_uid(),
                        ),
                    )
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], [repr(e) for e in errors]
        row = index.search(parse_qido(Level.STUDY, [("StudyInstanceUID", study)])).rows[0]
        assert row["00201208"]["Value"] == [40]
        assert row["00201206"]["Value"] == [4]
