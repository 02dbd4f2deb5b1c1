"""Send a stored study or series to a known AE by C-STORE (non-standard, under
``{rootPath}/webpacs/``), with its progress streamed as it happens.

``POST .../webpacs/studies/{s}/send`` (or ``.../studies/{s}/series/{x}/send``) with the
JSON body ``{"ae": "<name in the ae table>"}`` answers ``200`` with
``application/x-ndjson``: one JSON object a line, as the send goes::

    {"event": "start", "total": 3, "destination": "STORESCP@127.0.0.1:11113 (ae.pacs)"}
    {"event": "instance", "sop": "1.2...", "category": "Success", "status": 0, "message": "",
     "sent": 1, "failed": 0, "total": 3}
    ...
    {"event": "end", "sent": 3, "failed": 0, "total": 3, "error": ""}

``category`` is ``Success``, ``Warning`` (counted as sent) or ``Failure``; ``message``
says why in words (the status's PS3.4 name and the remote's comment). ``error`` is set
when the send stopped early (no association, or the remote stopped answering).

The send runs on a thread of its own: a client that goes away does not stop it, and its
outcome is logged. One request carries the whole progress, so the answer is the same
whichever worker process serves it (nothing is kept between requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from webpacs.config import Settings
from webpacs.dimse.retrieve import contexts, load
from webpacs.dimse.scu import Remote, Scu
from webpacs.errors import InvalidRequest, NotFound, WebpacsError
from webpacs.storage.base import InstanceRecord
from webpacs.storage.registry import Store
from webpacs.web.common import path_uids, settings, store, threaded
from webpacs.web.manage import body_json

log = logging.getLogger("webpacs.send")

#: The role these routes will need once access control exists: a send makes this server
#: open associations to, and write on, another system.
ROLE = "write"
NDJSON = "application/x-ndjson"


def destination(the_settings: Settings, name: object) -> Remote:
    """The ``ae`` table entry a request names, as a ``Remote`` (400 when there is none)."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest('the body names the destination: {"ae": "<name>"}')
    entry = the_settings.ae_table.get(name)
    if entry is None:
        known = ", ".join(sorted(the_settings.ae_table)) or "none configured"
        raise InvalidRequest(f"no AE named {name!r} in the ae table (known: {known})")
    return Remote.from_entry(name, entry, the_settings.dimse.tls)


def run_send(
    st: Store,
    records: list[InstanceRecord],
    calling: str,
    remote: Remote,
    timeout: float,
    emit: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """C-STORE ``records`` to ``remote``, calling ``emit`` with each event; the last one."""
    total = len(records)
    emit({"event": "start", "total": total, "destination": str(remote)})
    sent = failed = 0
    error = ""
    items = [(rec.sop_uid, lambda rec=rec: load(st.blobs, rec)) for rec in records]
    try:
        for outcome in Scu(calling, remote, timeout).store(contexts(records), items):
            if outcome.category == "Failure":
                failed += 1
                log.warning("send of %s to %s failed: %s", outcome.sop_uid, remote, outcome.message)
            else:
                sent += 1
            emit(
                {
                    "event": "instance",
                    "sop": outcome.sop_uid,
                    "category": outcome.category,
                    "status": outcome.status,
                    "message": outcome.message,
                    "sent": sent,
                    "failed": failed,
                    "total": total,
                }
            )
    except WebpacsError as exc:
        error = str(exc)
    except Exception as exc:  # the stream must end with its outcome, whatever happened
        log.exception("send to %s", remote)
        error = f"{type(exc).__name__}: {exc}"
    end = {"event": "end", "sent": sent, "failed": failed, "total": total, "error": error}
    emit(end)
    return end


async def send(request: Request) -> Response:
    study, series, _ = path_uids(request)
    assert study is not None
    the_settings = settings(request)
    remote = destination(the_settings, (await body_json(request)).get("ae"))
    st = store(request)
    records = await threaded(st.index.instances, study, series)
    if not records:
        raise NotFound(f"series {series} not found" if series else f"study {study} not found")
    what = f"series {series}" if series else f"study {study}"
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def emit(event: dict[str, Any]) -> None:
        # once the server has stopped (RuntimeError), only the log hears of the send
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(events.put_nowait, event)

    def work() -> None:
        end = run_send(
            st, records, the_settings.dimse.ae_title, remote, the_settings.dimse.dimse_timeout, emit
        )
        log.info(
            "sent %s to %s: %d of %d sent, %d failed%s",
            what,
            remote,
            end["sent"],
            end["total"],
            end["failed"],
            f" ({end['error']})" if end["error"] else "",
        )

    threading.Thread(target=work, name=f"send-{remote.name}", daemon=True).start()

    async def lines() -> AsyncIterator[bytes]:
        while True:
            event = await events.get()
            yield orjson.dumps(event) + b"\n"
            if event["event"] == "end":
                return

    return StreamingResponse(lines(), media_type=NDJSON, headers={"Cache-Control": "no-store"})


routes = [
    Route("/webpacs/studies/{study}/send", send, methods=["POST"]),
    Route("/webpacs/studies/{study}/series/{series}/send", send, methods=["POST"]),
]
