"""One STOW-RS request is one ``_bulk_docs`` on CouchDB, and each instance in it keeps
its own outcome: the answers are those of the embedded index, which commits the
instances one by one in a transaction, and a writer that gets in between the read and
the write fails only the instances it touched."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from requests.exceptions import HTTPError

from tests.conftest import RunningServer, start_server
from tests.contract import make_instance
from webpacs.ingest import prepare
from webpacs.storage.base import Outcome

CONFLICT = 0x0111  # Duplicate SOP Instance (conflict policy: reject)


def _ds(study: str, series: str, sop: str, number: int, **attrs: Any) -> pydicom.Dataset:
    data = make_instance(
        {"Modality": "CT", "SeriesNumber": 1, "InstanceNumber": number, **attrs},
        StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop,
    )  # fmt: skip
    return pydicom.dcmread(io.BytesIO(data))


def _answer(answer: pydicom.Dataset) -> tuple[list[str], dict[str, int]]:
    stored = [str(r.ReferencedSOPInstanceUID) for r in answer.get("ReferencedSOPSequence", [])]
    failed = {
        str(f.ReferencedSOPInstanceUID): int(f.FailureReason)
        for f in answer.get("FailedSOPSequence", [])
    }
    return stored, failed


def _numbers(client: DICOMwebClient, study: str) -> dict[str, list[int]]:
    """Instance numbers by series, as QIDO lists them, and the series' own counts."""
    out: dict[str, list[int]] = {}
    for s in client.search_for_series(study):
        uid = s["0020000E"]["Value"][0]
        found = client.search_for_instances(study, uid, fields=["InstanceNumber"])
        out[uid] = sorted(int(r["00200013"]["Value"][0]) for r in found)
        assert s["00201209"]["Value"] == [len(out[uid])]
    return out


@pytest.fixture(params=["sqlite", "couchdb"])
def policy_servers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[dict[str, RunningServer]]:
    """A server per conflict policy on the index named by the parameter."""
    sections: dict[str, Any] = {"server": {"deriveInterval": 0}}
    if request.param == "couchdb":
        sections["index"] = "couchdb"
    servers: dict[str, RunningServer] = {}
    try:
        for policy in ("reject", "overwrite"):
            if request.param == "couchdb":
                sections["couchdb"] = request.getfixturevalue("couchdb_section") | {
                    "database": f"{policy}{generate_uid()[-12:].replace('.', '')}"
                }
            servers[policy] = start_server(
                tmp_path / policy, ingest={"conflict": policy}, **sections
            )
        yield servers
    finally:
        for srv in servers.values():
            srv.stop()


def test_copies_of_one_instance_in_one_request(policy_servers: dict[str, RunningServer]) -> None:
    """A second copy meets the first as a later request would: the same content is
    already stored, other content is refused or replaces it, by policy."""
    for policy, srv in policy_servers.items():
        client = DICOMwebClient(srv.url)
        study, series, other = generate_uid(), generate_uid(), generate_uid()
        a, b = generate_uid(), generate_uid()
        first = _ds(study, series, a, 1)
        again = _ds(study, series, a, 1)
        changed = _ds(study, other, a, 7)  # the same SOP Instance, in another series
        plain = _ds(study, series, b, 2)
        stored, failed = _answer(client.store_instances([first, plain, again, changed]))
        if policy == "reject":
            assert (stored, failed) == ([a, b, a], {a: CONFLICT})
            assert _numbers(client, study) == {series: [1, 2]}
        else:
            assert (stored, failed) == ([a, b, a, a], {})
            assert _numbers(client, study) == {series: [2], other: [7]}


def test_a_replacement_that_moves_series_leaves_no_summary_behind(
    policy_servers: dict[str, RunningServer],
) -> None:
    srv = policy_servers["overwrite"]
    client = DICOMwebClient(srv.url)
    study, series, other = generate_uid(), generate_uid(), generate_uid()
    sop = generate_uid()
    client.store_instances([_ds(study, series, sop, 1)])
    stored, failed = _answer(client.store_instances([_ds(study, other, sop, 2)]))
    assert (stored, failed) == ([sop], {})
    assert _numbers(client, study) == {other: [2]}


@pytest.fixture
def couch(tmp_path: Path, couchdb_section: dict[str, Any]) -> Iterator[RunningServer]:
    srv = start_server(
        tmp_path / "c", index="couchdb", couchdb=couchdb_section, server={"deriveInterval": 0}
    )
    try:
        yield srv
    finally:
        srv.stop()


