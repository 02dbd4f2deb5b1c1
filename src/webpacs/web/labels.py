"""Labels on studies and series (non-standard; README "Research queries").

``PUT`` answers 201 when the label is new and 204 when it was already there; ``DELETE``
204 (whether or not it was there); ``GET`` on ``.../labels`` the labels as a JSON array.
An unknown study or series is 404, a label that is not 1-64 letters, digits, ``-``, ``_``
or ``.`` is 400. Labels are queryable with ``webpacsLabel`` and listed in QIDO rows with
``includefield=webpacsLabels``; each change is a ``label`` change on the change feed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webpacs.core.research import check_label
from webpacs.web.common import path_uids, store, threaded


def _target(request: Request) -> tuple[str, str | None]:
    study, series, _ = path_uids(request)
    assert study is not None  # every route's path has {study}
    return study, series


async def put_label(request: Request) -> Response:
    label = check_label(request.path_params["label"])
    study, series = _target(request)
    created = await threaded(store(request).index.add_label, study, series, label)
    return Response(status_code=201 if created else 204)


async def delete_label(request: Request) -> Response:
    label = check_label(request.path_params["label"])
    study, series = _target(request)
    await threaded(store(request).index.remove_label, study, series, label)
    return Response(status_code=204)


async def list_labels(request: Request) -> Response:
    study, series = _target(request)
    return JSONResponse(await threaded(store(request).index.labels, study, series))


_STUDY = "/webpacs/studies/{study}"
_SERIES = "/webpacs/studies/{study}/series/{series}"
routes = [
    Route(f"{_STUDY}/labels", list_labels, methods=["GET"]),
    Route(f"{_STUDY}/labels/{{label}}", put_label, methods=["PUT"]),
    Route(f"{_STUDY}/labels/{{label}}", delete_label, methods=["DELETE"]),
    Route(f"{_SERIES}/labels", list_labels, methods=["GET"]),
    Route(f"{_SERIES}/labels/{{label}}", put_label, methods=["PUT"]),
    Route(f"{_SERIES}/labels/{{label}}", delete_label, methods=["DELETE"]),
]
