"""DIMSE lines of the audit log (``audit.path``): C-STORE and C-FIND from pynetdicom as SCU."""

from __future__ import annotations

from pathlib import Path

import orjson
import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind

from tests.conftest import data_file
from webpacs.config import isolated
from webpacs.dimse import start_scp
from webpacs.storage.registry import open_store


def test_store_and_find_are_audited(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    settings = isolated({"dataDir": str(tmp_path / "d"), "dimse": {"port": 0},
                         "audit": {"path": str(audit)}})  # fmt: skip
    store = open_store(settings)
    handle = start_scp(settings, store)
    try:
        ds = pydicom.dcmread(data_file("CT_small.dcm"))
        ae = AE(ae_title="AUDITME")
        ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate("127.0.0.1", handle.port, ae_title=settings.dimse.ae_title)
        assert assoc.is_established
        assert assoc.send_c_store(ds).Status == 0
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        found = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
        assert len(found) == 2  # one match, then the final Success
        assoc.release()
    finally:
        handle.shutdown()
        store.close()
    lines = [orjson.loads(x) for x in audit.read_bytes().splitlines()]
    assert [(x["who"], x["what"], x["status"]) for x in lines] == [
        ("AUDITME", "C-STORE", "0x0000"),
        ("AUDITME", "C-FIND", "0x0000"),
    ]
    assert lines[0]["uids"] == {"instance": ds.SOPInstanceUID}
    assert lines[0]["from"] == "127.0.0.1"
