"""``webpacs deidentify`` (PS3.15 Annex E) on a CT series and a highdicom SEG over it.

Checked against the library's table (dicom-anonymizer's Table E.1-1), not a hand list:
no attribute the profile removes is left at any depth, no UID the profile replaces keeps
its value, no identifying original value is left anywhere the server keeps data, and the
SEG's references resolve to the de-identified CT.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import numpy as np
import pydicom
from click.testing import CliRunner
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, data_file
from tests.static_support import read
from webpacs.cli.main import main
from webpacs.deid.profile import Profile, library_table

PRIVATE = 0x00091001


def ct_study(n: int = 3) -> list[Dataset]:
    base = read(data_file("CT_small.dcm"))
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for i in range(n):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 2.5 * i]
        ds.PatientName, ds.PatientID = "Secret^Sally", "MRN-778899"
        ds.InstitutionName, ds.OperatorsName = "Saint Hidden Hospital", "Tech^Tom"
        ds.AccessionNumber, ds.StudyID = "ACC-445566", "STUDY-91"
        ds.OtherPatientIDs = "OTHER-112233"
        ds.add_new(0x00090010, "LO", "ACME")
        ds.add_new(PRIVATE, "LO", "private-secret-value")
        out.append(ds)
    return out


def seg_over(ct: list[Dataset]) -> Dataset:
    mask = np.zeros((len(ct), ct[0].Rows, ct[0].Columns), dtype=bool)
    mask[:, 40:80, 40:80] = True
    desc = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=ct,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc],
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="webpacs-tests",
        manufacturer_model_name="seg",
        software_versions="1",
        device_serial_number="SN-0042",
    )
    out = Dataset(seg)
    out.file_meta = seg.file_meta
    return out


def walk(ds: Dataset) -> Iterator[tuple[int, Any, str]]:
    """Every element at every depth: (tag, value, VR)."""
    for elem in ds:
        yield int(elem.tag), elem.value, elem.VR
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[0])


def originals(datasets: list[Dataset]) -> tuple[set[str], set[bytes]]:
    """The original UIDs the profile replaces and the identifying text values it removes,
    empties or replaces (long enough to be recognised in bytes), from the library table."""
    prof = Profile.build([])
    uids, texts = set(), set()
    for ds in datasets:
        for tag, value, vr in walk(ds):
            action = prof.action(tag)
            if action is None or action == "K" or vr == "SQ":
                continue
            values = value if isinstance(value, list | pydicom.multival.MultiValue) else [value]
            for v in values:
                s = str(v)
                if vr == "UI":
                    uids.add(s)
                elif vr in ("PN", "LO", "SH", "LT", "ST", "UT", "AE") and len(s) >= 8:
                    texts.add(s.encode())
    uids |= {str(ds.SOPInstanceUID) for ds in datasets}
    return uids, texts


def check_deidentified(datasets: list[Dataset], uids: set[str], retain_dates: bool) -> None:
    removed = Profile.build(["retain-dates"] if retain_dates else []).removed()
    assert removed and 0x04000561 in removed  # OriginalAttributesSequence (E.1-1)
    for ds in datasets:
        assert ds.PatientIdentityRemoved == "YES"
        codes_ = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
        assert codes_[0] == "113100"
        for tag, value, vr in walk(ds):
            assert tag not in removed, f"{tag:08X} should be removed"
            assert not (tag >> 16) & 1, f"private {tag:08X} left"
            if vr == "UI":
                values = value if isinstance(value, list | pydicom.multival.MultiValue) else [value]
                assert not {str(v) for v in values} & uids, f"{tag:08X} keeps an original UID"


def test_in_place_study_with_seg(server: RunningServer, tmp_path: Path) -> None:
    ct = ct_study()
    seg = seg_over(ct)
    client = DICOMwebClient(url=server.url)
    client.store_instances([*ct, seg])
    study = ct[0].StudyInstanceUID
    data, tree = str(server.settings.data_dir), str(tmp_path / "tree")
    # an update first: its OriginalAttributesSequence holds the old name, and must go too
    CliRunner().invoke(
        main,
        ["update", "--data-dir", data, "--study", study, "StudyDescription=Head of Sally Secret"],
    )  # noqa: E501
    client.retrieve_study_metadata(study)  # derived documents exist for the original
    assert (
        CliRunner().invoke(main, ["static", "build", "--data-dir", data, "--out", tree]).exit_code
        == 0
    )  # noqa: E501
    uids, texts = originals([*ct, seg])
    texts.add(b"Head of Sally Secret")

    result = cli("deidentify", "--data-dir", data, "--study", study)
    new = result["study"]
    assert new != study and result["instances"] == 4 and result["removedOriginal"]
    assert client.search_for_studies(search_filters={"StudyInstanceUID": study}) == []
    got = [
        client.retrieve_instance(new, m["0020000E"]["Value"][0], m["00080018"]["Value"][0])
        for m in client.search_for_instances(new)
    ]
    assert len(got) == 4
    check_deidentified(got, uids, retain_dates=False)
    # the SEG's references resolve to the de-identified CT
    (new_seg,) = [d for d in got if d.Modality == "SEG"]
    new_ct = [d for d in got if d.Modality == "CT"]
    ct_sops = {d.SOPInstanceUID for d in new_ct}
    (ref,) = new_seg.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == new_ct[0].SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == ct_sops
    sources = {
        s.ReferencedSOPInstanceUID
        for f in new_seg.PerFrameFunctionalGroupsSequence
        for d in f.DerivationImageSequence
        for s in d.SourceImageSequence
    }
    assert sources == ct_sops
    assert new_seg.FrameOfReferenceUID == new_ct[0].FrameOfReferenceUID
    assert len({d.PatientID for d in got}) == 1 and got[0].PatientID.startswith("ANON-")
    assert [d.PixelData for d in sorted(new_ct, key=lambda d: d.InstanceNumber)] == [
        d.PixelData for d in ct
    ]
    # nothing identifying left where the server keeps data: objects, derived documents,
    # conflict records, the static tree after --incremental
    client.retrieve_study_metadata(new)
    assert (
        CliRunner()
        .invoke(main, ["static", "build", "--incremental", "--data-dir", data, "--out", tree])
        .exit_code
        == 0
    )  # noqa: E501
    assert not (Path(tree) / "studies" / study).exists()
    assert server.store.index.study_conflicts(study) == []
    blobs = Path(data) / "blobs"
    for root in (blobs, Path(tree)):
        for f in root.rglob("*"):
            if not f.is_file():
                continue
            body = f.read_bytes()
            if f.suffix == ".gz":
                body = gzip.decompress(body)
            for t in texts:
                assert t not in body, f"{t!r} left in {f}"
            for u in uids:
                assert u.encode() not in body, f"original UID {u} left in {f}"


def test_burned_in_refused_unless_forced(server: RunningServer, tmp_path: Path) -> None:
    ct = ct_study(2)
    ct[1].BurnedInAnnotation = "YES"
    DICOMwebClient(url=server.url).store_instances(ct)
    study, data = ct[0].StudyInstanceUID, str(server.settings.data_dir)
    before = sorted(server.store.blobs.keys("objects/"))
    r = CliRunner().invoke(main, ["deidentify", "--data-dir", data, "--study", study])
    assert r.exit_code == 1 and ct[1].SOPInstanceUID in r.output
    assert sorted(server.store.blobs.keys("objects/")) == before
    url = f"{server.url}/webpacs/studies/{study}/deidentify"
    r2 = httpx.post(url, json={})
    assert r2.status_code == 400 and "BurnedInAnnotation" in r2.text
    r3 = httpx.post(url, json={"force": True, "newStudy": True, "profile": ["retain-dates"]})
    assert r3.status_code == 200, r3.text
    new = r3.json()["study"]
    assert server.store.index.instances(study)  # --new-study keeps the original
    recs = server.store.index.instances(new)
    assert len(recs) == 2
    for rec in recs:
        ds = pydicom.dcmread(io.BytesIO(server.store.blobs.get(rec.blob_key)))
        assert ds.StudyDate == ct[0].StudyDate  # retain-dates keeps dates
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
            "113100",
            "113106",
        ]
        assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
        assert ds.get("InstitutionName", "") != "Saint Hidden Hospital"  # X/Z/D
        assert "OtherPatientIDs" not in ds  # X


def test_out_and_static_leave_the_store_alone(server: RunningServer, tmp_path: Path) -> None:
    ct = ct_study(2)
    DICOMwebClient(url=server.url).store_instances(ct)
    study, data = ct[0].StudyInstanceUID, str(server.settings.data_dir)
    before = sorted(server.store.blobs.keys())
    seq = server.store.index.changes(0, 10_000)[-1].seq
    out = cli("deidentify", "--data-dir", data, "--study", study, "--out", str(tmp_path / "o"))
    files = sorted((tmp_path / "o").rglob("*.dcm"))
    assert len(files) == 2 and all(f.parts[-3] == out["study"] for f in files)
    datasets = [pydicom.dcmread(f) for f in files]
    uids, _ = originals(ct)
    check_deidentified(datasets, uids, retain_dates=False)
    assert len({d.SeriesInstanceUID for d in datasets}) == 1  # one series, mapped once
    assert datasets[0].StudyDate == "" or datasets[0].StudyDate != ct[0].StudyDate
    st = cli("deidentify", "--data-dir", data, "--study", study, "--static", str(tmp_path / "t"))
    meta = tmp_path / "t" / "studies" / st["study"] / "index.json.gz"
    assert meta.exists()
    assert sorted(server.store.blobs.keys()) == before
    assert server.store.index.changes(seq, 10) == []
    assert library_table()  # the table comes from the library
