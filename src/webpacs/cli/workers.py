"""Several server processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's own ``--workers`` shares one listening socket between its processes, and
asyncio accepts every pending connection in one go: the first worker to wake takes all of
a viewer's parallel connections (a browser opens about six at once), and the other
workers stay idle. With a socket per process bound with ``SO_REUSEPORT``, the kernel
spreads new connections over the processes instead. Linux only; elsewhere ``serve``
keeps uvicorn's workers.

The supervisor (this process) checks that the port is free, starts the workers, stops
them all on SIGINT/SIGTERM, and stops the rest (exit status 1) when one dies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("webpacs.serve")

#: The ASGI application factory every worker serves.
APP = "webpacs.web.factory:app"
BACKLOG = 2048


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


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    sock = _bind(host, port, reuse_port=True)
    sock.listen(BACKLOG)
    config = uvicorn.Config(APP, factory=True, host=host, port=port, backlog=BACKLOG, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run(host: str, port: int, workers: int, options: dict[str, Any]) -> None:
    """Serve with ``workers`` processes; returns when they are stopped (SystemExit(1) if
    one died on its own)."""
    if port == 0:
        raise SystemExit("port 0 (any free port) needs a single worker: set --port or --workers 1")
    try:  # a plain bind fails if anything holds the port, even another SO_REUSEPORT group
        _bind(host, port, reuse_port=False).close()
    except OSError as e:
        raise SystemExit(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(workers):
            procs.append(ctx.Process(target=_worker, args=(host, port, options)))
            procs[-1].start()
        log.info("%d worker processes on %s:%d (SO_REUSEPORT)", workers, host, port)
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
