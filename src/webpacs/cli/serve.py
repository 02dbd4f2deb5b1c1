"""``webpacs serve``: the DICOMweb server."""

from __future__ import annotations

import os

import click
import orjson
import uvicorn

from webpacs.cli.common import config_options, console, settings_from, setup_logging


@click.command()
@config_options
@click.option("--host", default=None, help="Address to bind. [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="HTTP port. [default: 8042]")
@click.option("--workers", type=int, default=None, help="Server processes. [default: 1]")
def serve(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    host: str | None,
    port: int | None,
    workers: int | None,
) -> None:
    """Serve DICOMweb (QIDO-RS, WADO-RS, WADO-URI, STOW-RS) from the store."""
    setup_logging(verbose)
    settings = settings_from(
        config_files,
        {"dataDir": data_dir, "server": {"host": host, "port": port, "workers": workers}},
    )
    srv = settings.section("server")
    base = f"http://{srv['host']}:{srv['port']}{srv['rootPath'].rstrip('/')}"
    console.print(f"[bold]webpacs[/] data in {settings.data_dir}")
    console.print(f"DICOMweb: [bold]{base}[/]  (QIDO: {base}/studies)")
    console.print(f"WADO-URI: {base}/wado")
    os.environ["WEBPACS_EFFECTIVE_SETTINGS"] = orjson.dumps(settings.values).decode()
    uvicorn.run(
        "webpacs.web.factory:app",
        factory=True,
        host=srv["host"],
        port=srv["port"],
        workers=srv["workers"] if srv["workers"] > 1 else None,
        log_level="info" if verbose >= 0 else "warning",
        access_log=verbose > 0,
        http="webpacs.web.nodelay:NoDelayHTTPProtocol",
    )
