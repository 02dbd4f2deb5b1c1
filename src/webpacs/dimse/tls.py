"""TLS for DIMSE (PS3.15 B.1 and B.9, secure transport connection profiles): the contexts
the SCP listens with and that associations to ``ae`` entries with ``tls: true`` use.

Both follow BCP 195 as dcmtk's default profile does: TLS 1.2 or later, the ``ssl``
module's default cipher suites, certificate checks on. The SCP checks client
certificates against ``dimse.tls.ca`` when one is given (required with
``requireClientCert``); an outgoing association checks the remote's certificate against
``dimse.tls.ca`` (the system's CAs when empty) and its host name, and shows our
certificate when there is one.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any

from webpacs.config import TlsSettings
from webpacs.errors import ConfigError


def _path(value: str) -> str:
    return os.path.expanduser(value)


def _load(ctx: ssl.SSLContext, tls: TlsSettings, where: str, *, ca: bool = True) -> None:
    try:
        if tls.cert:
            ctx.load_cert_chain(_path(tls.cert), _path(tls.key))
        if tls.ca and ca:
            ctx.load_verify_locations(cafile=_path(tls.ca))
    except (OSError, ssl.SSLError) as e:  # ssl.SSLError: not PEM, key and cert differ
        raise ConfigError(f"{where}: cannot load the certificate, key or CA: {e}") from e


class _ClosingSocket(ssl.SSLSocket):
    """A TLS socket that is closed even when its shutdown fails.

    pynetdicom closes a socket with ``shutdown()`` then ``close()`` and skips the close
    when the shutdown raises, as it does after a failed handshake (a plain DICOM
    client on the TLS port, a peer that refuses our certificate): the socket would
    stay open until garbage collected.
    """

    def shutdown(self, how: int) -> None:
        try:
            super().shutdown(how)
        except OSError:
            self.close()
            raise


class _ServerContext(ssl.SSLContext):
    """A server context whose handshake happens in the association's thread.

    pynetdicom wraps each accepted socket in its accept loop; with the default
    ``do_handshake_on_connect`` a client that connects and says nothing (or speaks
    plain DICOM to the TLS port) would hold that loop, and every other caller, until
    it gives up. Deferred, the handshake runs on the first read of the association.
    """

    sslsocket_class = _ClosingSocket

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def server_context(tls: TlsSettings, where: str = "dimse.tls") -> ssl.SSLContext:
    """The context the SCP wraps accepted connections with (``ConfigError`` if unusable)."""
    ctx = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, tls, where)
    if tls.require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif tls.ca:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(tls: TlsSettings, where: str = "dimse.tls") -> ssl.SSLContext:
    """The context of an association webpacs opens to an AE with ``tls: true``."""
    try:  # host name and chain checked; against ``ca`` only when given
        ctx = ssl.create_default_context(cafile=_path(tls.ca) if tls.ca else None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"{where}.ca: cannot load {tls.ca!r}: {e}") from e
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslsocket_class = _ClosingSocket
    _load(ctx, tls, where, ca=False)
    return ctx
