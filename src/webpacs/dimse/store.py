"""C-ECHO and C-STORE SCP handlers (PS3.4 Annex A and Annex B).

C-STORE hands the data set to ``ingest`` exactly as the peer encoded it: the Part 10
object is the File Meta Information pynetdicom builds from the request and the
presentation context (``event.file_meta``) followed by the raw data set bytes, never a
re-encoding, so what is stored is what the SCU sent.
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from webpacs.dimse.context import ScpContext
from webpacs.dimse.status import (
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    WARNING_SOP_CLASS_MISMATCH,
    Service,
    failure,
    status_dataset,
)
from webpacs.errors import NotImplementedFeature
from webpacs.ingest import ingest

log = logging.getLogger("webpacs.dimse")


def handle_echo(event: Any) -> int:
    """C-ECHO (PS3.4 A.4, Verification Service Class): always *Success*."""
    log.info("C-ECHO from %s", event.assoc.requestor.ae_title)
    return SUCCESS


def is_storage_class(uid: str) -> bool:
    """Whether ``uid`` is a SOP Class of the Storage Service Class (PS3.4 B.5)."""
    return issubclass(uid_to_service_class(uid), StorageServiceClass)


def handle_store(event: Any, ctx: ScpContext) -> Dataset:
    """C-STORE (PS3.4 B.2.3): store the data set through ``ingest``.

    *Success* also when the same instance is already stored with the same content;
    0111 when it is stored with other content and the conflict policy is ``reject``;
    B007 (warning) when the data set's SOP Class differs from the request's; 0122 for
    a SOP Class that is not a storage class; otherwise the statuses of ``status.py``.
    """
    try:
        ctx.allow(event, "store")
        request = event.request
        sop_class = str(request.AffectedSOPClassUID)
        if not is_storage_class(sop_class):
            raise NotImplementedFeature(f"{sop_class} is not a storage SOP class")
        data = event.encoded_dataset(include_meta=True)
        st = ctx.store
        result = ingest(
            st.index,
            st.blobs,
            data,
            overwrite=st.overwrite,
            bulk_threshold=st.bulk_threshold,
            recompress=st.recompress,
        )
    except Exception as exc:  # handler exceptions never escape (status.py)
        ds = failure(Service.STORE, exc)
        if ds.Status == SOP_CLASS_NOT_SUPPORTED:
            log.warning("C-STORE refused: %s", ds.get("ErrorComment", ""))
        return ds
    log.info(
        "C-STORE %s from %s: %s", result.sop_uid, event.assoc.requestor.ae_title, result.outcome
    )
    if result.sop_class_uid != sop_class:
        return status_dataset(
            WARNING_SOP_CLASS_MISMATCH,
            f"stored; SOP Class is {result.sop_class_uid}",
        )
    return status_dataset(SUCCESS)
