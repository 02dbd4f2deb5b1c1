"""DIMSE SCU: C-FIND, C-MOVE, C-GET and C-STORE to a remote AE (PS3.4 C.4.1, C.4.2, C.4.3, B.2).

Used by the proxy (``webpacs.proxy``) to query and retrieve from the ``queryAe`` and
``proxyAe`` of the configuration, always in the Study Root information model, and by
the study browser's send (``webpacs.web.send``) to store instances on an AE.
What goes wrong on the remote side becomes a typed error here, at the boundary:

* no association (connection refused, association rejected or aborted), a failure or
  cancel status, a C-MOVE/C-GET whose sub-operations all failed: ``UpstreamError``,
  with the remote's DIMSE status (``status``) when there was one, named as PS3.4 names
  it (for example ``0xA801 Move destination unknown``);
* no answer within the timeout (connection, association, or a DIMSE message):
  ``UpstreamTimeout``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated names
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import (
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    QR_MOVE_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
    code_to_category,
)

from webpacs.config import AeEntry, TlsSettings
from webpacs.dimse.status import (
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    Service,
    failure,
    status_dataset,
    status_for,
)
from webpacs.dimse.tls import client_context
from webpacs.errors import UpstreamError, UpstreamTimeout

log = logging.getLogger("webpacs.scu")

_NAMES = {
    Service.FIND: QR_FIND_SERVICE_CLASS_STATUS,
    Service.MOVE: QR_MOVE_SERVICE_CLASS_STATUS,
    Service.GET: QR_GET_SERVICE_CLASS_STATUS,
    Service.STORE: STORAGE_SERVICE_CLASS_STATUS,
}


def describe(service: Service, status: int) -> str:
    """``0xA801 Move destination unknown``: a status and its PS3.4 meaning."""
    category, text = _NAMES[service].get(status, ("", ""))
    return f"0x{status:04X} {text or category or 'unknown status'}".rstrip()


@dataclass(frozen=True)
class Remote:
    """A remote AE: title and address (an entry of the ``ae`` table), and the TLS settings
    associations to it use (``dimse.tls``; None: plain TCP)."""

    name: str
    title: str
    host: str
    port: int
    tls: TlsSettings | None = None

    @classmethod
    def from_entry(cls, name: str, entry: AeEntry, tls: TlsSettings) -> Remote:
        """The entry as a ``Remote``; ``tls`` (``dimse.tls``) is used if ``entry.tls``."""
        return cls(name, entry.title, entry.host, entry.port, tls if entry.tls else None)

    def tls_args(self) -> dict[str, Any]:
        """The ``AE.associate`` arguments for TLS to this AE (none for plain TCP)."""
        if self.tls is None:
            return {}
        return {"tls_args": (client_context(self.tls), self.host)}

    def __str__(self) -> str:
        tls = ", TLS" if self.tls is not None else ""
        return f"{self.title}@{self.host}:{self.port} (ae.{self.name}{tls})"


@dataclass
class RetrieveResult:
    """The final counts of a C-MOVE or C-GET (PS3.4 C.4.2.1.6, C.4.3.1.5)."""

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0


@dataclass(frozen=True)
class Stored:
    """The outcome of one C-STORE: ``status`` 0 (success), a warning, or a failure, with
    what went wrong in words (the status's PS3.4 name and the remote's comment)."""

    sop_uid: str
    status: int
    message: str = ""

    @property
    def category(self) -> str:
        """``Success``, ``Warning`` or ``Failure`` (pynetdicom's categories)."""
        category = code_to_category(self.status)
        return category if category in ("Success", "Warning") else "Failure"


#: Receives each instance of a C-GET as a Part 10 object; raises to refuse it.
InstanceHandler = Callable[[bytes], None]


class Scu:
    """Associations from ``calling`` (our AE title) to one remote AE.

    ``timeout`` bounds the TCP connection, the association negotiation and the wait for
    each DIMSE message (pynetdicom's connection, ACSE and DIMSE timeouts).
    """

    def __init__(self, calling: str, remote: Remote, timeout: float) -> None:
        self.calling = calling
        self.remote = remote
        self.timeout = timeout

    def _ae(self) -> AE:
        ae = AE(ae_title=self.calling)
        ae.connection_timeout = self.timeout
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        return ae

    @contextlib.contextmanager
    def _association(
        self, ae: AE, service: Service, **kwargs: Any
    ) -> Iterator[tuple[Association, float]]:
        start = time.monotonic()
        kwargs.update(self.remote.tls_args())
        assoc = ae.associate(
            self.remote.host, self.remote.port, ae_title=self.remote.title, **kwargs
        )
        if not assoc.is_established:
            elapsed = time.monotonic() - start
            if assoc.is_rejected:
                raise UpstreamError(f"{service.value}: {self.remote} rejected the association")
            if elapsed >= self.timeout * 0.9:
                raise UpstreamTimeout(
                    f"{service.value}: {self.remote} did not answer within {self.timeout:g} s"
                )
            raise UpstreamError(
                f"{service.value}: cannot associate with {self.remote}"
                " (connection refused or aborted)"
            )
        try:
            yield assoc, time.monotonic()
        finally:
            if assoc.is_established:
                assoc.release()

    def _no_status(self, service: Service, since: float) -> UpstreamError:
        """The error for a response without status: pynetdicom's sign of timeout or abort."""
        if time.monotonic() - since >= self.timeout * 0.9:
            return UpstreamTimeout(
                f"{service.value}: {self.remote} sent no response within {self.timeout:g} s"
            )
        return UpstreamError(f"{service.value}: {self.remote} aborted the association")

    def _failed(self, service: Service, status: Dataset) -> UpstreamError:
        code = int(status.Status)
        comment = str(status.get("ErrorComment", "") or "").strip()
        message = f"{service.value} refused by {self.remote}: {describe(service, code)}"
        return UpstreamError(message + (f" ({comment})" if comment else ""), status=code)

    def find(self, identifiers: list[Dataset]) -> list[list[Dataset]]:
        """C-FIND (PS3.4 C.4.1) of each identifier on one association; matches per identifier.

        Identifiers carry their *Query/Retrieve Level*; a *Pending* response (FF00 or
        FF01) is a match, *Success* ends the list, anything else is ``UpstreamError``.
        """
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        out: list[list[Dataset]] = []
        with self._association(ae, Service.FIND) as (assoc, _):
            for identifier in identifiers:
                matches: list[Dataset] = []
                since = time.monotonic()
                for status, found in assoc.send_c_find(
                    identifier, StudyRootQueryRetrieveInformationModelFind
                ):
                    if "Status" not in status:
                        raise self._no_status(Service.FIND, since)
                    category = code_to_category(int(status.Status))
                    if category == "Pending":
                        if found is not None:
                            matches.append(found)
                        since = time.monotonic()
                    elif category != "Success":
                        raise self._failed(Service.FIND, status)
                out.append(matches)
        return out

    def _retrieve(
        self, service: Service, responses: Iterator[tuple[Dataset, Any]]
    ) -> RetrieveResult:
        since = time.monotonic()
        last = Dataset()
        for status, _ in responses:
            if "Status" not in status:
                raise self._no_status(service, since)
            since = time.monotonic()
            last = status
        if "Status" not in last:
            raise self._no_status(service, since)
        code = int(last.Status)
        result = RetrieveResult(
            code,
            int(last.get("NumberOfCompletedSuboperations", 0) or 0),
            int(last.get("NumberOfFailedSuboperations", 0) or 0),
            int(last.get("NumberOfWarningSuboperations", 0) or 0),
        )
        category = code_to_category(code)
        if category == "Warning" and result.completed + result.warning == 0:
            raise self._failed(service, last)
        if category not in ("Success", "Warning"):
            raise self._failed(service, last)
        if category == "Warning":
            log.warning(
                "%s from %s: %s, %d completed, %d failed",
                service.value,
                self.remote,
                describe(service, code),
                result.completed,
                result.failed,
            )
        return result

    def move(self, identifier: Dataset, destination: str) -> RetrieveResult:
        """C-MOVE (PS3.4 C.4.2) of ``identifier`` to the AE titled ``destination``.

        The remote opens its own association to ``destination`` and C-STOREs the
        instances there; it must know that AE title's address.
        """
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        with self._association(ae, Service.MOVE) as (assoc, _):
            return self._retrieve(
                Service.MOVE,
                assoc.send_c_move(
                    identifier, destination, StudyRootQueryRetrieveInformationModelMove
                ),
            )

    def get(self, identifier: Dataset, on_instance: InstanceHandler) -> RetrieveResult:
        """C-GET (PS3.4 C.4.3): the remote C-STOREs the instances on our association.

        We propose the Get model and the common storage SOP Classes with every transfer
        syntax pynetdicom knows, and the SCP role for them (PS3.7 D.3.3.4); the remote
        picks one transfer syntax per SOP Class. ``on_instance`` gets each instance as
        a Part 10 object; what it raises becomes the C-STORE failure status.
        """
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        for cx in StoragePresentationContexts[:120]:  # at most 128 contexts (PS3.8 9.3.2.2)
            assert cx.abstract_syntax is not None
            ae.add_requested_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
            roles.append(build_role(cx.abstract_syntax, scp_role=True))

        def handle_store(event: Any) -> Dataset:
            try:
                on_instance(event.encoded_dataset(include_meta=True))
            except Exception as exc:  # handler exceptions never escape (status.py)
                return failure(Service.STORE, exc)
            return status_dataset(SUCCESS)

        with self._association(
            ae, Service.GET, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handle_store)]
        ) as (assoc, _):
            return self._retrieve(
                Service.GET,
                assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet),
            )

    def store(
        self,
        contexts: list[PresentationContext],
        items: Iterable[tuple[str, Callable[[], Dataset]]],
    ) -> Iterator[Stored]:
        """C-STORE (PS3.4 B.2) each item, ``(SOP Instance UID, load)``, on one association
        proposing ``contexts``; yields each outcome as it comes.

        An instance that cannot be loaded, or whose SOP Class and transfer syntax the
        remote did not accept, is a failure of its own and the others go on; no
        association, or a remote that stops answering, is ``UpstreamError``.
        """
        ae = self._ae()
        ae.requested_contexts = contexts
        with self._association(ae, Service.STORE) as (assoc, _):
            for sop, load in items:
                try:
                    ds = load()
                except Exception as exc:  # one instance, not the whole send
                    yield Stored(sop, status_for(Service.STORE, exc), str(exc))
                    continue
                since = time.monotonic()
                try:
                    status = assoc.send_c_store(ds)
                except ValueError as exc:  # no accepted presentation context for it
                    yield Stored(sop, SOP_CLASS_NOT_SUPPORTED, f"{self.remote} refused it ({exc})")
                    continue
                if "Status" not in status:
                    raise self._no_status(Service.STORE, since)
                code = int(status.Status)
                comment = str(status.get("ErrorComment", "") or "").strip()
                text = describe(Service.STORE, code) if code else ""
                yield Stored(sop, code, text + (f" ({comment})" if comment else ""))
