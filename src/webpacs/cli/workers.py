"""Several server processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's own ``--workers`` shares one listening socket between its processes, and
asyncio accepts every pending connection in one go: the first worker to wake takes all of
a viewer's parallel connections (a browser opens about six at once), and the other
workers stay idle. With a socket per process bound with ``SO_REUSEPORT``, the kernel
spreads new connections over the processes instead. Linux only; elsewhere ``serve``
keeps uvicorn's workers.

The supervisor (this process) checks that the port is free, starts the workers, stops
them all on SIGINT/SIGTERM, and stops the rest (exit status 1) when one dies. Each worker
configures logging as the supervisor did (spawned processes inherit no handler), and
``shared_metrics`` gives them one ``PROMETHEUS_MULTIPROC_DIR`` (``webpacs.metrics``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn

from webpacs.cli import logs
from webpacs.config import TlsSettings
from webpacs.metrics import MULTIPROC_ENV

log = logging.getLogger("webpacs.serve")

#: The ASGI application factory every worker serves.
APP = "webpacs.web.factory:app"
BACKLOG = 2048


def tls_options(tls: TlsSettings) -> dict[str, Any]:
    """uvicorn's TLS options for ``server.tls`` (none without a certificate): HTTPS only,
    client certificates checked against ``ca`` when given, required with
    ``requireClientCert``."""
    if not tls.enabled:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": os.path.expanduser(tls.cert),
        "ssl_keyfile": os.path.expanduser(tls.key),
    }
    if tls.ca:
        options["ssl_ca_certs"] = os.path.expanduser(tls.ca)
        options["ssl_cert_reqs"] = (
            ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
        )
    return options


def scheme(tls: TlsSettings) -> str:
    """``https`` when ``tls`` has a certificate, else ``http``."""
    return "https" if tls.enabled else "http"


def supported() -> bool:
    """Whether the kernel spreads connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def cannot_listen(host: str, port: int, what: str, error: OSError) -> str:
    """The one-line message of a port that cannot be listened on (HTTP or DIMSE)."""
    return f"cannot listen on {host}:{port} ({what}): {error.strerror or error}"


def check_free(host: str, port: int, what: str = "HTTP") -> None:
    """Exit (status 1, one line) when ``port`` cannot be listened on; port 0 always can."""
    if port == 0:
        return
    try:  # a plain bind fails if anything holds the port, even another SO_REUSEPORT group
        _bind(host, port, reuse_port=False).close()
    except OSError as e:
        raise SystemExit(cannot_listen(host, port, what, e)) from None


@contextlib.contextmanager
def shared_metrics() -> Iterator[None]:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for this process and the workers it starts
    (removed afterwards); an operator's own setting of it is kept as it is."""
    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="webpacs-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _worker(host: str, port: int, options: dict[str, Any], logging_setup: tuple[int, str]) -> None:
    logs.configure(*logging_setup)
    sock = _bind(host, port, reuse_port=True)
    sock.listen(BACKLOG)
    config = uvicorn.Config(APP, factory=True, host=host, port=port, backlog=BACKLOG, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run(
    host: str,
    port: int,
    workers: int,
    options: dict[str, Any],
    logging_setup: tuple[int, str] = (0, "text"),
) -> None:
    """Serve with ``workers`` processes; returns when they are stopped (SystemExit(1) if
    one died on its own). ``logging_setup`` is ``logs.configure``'s (verbosity, format)."""
    if port == 0:
        raise SystemExit("port 0 (any free port) needs a single worker: set --port or --workers 1")
    check_free(host, port)
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(workers):
            procs.append(ctx.Process(target=_worker, args=(host, port, options, logging_setup)))
            procs[-1].start()
        log.debug("%d worker processes on %s:%d (SO_REUSEPORT)", workers, host, port)
        while not stopping:
            for proc in procs:
                if not proc.is_alive():
                    log.error("worker %s exited (status %s); stopping", proc.pid, proc.exitcode)
                    raise SystemExit(1)
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)  # uvicorn finishes in-flight requests
        deadline = time.monotonic() + 30
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
