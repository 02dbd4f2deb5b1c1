"""The operator's endpoints at the origin root: ``/healthz``, ``/readyz`` and ``/metrics``.

* ``GET /healthz``: 200 while the process answers HTTP at all (a liveness probe: nothing
  else is asked, so a slow database does not get the process restarted).
* ``GET /readyz``: 200 when one cheap call to the index (a lookup by a UID nothing has) and
  one to the blob store (an existence check; for local files, also that their directory is
  there) succeed within ``TIMEOUT`` seconds; otherwise 503 with the reasons. A readiness
  probe: a load balancer sends no traffic to a process whose store it cannot reach.
* ``GET /metrics``: Prometheus' text format (``webpacs.metrics``), every worker process
  included, and the store's totals.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webpacs import __version__, metrics
from webpacs.errors import StorageError
from webpacs.storage.base import Blobs, Index
from webpacs.web.common import store, threaded

log = logging.getLogger("webpacs.web")

#: Seconds each readiness call may take.
TIMEOUT = 5.0
#: What ``/readyz`` asks for: a UID and a blob key that nothing stores.
PROBE_UID = "2.25.0"
PROBE_KEY = "readyz-probe"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


def _index_ready(index: Index) -> None:
    index.get(PROBE_UID)


def _blobs_ready(blobs: Blobs) -> None:
    blobs.exists(PROBE_KEY)
    local = blobs.local_path(PROBE_KEY)
    if local is not None and not os.path.isdir(os.path.dirname(local)):
        raise StorageError(f"the directory {os.path.dirname(local)} is missing")


async def _check(name: str, fn: Callable[[Any], None], arg: Any) -> str | None:
    try:
        await asyncio.wait_for(threaded(fn, arg), TIMEOUT)
    except TimeoutError:
        return f"{name}: no answer within {TIMEOUT:g} s"
    except Exception as e:  # any failure of a backend is a reason not to be ready
        return f"{name}: {e}"
    return None


async def readyz(request: Request) -> Response:
    st = store(request)
    reasons = [
        r
        for r in await asyncio.gather(
            _check("index", _index_ready, st.index), _check("blobs", _blobs_ready, st.blobs)
        )
        if r
    ]
    if reasons:
        log.warning("not ready: %s", "; ".join(reasons))
        return JSONResponse({"status": "unavailable", "reasons": reasons}, 503)
    return JSONResponse({"status": "ready"})


async def metrics_endpoint(request: Request) -> Response:
    index = store(request).index

    def totals() -> dict[str, int | None]:
        try:
            return index.totals()
        except Exception as e:  # the other metrics are still worth answering
            log.warning("store totals for /metrics: %s", e)
            return {}

    body, content_type = await threaded(metrics.exposition, totals)
    return Response(body, media_type=content_type)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
