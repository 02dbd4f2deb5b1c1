"""Typed errors raised by core, storage and ingest.

They are translated to HTTP statuses only in ``webpacs.web.errors`` and to DIMSE
statuses (STOW-RS and DIMSE) only in ``webpacs.core.status``::

    WebpacsError
    ├── InvalidRequest          bad query value, bad UID, malformed body   (HTTP 400)
    │   ├── InvalidDicom        not a storable DICOM object                  (STOW/DIMSE C000)
    │   └── WrongStudy          instance of another study than the URL's     (STOW C409)
    ├── NotFound                unknown study/series/instance/frame          (HTTP 404)
    ├── Conflict                same SOP Instance UID, different content     (HTTP 409)
    ├── NotAcceptable           no acceptable representation                 (HTTP 406)
    ├── UnsupportedMediaType    request body of a type we do not take         (HTTP 415)
    ├── PayloadTooLarge         request body (or a part, a JSON body) over a limit (HTTP 413)
    ├── RequestTimeout          a client too slow sending its headers or body  (HTTP 408)
    ├── UriTooLong              request line or query string over a limit     (HTTP 414)
    ├── HeadersTooLarge         request headers over ``server.maxHeaderBytes`` (HTTP 431)
    ├── Forbidden               operation switched off in configuration       (HTTP 403)
    │   └── NotAllowed          the caller's role does not include the route's  (HTTP 403)
    ├── Unauthorized            no, or no valid, credentials (auth.mode)      (HTTP 401)
    ├── NotImplementedFeature   a feature this version does not provide       (HTTP 501)
    ├── ConfigError             bad configuration (file and key named)
    ├── StorageError            a backend failed (disk, database, network)    (HTTP 503)
    └── UpstreamError           a remote PACS refused or failed               (HTTP 502)
        └── UpstreamTimeout     a remote PACS did not answer in time          (HTTP 504)
"""

from __future__ import annotations


class WebpacsError(Exception):
    """Base class of every error webpacs raises on purpose.

    ``details`` carries what a response may need besides the message (e.g. the SOP
    Class and Instance UIDs of a refused instance).
    """

    def __init__(self, message: str = "", **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(WebpacsError):
    """The request (a query parameter, a UID, a body) is malformed."""


class InvalidDicom(InvalidRequest):
    """The bytes are not a DICOM instance webpacs can store."""


class WrongStudy(InvalidRequest):
    """An instance sent to ``/studies/{study}`` belongs to another study."""


class NotFound(WebpacsError):
    """The resource does not exist."""


class Conflict(WebpacsError):
    """The resource exists with different content."""


class NotAcceptable(WebpacsError):
    """None of the representations the client accepts can be produced."""


class UnsupportedMediaType(WebpacsError):
    """The request body's media type is not supported."""


class PayloadTooLarge(WebpacsError):
    """The request body exceeds the configured size limit."""


class RequestTimeout(WebpacsError):
    """The client did not send its request headers, or the next piece of its body, in time
    (``server.headerTimeout``, ``server.bodyTimeout``)."""


class UriTooLong(WebpacsError):
    """The request line or the query string exceeds its limit (``server.maxQueryBytes``,
    ``server.maxHeaderBytes``)."""


class HeadersTooLarge(WebpacsError):
    """The request line and headers exceed ``server.maxHeaderBytes``."""


class Forbidden(WebpacsError):
    """The operation is disabled by configuration."""


class NotAllowed(Forbidden):
    """The caller is known, but its role does not include the one the route needs."""


class Unauthorized(WebpacsError):
    """No credentials, or credentials that do not check out (``details["challenge"]`` is the
    ``WWW-Authenticate`` value)."""


class NotImplementedFeature(WebpacsError):
    """The feature exists in the standard but not (yet) in webpacs."""


class ConfigError(WebpacsError):
    """The configuration is invalid; the message names the file and key."""


class StorageError(WebpacsError):
    """A storage backend failed."""


class ObjectMissing(StorageError):
    """The index names an instance whose stored object is not in the blob store (yet):
    replication of the index ran ahead of the bucket's, or the object was lost."""


class UpstreamError(WebpacsError):
    """A remote PACS (``queryAe``/``proxyAe``) refused or failed a request.

    ``status`` is the remote's DIMSE status (PS3.7 Annex C) when it sent one, else None
    (no association, aborted association).
    """

    def __init__(self, message: str = "", *, status: int | None = None, **details: object) -> None:
        super().__init__(message, status=status, **details)
        self.status = status


class UpstreamTimeout(UpstreamError):
    """A remote PACS did not answer within ``proxy.timeout``."""