def _theirs(srv: RunningServer, study: str, series: str, sop: str) -> Any:
    """The record another node makes of ``sop`` (other content), its object stored."""
    data = make_instance(
        {"Modality": "CT", "SeriesNumber": 1, "InstanceNumber": 9, "PatientID": "THEIRS"},
        StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop,
    )  # fmt: skip
    return prepare(data, srv.store.blobs).record


def _between(
    srv: RunningServer, monkeypatch: pytest.MonkeyPatch, write: Callable[[Any], None]
) -> list[list[str]]:
    """Runs ``write(call)`` once, just before the first ``_bulk_docs``; returns the ids that
    call carried."""
    client = srv.store.index.client  # type: ignore[attr-defined]
    call = client.call
    seen: list[list[str]] = []

    def wrapped(method: str, path: str, **kw: Any) -> tuple[int, Any]:
        if method == "POST" and path == "_bulk_docs" and not seen:
            seen.append([d["_id"] for d in kw["body"]["docs"]])
            write(call)
        return call(method, path, **kw)

    monkeypatch.setattr(client, "call", wrapped)
    return seen


def test_a_writer_between_the_read_and_the_write_fails_only_its_instance(
    couch: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another node stores one of the request's SOP Instance UIDs (other content), with
    the series and study summaries, after this request read them: that instance is
    refused alone (0111), the others are stored, the summaries are followed again."""
    client = DICOMwebClient(couch.url)
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    datasets = [_ds(study, series, sop, n + 1) for n, sop in enumerate(sops)]
    index = couch.store.index

    def other_node(_: Any) -> None:
        theirs = _theirs(couch, study, series, sops[0])  # received after ours: the newest
        assert index.put(theirs, overwrite=False)[0] is Outcome.STORED

    seen = _between(couch, monkeypatch, other_node)
    stored, failed = _answer(client.store_instances(datasets))
    assert seen and set(seen[0]) >= {*sops, f"series:{series}", f"study:{study}"}
    assert (stored, failed) == (sops[1:], {sops[0]: CONFLICT})
    assert _numbers(client, study) == {series: [2, 3, 9]}
    kept = client.retrieve_instance_metadata(study, series, sops[0])
    assert kept["00200013"]["Value"] == [9]  # theirs, not the refused copy
    (row,) = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert row["00100020"]["Value"] == ["THEIRS"]  # the study follows its newest instance


def test_summaries_never_follow_a_refused_instance(
    couch: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other node's instance document arrives between the read and the write, its
    summaries not yet (e.g. replication half-way): the summaries this request wrote
    followed the instance that was then refused, so they follow the stored one instead."""
    client = DICOMwebClient(couch.url)
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    index = couch.store.index
    theirs = _theirs(couch, study, series, sop)

    def instance_only(call: Callable[..., tuple[int, Any]]) -> None:
        doc = index.instance_doc(theirs, orjson.loads(theirs.metadata))  # type: ignore[attr-defined]
        call("PUT", sop, body=doc)

    seen = _between(couch, monkeypatch, instance_only)
    mine = _ds(study, series, sop, 1, PatientID="REFUSED")
    with pytest.raises(HTTPError) as refused:  # every instance failed: 409
        client.store_instances([mine])
    assert seen == [[sop, f"series:{series}", f"study:{study}"]]  # all three in one call
    assert refused.value.response.status_code == 409
    (failure,) = refused.value.response.json()["00081198"]["Value"]  # FailedSOPSequence
    assert failure["00081155"]["Value"] == [sop] and failure["00081197"]["Value"] == [CONFLICT]
    assert _numbers(client, study) == {series: [9]}
    (row,) = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert row["00100020"]["Value"] == ["THEIRS"]


def test_summaries_another_node_wrote_in_between_are_followed_again(
    couch: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another node stores an older instance of the series between this request's read and
    write, so the request's summary writes are refused: they are read and followed again,
    and the study follows this request's newer instances."""
    client = DICOMwebClient(couch.url)
    study, series = generate_uid(), generate_uid()
    older = _theirs(couch, study, series, generate_uid())  # received before ours
    index = couch.store.index
    seen = _between(couch, monkeypatch, lambda _: index.put(older, overwrite=False) and None)
    sops = [generate_uid() for _ in range(3)]
    mine = [_ds(study, series, sop, n + 1, PatientID="OURS") for n, sop in enumerate(sops)]
    stored, failed = _answer(client.store_instances(mine))
    assert seen and (stored, failed) == (sops, {})
    assert _numbers(client, study) == {series: [1, 2, 3, 9]}
    (row,) = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert row["00100020"]["Value"] == ["OURS"]
