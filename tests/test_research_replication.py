"""The reference graph and labels replicate with the CouchDB database they live in: two
sites, each on its own database, one-shot ``_replicate`` runs between them."""

from __future__ import annotations

from typing import Any

import httpx
from dicomweb_client.api import DICOMwebClient

from tests.conftest import RunningServer
from tests.derived_objects import derived
from tests.test_scaleout import _replicate, two_sites  # noqa: F401 (a fixture)


def test_references_and_labels_replicate(
    couchdb_url: str,
    two_sites: tuple[RunningServer, RunningServer, tuple[str, str]],  # noqa: F811
) -> None:
    a, b, (da, db) = two_sites

    def sync() -> None:
        _replicate(couchdb_url, da, db, continuous=False)
        _replicate(couchdb_url, db, da, continuous=False)

    d = derived(2)
    DICOMwebClient(a.url).store_instances([*d.images, d.seg])
    labels_a = f"{a.url}/webpacs/studies/{d.study}/labels"
    assert httpx.put(f"{labels_a}/to-review", timeout=30).status_code == 201
    sync()
    client_b = DICOMwebClient(b.url)
    segs = client_b.search_for_instances(
        search_filters={"webpacsReferences": d.series, "Modality": "SEG"}
    )
    assert [r["00080018"]["Value"][0] for r in segs] == [str(d.seg.SOPInstanceUID)]
    labelled: list[dict[str, Any]] = client_b.search_for_studies(
        search_filters={"webpacsLabel": "to-review"}, fields=["webpacsLabels"]
    )
    assert [(r["0020000D"]["Value"][0], r["webpacsLabels"]) for r in labelled] == [
        (d.study, ["to-review"])
    ]
    # taken off on the other site: gone on both after the next run, a change on both feeds
    labels_b = f"{b.url}/webpacs/studies/{d.study}/labels"
    assert httpx.delete(f"{labels_b}/to-review", timeout=30).status_code == 204
    sync()
    assert httpx.get(labels_a, timeout=30).json() == []
    for site in (a, b):
        assert site.store.index.changes()[-1].op == "label"
