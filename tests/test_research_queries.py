"""Research queries over the wire (issue 13 points 1, 2, 5): derived objects built with
highdicom (SEG, Comprehensive SR, KOS, presentation state) and pydicom's RTSTRUCT, stored
through STOW-RS (dicomweb-client) and C-STORE (pynetdicom), found by reference with
dicomweb-client's ``search_for_*``; labels over HTTP; ``webpacs query``."""

from __future__ import annotations

import contextlib
import copy
import re
import warnings
from pathlib import Path
from typing import Any

import httpx
import orjson
import pydicom
import pytest
from click.testing import CliRunner
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, RTStructureSetStorage  # type: ignore[attr-defined]
from requests.exceptions import HTTPError

from tests.conftest import RunningServer, data_file, start_server
from tests.derived_objects import Derived, derived
from webpacs.cli.main import main
from webpacs.dimse import ScpHandle
from webpacs.ingest import ingest


def c_store(port: int, datasets: list[Dataset]) -> None:
    ae = AE(ae_title="TESTSCU")
    for context in (CTImageStorage, RTStructureSetStorage):
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", port, ae_title="WEBPACS")
    assert assoc.is_established
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            assert status.Status == 0x0000, hex(status.Status)
    finally:
        assoc.release()


def rt_structure_set(d: Derived) -> Dataset:
    """pydicom's RTSTRUCT test file, pointed at the CT series of ``d`` (its study, series
    and, as contour images, its instances)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(data_file("rtstruct.dcm"), force=True)
    ds = copy.deepcopy(ds)
    ds.StudyInstanceUID = d.study
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()  # the test file has none
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    implicit, little = ds.original_encoding
    assert little
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    study_item = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    study_item.ReferencedSOPInstanceUID = d.study
    series_item = study_item.RTReferencedSeriesSequence[0]
    series_item.SeriesInstanceUID = d.series
    images = []
    for image in d.images:
        item = Dataset()
        item.ReferencedSOPClassUID = image.SOPClassUID
        item.ReferencedSOPInstanceUID = image.SOPInstanceUID
        images.append(item)
    series_item.ContourImageSequence = images
    return ds


def uids_of(rows: list[dict[str, Any]], key: str) -> list[str]:
    return sorted(r[key]["Value"][0] for r in rows)


def test_find_derived_objects_by_reference_over_stow_and_c_store(
    served: tuple[RunningServer, ScpHandle],
) -> None:
    srv, scp = served
    client = DICOMwebClient(url=srv.url)
    d = derived()
    rt = rt_structure_set(d)
    # the derived objects arrive first: by STOW-RS, and the RTSTRUCT by C-STORE
    client.store_instances(d.objects())
    c_store(scp.port, [rt])
    seg = str(d.seg.SOPInstanceUID)
    image = str(d.images[0].SOPInstanceUID)
    referencing = sorted(str(o.SOPInstanceUID) for o in [*d.objects(), rt])

    def image_side() -> None:
        found = client.search_for_instances(
            search_filters={"webpacsReferences": d.series, "Modality": "SEG"}
        )
        assert uids_of(found, "00080018") == [seg]
        found = client.search_for_instances(search_filters={"webpacsReferences": image})
        assert uids_of(found, "00080018") == referencing  # the RTSTRUCT's contour images too
        series = client.search_for_series(search_filters={"webpacsReferences": d.series})
        assert len(series) == 5
        studies = client.search_for_studies(search_filters={"webpacsReferences": d.study})
        assert uids_of(studies, "0020000D") == [d.study]  # SR, KOS, RTSTRUCT name the study
        rts = client.search_for_instances(
            study_instance_uid=d.study,
            search_filters={"webpacsReferences": d.study, "Modality": "RTSTRUCT"},
        )
        assert uids_of(rts, "00080018") == [str(rt.SOPInstanceUID)]

    image_side()
    assert client.search_for_instances(search_filters={"webpacsReferencedBy": seg}) == []

    c_store(scp.port, d.images)  # the images arrive
    image_side()
    images = sorted(str(i.SOPInstanceUID) for i in d.images)
    named = client.search_for_instances(search_filters={"webpacsReferencedBy": seg})
    assert uids_of(named, "00080018") == images
    named = client.search_for_series(search_filters={"webpacsReferencedBy": str(rt.SOPInstanceUID)})
    assert uids_of(named, "0020000E") == [d.series]
    named = client.search_for_studies(search_filters={"webpacsReferencedBy": seg})
    assert uids_of(named, "0020000D") == [d.study]

    client.delete_series(d.study, str(d.seg.SeriesInstanceUID))
    gone = client.search_for_instances(
        search_filters={"webpacsReferences": d.series, "Modality": "SEG"}
    )
    assert gone == []
    assert seg not in {
        r["00080018"]["Value"][0]
        for r in client.search_for_instances(search_filters={"webpacsReferences": image})
    }


def test_workflow_state_and_labels_over_http(served: tuple[RunningServer, ScpHandle]) -> None:
    srv, _ = served
    client = DICOMwebClient(url=srv.url)
    d = derived()
    plain = derived(1)
    client.store_instances([*d.images, d.seg, *plain.images])
    scope = {"StudyInstanceUID": f"{d.study},{plain.study}"}
    lacking = client.search_for_studies(
        search_filters={**scope, "ModalitiesInStudy": "CT", "webpacsLacks": "SEG"}
    )
    assert uids_of(lacking, "0020000D") == [plain.study]
    having = client.search_for_series(search_filters={**scope, "webpacsHas": "SEG"})
    assert uids_of(having, "0020000E") == [d.series]

    base = f"{srv.url}/webpacs/studies"
    with httpx.Client(timeout=30) as http:
        assert http.put(f"{base}/{d.study}/labels/to-review").status_code == 201
        assert http.put(f"{base}/{d.study}/labels/to-review").status_code == 204
        assert http.put(f"{base}/{d.study}/series/{d.series}/labels/done").status_code == 201
        assert http.put(f"{base}/{generate_uid()}/labels/to-review").status_code == 404
        other_series = f"{base}/{d.study}/series/{plain.series}/labels/x"
        assert http.put(other_series).status_code == 404
        for bad in ("a" * 65, "with space", "semi;colon", "%C3%A9t%C3%A9"):
            r = http.put(f"{base}/{d.study}/labels/{bad}")
            assert r.status_code == 400, bad
            assert "label" in r.json()["error"]
        assert http.get(f"{base}/{d.study}/labels").json() == ["to-review"]
        assert http.get(f"{base}/{d.study}/series/{d.series}/labels").json() == ["done"]
        studies = client.search_for_studies(
            search_filters={**scope, "webpacsLabel": "to-review"}, fields=["webpacsLabels"]
        )
        assert [(r["0020000D"]["Value"][0], r["webpacsLabels"]) for r in studies] == [
            (d.study, ["to-review"])
        ]
        todo = client.search_for_studies(search_filters={**scope, "webpacsLabel": "!to-review"})
        assert uids_of(todo, "0020000D") == [plain.study]
        series = client.search_for_series(
            search_filters={**scope, "Modality": "CT", "webpacsLabel": "!done"}
        )
        assert uids_of(series, "0020000E") == [plain.series]
        assert http.delete(f"{base}/{d.study}/labels/to-review").status_code == 204
        assert http.delete(f"{base}/{d.study}/labels/to-review").status_code == 204
        assert http.delete(f"{base}/{generate_uid()}/labels/to-review").status_code == 404
        assert http.get(f"{base}/{d.study}/labels").json() == []
        cors = http.options(
            f"{base}/{d.study}/labels/x",
            headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "PUT"},
        )
        assert cors.status_code == 200 and "PUT" in cors.headers["access-control-allow-methods"]
    # added, added, taken off: three changes (the repeated PUT and DELETE changed nothing)
    assert [c.op for c in srv.store.index.changes()][-4:] == ["put", "label", "label", "label"]


@pytest.mark.parametrize(
    ("path", "query", "reason"),
    [
        ("instances", "webpacsHas=SEG", "webpacsHas"),
        ("instances", "webpacsLabel=x", "webpacsLabel"),
        ("studies", "webpacsReferences=1.2.x", "webpacsReferences"),
        ("studies", "webpacsReferences=", "webpacsReferences"),
        ("series", "webpacsHas=seg", "webpacsHas"),
        ("series", "webpacsLabel=!", "label"),
        ("instances", "includefield=webpacsLabels", "webpacsLabels"),
    ],
)
def test_bad_research_keys_are_400_naming_them(
    module_server: RunningServer, path: str, query: str, reason: str
) -> None:
    r = httpx.get(f"{module_server.url}/{path}?{query}", timeout=30)
    assert r.status_code == 400
    assert reason in r.json()["error"]


def test_webpacs_query_command(served: tuple[RunningServer, ScpHandle]) -> None:
    srv, _ = served
    d = derived()
    DICOMwebClient(url=srv.url).store_instances([*d.images, d.seg, d.sr])
    data = str(srv.settings.data_dir)
    runner = CliRunner()
    seg = str(d.seg.SOPInstanceUID)
    out = runner.invoke(
        main,
        ["query", "--data-dir", data, "--level", "instances", "--json",
         f"webpacsReferences={d.series}&Modality=SEG"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert [r["00080018"]["Value"][0] for r in orjson.loads(out.stdout)] == [seg]
    out = runner.invoke(
        main, ["query", "--data-dir", data, f"webpacsReferencedBy={seg}&includefield=webpacsLabels"]
    )
    assert out.exit_code == 0, out.output
    assert d.study in out.stdout and "1 studies" in out.stdout
    out = runner.invoke(main, ["query", "--data-dir", data, "--level", "series", "webpacsHas=SEG"])
    assert out.exit_code == 0 and d.series in out.stdout and "1 series" in out.stdout
    out = runner.invoke(
        main, ["query", "--data-dir", data, "--level", "instances", "webpacsHas=SEG"]
    )
    assert out.exit_code != 0 and "webpacsHas" in out.output


def test_dicomweb_client_errors_are_http_errors(module_server: RunningServer) -> None:
    client = DICOMwebClient(url=module_server.url)
    with pytest.raises(HTTPError):
        client.search_for_instances(search_filters={"webpacsLacks": "SEG"})


def _readme_research_block() -> dict[str, str]:
    """The variables the README's research-query examples set (NAME=value lines)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Research queries", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    pairs = (line.split("=", 1) for line in block.splitlines() if re.match(r"[A-Z_0-9]+=", line))
    return dict(pairs)


