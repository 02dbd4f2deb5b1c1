"""``webpacs serve``: the DICOMweb server."""

from __future__ import annotations

import os
from typing import Any

import click
import uvicorn

from webpacs.cli import workers
from webpacs.cli.common import config_options, console, settings_from, setup_logging
from webpacs.config import ServerSettings
from webpacs.dimse import start_scp
from webpacs.web import factory
from webpacs.web.viewer import ohif_dist


@click.command()
@config_options
@click.option("--host", default=None, help="Address to bind. [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="HTTP port. [default: 8042]")
@click.option("--workers", type=int, default=None, help="Server processes. [default: one per core]")
@click.option("--dimse/--no-dimse", default=True, help="Also run the DIMSE SCP. [default: on]")
def serve(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    host: str | None,
    port: int | None,
    workers: int | None,
    dimse: bool,
) -> None:
    """Serve DICOMweb (QIDO-RS, WADO-RS, WADO-URI, STOW-RS) from the store."""
    setup_logging(verbose)
    flags = {"dataDir": data_dir, "server": {"host": host, "port": port, "workers": workers}}
    settings = settings_from(config_files, flags)
    srv = settings.server
    base = f"http://{srv.host}:{srv.port}{srv.root_path.rstrip('/')}"
    console.print(
        f"[bold]webpacs[/] data in {settings.for_service('server').data_dir}", soft_wrap=True
    )
    console.print(f"Study browser: [bold]http://{srv.host}:{srv.port}/[/]", soft_wrap=True)
    console.print(f"DICOMweb: [bold]{base}[/]  (QIDO: {base}/studies)", soft_wrap=True)
    console.print(f"WADO-URI: {base}/wado", soft_wrap=True)
    dist, why_not = ohif_dist(settings)
    if dist is not None:
        console.print(
            f"Viewer: [bold]http://{srv.host}:{srv.port}/viewer/[/] (OHIF 3)", soft_wrap=True
        )
    elif why_not:
        console.print(f"Viewer: off ({why_not})", soft_wrap=True)
    os.environ[factory.LAYERS_ENV] = factory.layers(config_files, flags)
    scp = start_scp(settings) if dimse else None  # DIMSE SCP in this process (see webpacs scp)
    if scp is not None:
        d = settings.dimse
        console.print(f"DIMSE: AE {d.ae_title} on {d.host}:{scp.port}", soft_wrap=True)
    try:
        _run(srv, verbose)
    finally:
        if scp is not None:
            scp.shutdown()


def _run(srv: ServerSettings, verbose: int) -> None:
    options: dict[str, Any] = {
        "log_level": "info" if verbose >= 0 else "warning",
        "access_log": verbose > 0,
        "http": "webpacs.web.nodelay:NoDelayHTTPProtocol",
    }
    n = _workers(srv.workers)
    if n is not None and workers.supported():
        workers.run(srv.host, srv.port, n, options)
        return
    uvicorn.run(workers.APP, factory=True, host=srv.host, port=srv.port, workers=n, **options)


def _workers(configured: int) -> int | None:
    """uvicorn's ``workers``: ``None`` (serve in this process) for one, cores for 0."""
    n = configured if configured > 0 else (os.cpu_count() or 1)
    return n if n > 1 else None
