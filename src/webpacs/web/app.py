"""The ASGI application: DICOMweb routes mounted under ``server.rootPath``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from webpacs import __version__
from webpacs.audit import AuditLog
from webpacs.auth import Authenticator, cors_origins
from webpacs.config import Settings
from webpacs.documents.deriver import Deriver
from webpacs.errors import WebpacsError
from webpacs.proxy import Proxy
from webpacs.storage.registry import Store, open_store
from webpacs.web import (
    access,
    browser,
    capabilities,
    delete,
    manage,
    openapi,
    ops,
    qido,
    remote,
    rendered,
    send,
    stow,
    thumbnail,
    viewer,
    wado,
    wadouri,
)
from webpacs.web.audit import Audit
from webpacs.web.common import path_uids, settings, store, threaded
from webpacs.web.errors import handle_unexpected, handle_webpacs_error
from webpacs.web.labels import routes as label_routes
from webpacs.web.limits import Limits
from webpacs.web.observe import Observe

log = logging.getLogger("webpacs.web")


async def conflicts(request: Request) -> Response:
    """Patient/study attributes that disagreed between instances of a study (non-standard)."""
    study, _, _ = path_uids(request)
    assert study is not None  # the route's path has {study}
    rows = await threaded(store(request).index.study_conflicts, study)
    return JSONResponse(rows)


async def home(request: Request) -> Response:
    root = settings(request).server.root_path
    return JSONResponse({"name": "webpacs", "version": __version__, "dicomweb": root})


def create_app(settings: Settings, st: Store | None = None) -> Starlette:
    """Build the app; opens the configured store unless one is given."""
    own = st is None
    the_store = st if st is not None else open_store(settings.for_service("server"))
    proxy = Proxy.from_settings(settings, the_store)

    interval = settings.server.derive_interval
    deriver = None
    if interval:
        # one deriver per data directory rebuilds, whatever the number of server processes
        lock = settings.data_dir / "deriver.lock" if settings.data_dir.is_dir() else None
        deriver = Deriver(the_store.index, the_store.blobs, interval=interval, lock_path=lock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if deriver is not None:
            deriver.start()
        yield
        if deriver is not None:
            deriver.stop()
        if proxy is not None:
            proxy.close()
        if own:
            the_store.close()

    pixel_routes = [*rendered.routes, *thumbnail.routes]
    dicomweb = [
        *stow.routes,
        *qido.routes,
        *(remote.wrap_routes(wado.routes) if proxy else wado.routes),
        *(remote.wrap_routes(pixel_routes) if proxy else pixel_routes),
        *delete.routes,
        *wadouri.routes,
        Route("/webpacs/studies/{study}/conflicts", conflicts, methods=["GET"]),
        *manage.routes,
        *label_routes,
        *remote.routes,
        *send.routes,
        *browser.api_routes,
    ]
    root = settings.server.root_path.rstrip("/")
    routes: list[Route | Mount] = [*browser.routes(home), *ops.routes, *openapi.routes]
    routes += [*capabilities.routes(root), *viewer.routes(settings)]
    routes += [Mount(root, routes=dicomweb)] if root else dicomweb
    auth = Authenticator(settings)
    guarded = access.protect(list(routes), auth, access.route_roles(list(routes), root))
    app = Starlette(
        routes=guarded,
        exception_handlers={WebpacsError: handle_webpacs_error, Exception: handle_unexpected},
        middleware=[
            Middleware(Observe, access_log=settings.log.access),
            Middleware(Limits, server=settings.server),
            *(
                [Middleware(Audit, log=AuditLog(settings.audit.path))]
                if settings.audit.path
                else []
            ),
            Middleware(
                CORSMiddleware,
                allow_origins=cors_origins(settings),
                allow_credentials=settings.auth.mode != "none",
                allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["ETag", "Warning", "Content-Location"],
            ),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = the_store
    app.state.proxy = proxy
    app.state.deriver = deriver
    app.state.proxy_inflight = {}
    return app
