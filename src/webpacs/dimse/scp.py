"""The DIMSE SCP: a pynetdicom AE with plain handler functions bound to events.

Services (PS3.4): Verification (C-ECHO, Annex A), Storage of every storage SOP Class
in the common transfer syntaxes (C-STORE, Annex B), and Query/Retrieve in the Patient
Root and Study Root information models (C-FIND, C-MOVE, C-GET, Annex C).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    StoragePresentationContexts,
    evt,
)
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated names
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from webpacs.config import Settings
from webpacs.dimse import audit, observe
from webpacs.dimse.context import (
    ScpContext,
    exposure,
    opened_deliberately,
    restricts_calling_ae,
)
from webpacs.dimse.find import handle_find
from webpacs.dimse.retrieve import handle_get, handle_move
from webpacs.dimse.store import handle_echo, handle_store
from webpacs.dimse.tls import server_context
from webpacs.errors import ConfigError
from webpacs.storage.registry import Store, open_store

log = logging.getLogger("webpacs.dimse")

QUERY_RETRIEVE = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)


def build_ae(settings: Settings) -> AE:
    """The AE with our title, timeouts, association limit and supported contexts.

    Storage contexts accept every transfer syntax pynetdicom knows (uncompressed,
    deflate, big endian, JPEG, JPEG-LS, JPEG 2000, RLE, ...) and both roles, so that a
    C-GET SCU may propose the SCP role for them (PS3.7 D.3.3.4). When calling AEs are
    restricted (``context.restricts_calling_ae``) only the titles of the ``ae`` table
    may associate.
    """
    d = settings.dimse
    ae = AE(ae_title=d.ae_title)
    ae.maximum_associations = d.max_associations
    ae.acse_timeout = d.acse_timeout
    ae.dimse_timeout = d.dimse_timeout
    ae.network_timeout = d.network_timeout
    ae.connection_timeout = d.connection_timeout
    ae.add_supported_context(Verification)
    storage = {str(cx.abstract_syntax): None for cx in AllStoragePresentationContexts}
    storage.update({str(cx.abstract_syntax): None for cx in StoragePresentationContexts})
    for sop_class in storage:  # the current and the retired storage SOP Classes
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    for sop_class in QUERY_RETRIEVE:
        ae.add_supported_context(sop_class)
    if restricts_calling_ae(settings):
        titles = [entry.title for entry in settings.ae_table.values()]
        if not titles:
            why = "dimse.restrictCallingAe is true" if d.restrict_calling_ae else exposure(settings)
            raise ConfigError(
                f"{why}, so only AEs of the ae table may associate, and the table is empty:"
                " add the AEs that may call (ae.NAME: {title, host, port, services}), or set"
                " dimse.restrictCallingAe: false to accept any calling AE"
            )
        ae.require_calling_aet = titles
    elif opened_deliberately(settings):
        log.warning(
            "dimse.restrictCallingAe is false: any calling AE may store, query and retrieve"
            " (although %s)",
            exposure(settings),
        )
    return ae


def handlers(ctx: ScpContext) -> list[tuple[Any, ...]]:
    """The event handlers, each a plain function given ``ctx`` as its extra argument."""
    return [
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [ctx]),
        (evt.EVT_C_FIND, handle_find, [ctx]),
        (evt.EVT_C_MOVE, handle_move, [ctx]),
        (evt.EVT_C_GET, handle_get, [ctx]),
        *observe.HANDLERS,  # metrics and log lines of associations and responses
        *audit.handlers(ctx.settings.audit.path),
    ]


@dataclass
class ScpHandle:
    """A running SCP: where it listens, and how to stop it."""

    ae: AE
    server: ThreadedAssociationServer
    host: str
    port: int
    _own_store: Store | None = field(default=None, repr=False)

    def shutdown(self) -> None:
        """Stop listening, end the associations, close the store if ``start_scp`` opened it."""
        self.server.shutdown()
        self.ae.shutdown()
        if self._own_store is not None:
            self._own_store.close()
            self._own_store = None


def start_scp(settings: Settings, store: Store | None = None) -> ScpHandle:
    """Start the SCP on ``dimse.host``/``dimse.port`` in background threads.

    ``settings`` are the whole settings (the ``dimse`` view is taken here); without a
    ``store`` the one ``settings.for_service("dimse")`` names is opened, and closed by
    ``shutdown``. Port 0 picks a free port: see ``ScpHandle.port``.
    """
    view = settings.for_service("dimse")
    pynetdicom_log = logging.getLogger("pynetdicom")
    if pynetdicom_log.level == logging.NOTSET:  # per-PDU INFO lines: only when asked for
        pynetdicom_log.setLevel(logging.WARNING)
    own = open_store(view) if store is None else None
    the_store = store if store is not None else own
    assert the_store is not None
    try:
        ae = build_ae(view)
        host, port = view.get("dimse", "host"), view.get("dimse", "port")
        tls = view.dimse.tls
        server = ae.start_server(
            (host, port),
            block=False,
            evt_handlers=handlers(ScpContext(view, the_store)),
            ssl_context=server_context(tls) if tls.enabled else None,
        )
    except BaseException:
        if own is not None:
            own.close()
        raise
    assert server is not None
    actual = int(server.server_address[1])
    log.info(
        "DIMSE SCP %s listening on %s:%d%s",
        view.dimse.ae_title, host, actual, " (TLS)" if tls.enabled else "",
    )  # fmt: skip
    return ScpHandle(ae, server, host, actual, own)