def test_readme_research_examples_say_what_the_samples_hold(tmp_path: Path) -> None:
    """The README's examples name sample objects that reference what it says they do."""
    from webpacs.cli.importer import iter_files, sample_paths
    from webpacs.errors import Conflict

    v = _readme_research_block()
    srv = start_server(tmp_path / "data")
    try:
        for f in iter_files(sample_paths()):
            if f.name.startswith(("liver", "MR2_")):
                with contextlib.suppress(Conflict):
                    ingest(srv.store.index, srv.store.blobs, f.read_bytes())
        client = DICOMwebClient(url=srv.url)
        segs = client.search_for_instances(
            search_filters={"webpacsReferences": v["LIVER_CT_SERIES"], "Modality": "SEG"}
        )
        assert uids_of(segs, "00080018") == [v["LIVER_SEG"]]
        derived_images = client.search_for_instances(
            search_filters={"webpacsReferences": v["MR_IMAGE1"]}
        )
        assert v["MR_IMAGE2"] in uids_of(derived_images, "00080018")
        assert all(r["0020000D"]["Value"][0] == v["MR_STUDY"] for r in derived_images)
        sources = client.search_for_instances(
            search_filters={"webpacsReferencedBy": v["MR_IMAGE2"]}
        )
        assert uids_of(sources, "00080018") == [v["MR_IMAGE1"]]
    finally:
        srv.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as test_proxy
def test_research_keys_ask_the_index_alone_with_a_query_ae(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote PACS knows nothing of these keys: with ``queryAe`` set (nothing listens on
    its port), a query with them is answered by the index without asking it."""
    from tests.test_proxy import orthanc_ae, start_webpacs
    from webpacs.web import remote

    calls: list[str] = []

    async def counting(request: Any, proxy: Any, query: Any) -> Any:
        calls.append(query.level.value)
        raise AssertionError("the remote was asked")

    monkeypatch.setattr(remote, "search", counting)
    w = start_webpacs(
        tmp_path / "data", scp_port=None, ae=orthanc_ae(port=4297), query_ae="orthanc"
    )
    try:
        d = derived(1)
        DICOMwebClient(url=w.server.url).store_instances([*d.images, d.seg])
        for path in (
            "/studies?webpacsHas=SEG",
            f"/studies?includefield=webpacsLabels&StudyInstanceUID={d.study}",
            f"/series?webpacsReferences={str(d.images[0].SOPInstanceUID)}",
        ):
            r = w.get(path)
            assert r.status_code == 200 and len(r.json()) == 1, r.text
            assert "Warning" not in r.headers
        assert calls == []
    finally:
        w.stop()
