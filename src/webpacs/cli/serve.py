"""``webpacs serve``: the DICOMweb server (and the DIMSE SCP, in the supervising process)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

import click
import uvicorn
from rich.text import Text

from webpacs.auth import check_exposure
from webpacs.cli import workers as supervisor
from webpacs.cli.common import config_options, console, log_format, settings_from, setup_logging
from webpacs.config import ServerSettings, Settings
from webpacs.errors import ConfigError
from webpacs.web import factory
from webpacs.web.protocol import uvicorn_options
from webpacs.web.viewer import ohif_dist

if TYPE_CHECKING:  # the SCP's modules (pynetdicom) are imported only when it starts
    from webpacs.dimse import ScpHandle

log = logging.getLogger("webpacs.serve")


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
    """Serve DICOMweb (QIDO-RS, WADO-RS, WADO-URI, STOW-RS) from the store.

    Both ports are checked before anything starts: one that is taken ends the command with
    one line saying which (exit status 1). The URLs are printed last.
    """
    setup_logging(verbose)
    flags = {"dataDir": data_dir, "server": {"host": host, "port": port, "workers": workers}}
    settings = settings_from(config_files, flags)
    srv = settings.server
    try:
        check_exposure(settings, srv.host)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    n = _workers(srv.workers)
    if n is not None and srv.port == 0:
        raise SystemExit("port 0 (any free port) needs a single worker: set --port or --workers 1")
    supervisor.check_free(srv.host, srv.port, "HTTP")
    os.environ[factory.LAYERS_ENV] = factory.layers(config_files, flags)
    # every process writes its metrics where /metrics, in any of them, reads them all
    with supervisor.shared_metrics() if n is not None else contextlib.nullcontext():
        scp = _start_dimse(settings) if dimse else None
        try:
            _print_urls(settings, scp)
            _run(srv, verbose, n)
        finally:
            if scp is not None:
                scp.shutdown()


def _start_dimse(settings: Settings) -> ScpHandle:
    """The DIMSE SCP in this process (see ``webpacs scp``), or exit with one line."""
    from webpacs.dimse import start_scp

    d = settings.dimse
    try:
        return start_scp(settings)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    except OSError as e:
        raise SystemExit(supervisor.cannot_listen(d.host, d.port, "DIMSE", e)) from None


def _print_urls(settings: Settings, scp: ScpHandle | None) -> None:
    srv = settings.server
    origin = f"{supervisor.scheme(srv.tls)}://{srv.host}:{srv.port}"
    base = f"{origin}{srv.root_path.rstrip('/')}"

    def say(text: str) -> None:  # JSON logs stay JSON lines: the banner is a log record then
        if log_format() == "json":
            log.info("%s", Text.from_markup(text).plain)
        else:
            console.print(text, soft_wrap=True, highlight=False)

    say(f"[bold]webpacs[/] data in {settings.for_service('server').data_dir}")
    say(f"Study browser: [bold]{origin}/[/]")
    say(f"DICOMweb: [bold]{base}[/]  (QIDO: {base}/studies)")
    say(f"WADO-URI: {base}/wado")
    dist, why_not = ohif_dist(settings)
    if dist is not None:
        say(f"Viewer: [bold]{origin}/viewer/[/] (OHIF 3)")
    elif why_not:
        say(f"Viewer: off ({why_not})")
    say(f"Operations: {origin}/healthz {origin}/readyz {origin}/metrics, API: {origin}/docs")
    if scp is not None:
        tls = " (TLS)" if settings.dimse.tls.enabled else ""
        say(f"DIMSE: AE {settings.dimse.ae_title} on {scp.host}:{scp.port}{tls}")


def _run(srv: ServerSettings, verbose: int, n: int | None) -> None:
    options: dict[str, Any] = {
        "log_config": None,  # our handlers (webpacs.cli.logs); the access log is webpacs.access
        "access_log": False,
        **uvicorn_options(srv),  # the HTTP protocol with the head limits, keep-alive
        **supervisor.tls_options(srv.tls),
    }
    if n is not None and supervisor.supported():
        supervisor.run(srv.host, srv.port, n, options, (verbose, log_format()))
        return
    uvicorn.run(supervisor.APP, factory=True, host=srv.host, port=srv.port, workers=n, **options)


def _workers(configured: int) -> int | None:
    """The number of worker processes: ``None`` (serve in this process) for one, cores for 0."""
    n = configured if configured > 0 else (os.cpu_count() or 1)
    return n if n > 1 else None
