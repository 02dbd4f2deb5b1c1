"""Changing stored data over HTTP (non-standard, under ``{rootPath}/webpacs/``).

``POST .../webpacs/{target}/update`` with a JSON body ``{"set": {...}, "remove": [...],
"reason": "CORRECT", "moveTo": "<study>"}`` (``moveTo``: series only) applies
``webpacs update``; ``POST .../webpacs/studies/{study}/deidentify`` applies
``webpacs deidentify``. Targets: ``patients/{PatientID}``, ``studies/{s}``,
``studies/{s}/series/{x}``, ``studies/{s}/series/{x}/instances/{i}``. Both answer 200 with
a JSON report of what was done.

Every route here changes stored data: once access control exists they need the
``admin`` role (``ROLE``); they are kept together so that one declaration covers them.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webpacs import update_spec
from webpacs.core.attributes import Level
from webpacs.errors import InvalidRequest
from webpacs.update import update as run_update
from webpacs.web.common import path_uids, settings, store, threaded
from webpacs.web.limits import read_json

log = logging.getLogger("webpacs.manage")

#: The role every route of this module will need (DESIGN: update and de-identify of
#: stored data are ``admin``).
ROLE = "admin"


async def body_json(request: Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``), within ``server.maxJsonBytes``
    and ``server.maxJsonDepth``."""
    obj = await read_json(request, settings(request).server, "request body")
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidRequest("request body is a JSON object")
    return obj


async def update(request: Request) -> Response:
    """Apply one update to the patient, study, series or instance the path names."""
    body = await body_json(request)
    study, series, sop = path_uids(request)
    for key in update_spec.TARGETS:
        if key in body:
            raise InvalidRequest(f"the path names the target; '{key}' is not allowed")
    if "patient" in request.path_params:
        level, uid = Level.PATIENT, str(request.path_params["patient"])
    elif sop is not None:
        level, uid = Level.INSTANCE, sop
    elif series is not None:
        level, uid = Level.SERIES, series
    else:
        assert study is not None
        level, uid = Level.STUDY, study
    change = update_spec.from_json(body, level, uid, study if level is not Level.STUDY else None)
    report = await threaded(run_update, store(request), [change])
    log.info("update of %s %s: %d rewritten", level.value, uid, report.rewritten)
    return JSONResponse(report.as_json())


async def deidentify(request: Request) -> Response:
    """De-identify the study the path names: in place, or into a new study (``newStudy``)."""
    from webpacs.deid import run

    body = await body_json(request)
    study, _, _ = path_uids(request)
    assert study is not None
    unknown = set(body) - {"profile", "newStudy", "force", "patientId"}
    if unknown:
        raise InvalidRequest(f"unknown keys {', '.join(sorted(unknown))}")
    profile = body.get("profile") or []
    if isinstance(profile, str):
        profile = [profile]
    if not isinstance(profile, list) or not all(isinstance(p, str) for p in profile):
        raise InvalidRequest("'profile' is a list of option names")
    patient_id = body.get("patientId")
    if patient_id is not None and not isinstance(patient_id, str):
        raise InvalidRequest("'patientId' is a string")
    result = await threaded(
        run.into_store,
        store(request),
        study,
        profile,
        in_place=not body.get("newStudy"),
        force=bool(body.get("force")),
        patient_id=patient_id,
    )
    log.info("de-identified study %s: %d instance(s)", study, result.instances)
    return JSONResponse(result.as_json())


routes = [
    Route("/webpacs/studies/{study}/deidentify", deidentify, methods=["POST"]),
    Route("/webpacs/patients/{patient}/update", update, methods=["POST"]),
    Route("/webpacs/studies/{study}/update", update, methods=["POST"]),
    Route("/webpacs/studies/{study}/series/{series}/update", update, methods=["POST"]),
    Route(
        "/webpacs/studies/{study}/series/{series}/instances/{instance}/update",
        update,
        methods=["POST"],
    ),
]
